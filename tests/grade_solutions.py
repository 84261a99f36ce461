"""Model solutions of the assignments, written as a student would (NumPy only), for the tests.

``solution_source(key)`` is the stub's text with these functions appended (a later ``def``
replaces the stub's), so the file the grader runs is the stub a student filled in. The grader
must give each 100% in its own process; tests/test_lessons.py checks that.
"""

import inspect

import numpy as np


# --------------------------------------------------------------------------- A1
def col2im(dcols, x_shape, KH, KW, stride=1, padding=0):
    N, C, H, W = x_shape
    OH, OW = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    d = dcols.reshape(C, KH, KW, N, OH, OW)
    dx = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for oh in range(OH):
        for ow in range(OW):
            dx[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW] += \
                d[:, :, :, :, oh, ow].transpose(3, 0, 1, 2)
    return dx[:, :, padding:padding + H, padding:padding + W]


def conv2d_backward(dout, cache):
    x, w, b, stride, padding, cols = cache
    F, C, KH, KW = w.shape
    d = dout.transpose(1, 0, 2, 3).reshape(F, -1)
    dw = (d @ cols.T).reshape(w.shape)
    db = None if b is None else dout.sum(axis=(0, 2, 3))
    dx = col2im(w.reshape(F, -1).T @ d, x.shape, KH, KW, stride, padding)
    return dx, dw, db


# --------------------------------------------------------------------------- A2
def maxpool2d_forward(x, kernel_size, stride=None):
    K, s = kernel_size, stride or kernel_size
    N, C, H, W = x.shape
    OH, OW = (H - K) // s + 1, (W - K) // s + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    arg = np.empty((N, C, OH, OW), dtype=int)
    for oh in range(OH):
        for ow in range(OW):
            win = x[:, :, oh * s:oh * s + K, ow * s:ow * s + K].reshape(N, C, K * K)
            out[:, :, oh, ow], arg[:, :, oh, ow] = win.max(axis=2), win.argmax(axis=2)
    return out, (x.shape, K, s, arg)


def maxpool2d_backward(dout, cache):
    shape, K, s, arg = cache
    dx = np.zeros(shape)
    N, C, OH, OW = dout.shape
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for oh in range(OH):
        for ow in range(OW):
            i, j = np.divmod(arg[:, :, oh, ow], K)
            np.add.at(dx, (n, c, oh * s + i, ow * s + j), dout[:, :, oh, ow])
    return dx


# --------------------------------------------------------------------------- A3
def class_score_gradient(model, x, c, layer):
    logits = model.forward(x, keep=[layer])
    A = model.activations[layer]
    dy = np.zeros_like(logits)
    dy[np.arange(len(x)), np.asarray(c)] = 1
    return A, model.backward(dy, stop_at=layer, need_dw=False)


def grad_cam_weights(A, dA):
    return dA.mean(axis=(2, 3))


def grad_cam_map(A, alpha):
    return np.maximum(np.einsum("nk,nkij->nij", alpha, A), 0)


def counterfactual_map(model, x, c, layer):
    A, dA = class_score_gradient(model, x, c, layer)
    return grad_cam_map(A, grad_cam_weights(A, -dA))


# --------------------------------------------------------------------------- A4
def guided_relu_backward(dout, x):
    return dout * (x > 0) * (dout > 0)


def deconvnet_relu_backward(dout, x):
    return np.maximum(dout, 0)


def gap_linear_gradient(W, c, u, v):
    return np.broadcast_to(W[c][:, None, None] / (u * v), (W.shape[1], u, v)).copy()


def cam_alpha(W, c, u, v):
    return W[c] / (u * v)


# --------------------------------------------------------------------------- A5
def gradcam_pp_alpha(A, dA):
    den = 2 * dA ** 2 + A.sum(axis=(2, 3), keepdims=True) * dA ** 3
    return np.where(den == 0, 0.0, dA ** 2 / np.where(den == 0, 1.0, den))


def gradcam_pp_weights(A, dA):
    return (gradcam_pp_alpha(A, dA) * np.maximum(dA, 0)).sum(axis=(2, 3))


def gradcam_pp_map(A, dA):
    return np.maximum(np.einsum("nk,nkij->nij", gradcam_pp_weights(A, dA), A), 0)


# --------------------------------------------------------------------------- A6
def spearman(a, b):
    def ranks(v):
        v = np.ravel(v)
        r = np.empty(v.size)
        r[np.argsort(v, kind="stable")] = np.arange(v.size)
        _, inv = np.unique(v, return_inverse=True)
        return (np.bincount(inv, r) / np.bincount(inv))[inv]

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return 0.0 if den == 0 else float((ra * rb).sum() / den)


def randomise_layer(model, name, rng):
    params = model[name].params
    for key in sorted(params):
        p = params[key]
        params[key] = (rng.standard_normal(p.shape) * p.std()).astype(p.dtype)


def cascading_randomisation(model, layers, explain, x, c, rng):
    import copy

    trained = explain(model, x, c)
    current, rows = copy.deepcopy(model), []
    for name in layers:
        randomise_layer(current, name, rng)
        maps = explain(current, x, c)
        rows.append([spearman(trained[n], maps[n]) for n in range(len(x))])
    return np.array(rows)


# --------------------------------------------------------------------------- A7
def deletion_curve(model, x, saliency, c, steps=20):
    N, C, H, W = x.shape
    curve = np.empty((N, steps + 1))
    for n in range(N):
        order = np.argsort(-np.ravel(saliency[n]), kind="stable")
        batch = np.repeat(x[n:n + 1], steps + 1, axis=0)
        for t in range(steps + 1):
            i, j = np.unravel_index(order[:(t * H * W) // steps], (H, W))
            batch[t][:, i, j] = 0
        z = model.forward(batch)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        curve[n] = (e / e.sum(axis=1, keepdims=True))[:, c[n]]
    return curve


def auc(curve):
    return (curve[:, 1:] + curve[:, :-1]).sum(axis=1) / (2 * (curve.shape[1] - 1))


def solution_source(key):
    """The stub of assignment ``key`` with the model solution's functions appended."""
    from lessons import grade

    a = grade.ASSIGNMENTS[key]
    stub = (grade.ASSIGNMENTS_DIR / a.file).read_text()
    stub = stub.replace('\nif __name__ == "__main__":\n    check()\n', "\n")
    helpers = {"A3": ("class_score_gradient", "grad_cam_weights", "grad_cam_map"),
               "A4": ("gap_linear_gradient",), "A5": ("gradcam_pp_alpha", "gradcam_pp_weights"),
               "A6": ("spearman", "randomise_layer")}.get(key, ())
    names = tuple(dict.fromkeys(helpers + tuple(a.functions)))
    body = "\n\n".join(inspect.getsource(globals()[n]) for n in names)
    return stub + "\n\n# ---- solution\n" + body + '\n\nif __name__ == "__main__":\n    check()\n'
