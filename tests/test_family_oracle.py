"""Every gradient-weighted family method against the independent autograd oracle (tests/oracle.py).

The network, float64, with a dense head so that dy^c/dA varies with the position:

    x (2, 2, 3, 3) -> conv1 (3x3, pad 1) -> relu1 -> conv2 (3x3, pad 1) -> relu2 = A (2, 2, 3, 3)
      -> flatten -> fc1 (18 -> 5) -> relu3 -> fc (5 -> 4)

The oracle (shift-and-sum convolution in ``autograd.numpy``, no minicnn) gives A, the logits and
dA = dy^c/dA by ``autograd.grad`` of the head; the papers' formulas are written out here on those
arrays and compared with ``gradcam.explain``'s weights and maps. For Grad-CAM++ the oracle also
takes the paper's general Eq. (10) literally: the first, second and third derivatives of
Y^c = exp(S^c) (Eq. (12)) along each coordinate A^k_ij, by nested ``autograd.grad`` of
t -> exp(S^c(A + t e_kij)) at t = 0, so the closed form (Eq. (19)) is checked, not assumed.
Negative control: the same comparison with the oracle's gradient of another class fails.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import gradcam
import oracle
from minicnn import Sequential
from minicnn import layers as L

TOL = 1e-10
CONTROL = 1e-3
SPEC = [("conv1", "conv", dict(pads=1)), ("relu1", "relu", {}),
        ("conv2", "conv", dict(pads=1)), ("relu2", "relu", {}),
        ("flatten", "flatten", {}), ("fc1", "linear", {}), ("relu3", "relu", {}),
        ("fc", "linear", {})]
SPLIT = 4  # SPEC[:SPLIT] ends at relu2, the explained layer


def rel_err(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def build(seed):
    """The minicnn model and the oracle's parameters (the same numbers), an input, targets."""
    rng = np.random.default_rng(seed)
    f64 = dict(dtype="float64")
    model = Sequential([("conv1", L.Conv2d(2, 3, 3, padding=1, **f64)), ("relu1", L.ReLU()),
                        ("conv2", L.Conv2d(3, 2, 3, padding=1, **f64)), ("relu2", L.ReLU()),
                        ("flatten", L.Flatten()), ("fc1", L.Linear(18, 5, **f64)),
                        ("relu3", L.ReLU()), ("fc", L.Linear(5, 4, **f64))]).eval()
    params = {}
    for name, lay in model.named_layers():
        for k, p in lay.params.items():
            lay.params[k] = rng.normal(size=p.shape)
            params[f"{name}.{k}"] = lay.params[k]
    return model, params, rng.normal(size=(2, 2, 3, 3)), np.array([1, 3])


def head(params, A):
    return oracle.forward_spec(SPEC[SPLIT:], params, A)


def oracle_run(params, x, c):
    """A, y^c (N,), dA = dy^c/dA from the oracle alone."""
    A = oracle.forward_spec(SPEC[:SPLIT], params, x)
    onehot = np.eye(4)[c]
    dA = grad(lambda A_: anp.sum(head(params, A_) * onehot))(A)
    return A, head(params, A)[np.arange(len(c)), c], dA


def pp_closed_form(A, dA, y):
    """Eqs. (19), (5) on plain arrays: exp(y) sum_ij alpha relu(dA)."""
    S = A.sum(axis=(2, 3), keepdims=True)
    den = 2 * dA ** 2 + S * dA ** 3
    alpha = np.divide(dA ** 2, den, out=np.zeros_like(dA), where=den != 0)
    return np.exp(y)[:, None] * (alpha * np.maximum(dA, 0)).sum(axis=(2, 3))


def pp_from_derivatives(params, A, c):
    """Eqs. (10), (5) with d^pY/dA^p of Y = exp(S^c) by nested autograd, one coordinate at a time."""
    N, K, U, V = A.shape
    w = np.zeros((N, K))
    for n in range(N):
        for k in range(K):
            S = A[n, k].sum()
            for i in range(U):
                for j in range(V):
                    e = np.zeros(A.shape)
                    e[n, k, i, j] = 1.0

                    def Y(t, e=e, n=n):
                        return anp.exp(head(params, A + t * e)[n, c[n]])

                    d1, d2, d3 = grad(Y)(0.0), grad(grad(Y))(0.0), grad(grad(grad(Y)))(0.0)
                    den = 2 * d2 + S * d3
                    w[n, k] += (d2 / den if den != 0 else 0.0) * max(d1, 0.0)
    return w


@pytest.fixture(scope="module", params=[0, 1, 2])
def net(request):
    model, params, x, c = build(request.param)
    A, y, dA = oracle_run(params, x, c)
    r = gradcam.grad_cam(model, x, c, "relu2")
    assert rel_err(r.activations, A) < TOL and rel_err(r.gradients, dA) < TOL
    assert rel_err(r.logits[np.arange(2), c], y) < TOL
    assert np.abs(dA).max() > 0.1  # the head passes a gradient
    return model, params, x, c, A, y, dA


def test_gradcam_pp_against_the_paper_with_autograd_derivatives(net):
    model, params, x, c, A, y, dA = net
    r = gradcam.explain(model, x, c, "gradcam++", "relu2")
    w = np.exp(r.details["log_scale"])[:, None] * r.weights  # the paper's w (Eq. (5))
    assert rel_err(r.details["log_scale"], y) < TOL
    assert rel_err(w, pp_closed_form(A, dA, y)) < TOL
    assert rel_err(w, pp_from_derivatives(params, A, c)) < TOL
    # control: class c + 1's gradient
    _, y2, dA2 = oracle_run(params, x, (c + 1) % 4)
    assert rel_err(pp_closed_form(A, dA2, y2), w) > CONTROL


@pytest.mark.parametrize("method", ["xgradcam", "hirescam", "gradcam-elementwise", "layercam"])
def test_elementwise_family_against_the_oracle(net, method):
    model, params, x, c, A, y, dA = net
    r = gradcam.explain(model, x, c, method, "relu2")

    def maps(dA):
        if method == "xgradcam":
            S = A.sum(axis=(2, 3))
            alpha = np.divide((A * dA).sum(axis=(2, 3)), S, out=np.zeros(S.shape), where=S != 0)
            return alpha, np.einsum("nk,nkij->nij", alpha, A)
        if method == "hirescam":
            return dA, (dA * A).sum(axis=1)
        if method == "gradcam-elementwise":
            return None, np.maximum(dA * A, 0).sum(axis=1)
        return np.maximum(dA, 0), (np.maximum(dA, 0) * A).sum(axis=1)

    alpha, linear_map = maps(dA)
    if alpha is not None:
        assert rel_err(r.weights, alpha) < TOL
    assert rel_err(r.linear_map, linear_map) < TOL
    assert rel_err(r.coarse, np.maximum(linear_map, 0)) < TOL
    _, _, dA2 = oracle_run(params, x, (c + 1) % 4)  # control: another class's gradient
    assert rel_err(maps(dA2)[1], r.linear_map) > CONTROL


def test_smooth_gradcam_pp_against_the_oracle(net):
    model, params, x, c, A, y, dA = net
    eps = np.random.default_rng(5).normal(0, 0.5, (3,) + x.shape)
    r = gradcam.explain(model, x, c, "smooth-gradcam++", "relu2", num_samples=3, noise=eps)
    runs = [oracle_run(params, x + e, c) for e in eps]
    ey = np.stack([np.exp(y_m) for _, y_m, _ in runs])[:, :, None, None, None]
    g = np.stack([dA_m for _, _, dA_m in runs])
    D1, D2, D3 = ((ey * g ** p).mean(axis=0) for p in (1, 2, 3))
    S = A.sum(axis=(2, 3), keepdims=True)
    den = 2 * D2 + S * D3
    alpha = np.divide(D2, den, out=np.zeros_like(D2), where=den != 0)
    w = (alpha * np.maximum(D1, 0)).sum(axis=(2, 3))
    assert rel_err(np.exp(r.details["log_scale"])[:, None] * r.weights, w) < TOL
    np.testing.assert_allclose(r.details["sample_scores"], np.stack([y_m for _, y_m, _ in runs]),
                               rtol=1e-12)
    assert rel_err(pp_closed_form(A, dA, y), w) > CONTROL  # control: the clean Grad-CAM++


def test_eigengradcam_against_the_oracle(net):
    """The first principal component of the oracle's dA * A, from eigh of X^T X (not an SVD),
    signed so that the map sums to a positive number."""
    model, params, x, c, A, y, dA = net
    r = gradcam.explain(model, x, c, "eigengradcam", "relu2")

    def projection(dA):
        out = []
        for n in range(len(c)):
            X = (dA[n] * A[n]).reshape(A.shape[1], -1).T  # (u*v, K)
            _, vecs = np.linalg.eigh(X.T @ X)
            m = X @ vecs[:, -1]  # the eigenvector of the largest eigenvalue
            out.append((m if m.sum() > 0 else -m).reshape(A.shape[2:]))
        return np.stack(out)

    assert rel_err(r.linear_map, projection(dA)) < 1e-8
    _, _, dA2 = oracle_run(params, x, (c + 1) % 4)  # control: another class's gradient
    assert rel_err(r.linear_map, projection(dA2)) > CONTROL
