"""Grade an assignment of ``lessons/assignments/`` against the library (the solution key).

    python -m lessons.grade A1 path/to/01_conv.py     # grade a student's file
    python -m lessons.grade A1                         # grade lessons/assignments/01_conv.py
    python -m lessons.grade --solutions               # teachers: the reference must pass everything
    python -m lessons.grade --solutions A3            # ... for one assignment
    python -m lessons.grade --list                    # the assignments and their parts

Run it from the repository root (``lessons`` is a package there). Each part runs in its own
``try``: a stub (``NotImplementedError``), a crash or a wrong answer becomes one FAIL line with
what differed and a hint, never a traceback. A part that runs longer than
``PART_TIME_LIMIT`` seconds fails as well (where the OS has SIGALRM). The checks use a visible
case (seed 0, the one in the student's own ``check()``), hidden random cases (seeded from
``HIDDEN_SEED``, or ``--seed``), and gradient checks with ``minicnn.gradcheck``. The exit
status is 0 only when every part passes (1 otherwise, 2 for a usage error).

``--solutions`` grades the reference: the library functions themselves where an assignment
asks for the library's own signature (A1: ``minicnn.naive.conv2d_*``, A2:
``minicnn.naive.maxpool2d_*``), otherwise thin compositions of library calls (A3, A4; see
``_reference_a3`` and ``_reference_a4``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import signal
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ASSIGNMENTS_DIR = HERE / "assignments"
HIDDEN_SEED = 24601  # hidden cases: a seed that appears in no student file
PART_TIME_LIMIT = 60  # seconds per part
GRAD_TOL = 1e-6  # gradient checks: relative error bound (a correct backward gives ~1e-9)


class Fail(Exception):
    """A wrong answer; the message says what differed."""


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so a student's ``except Exception`` cannot eat it."""


@dataclass
class Part:
    title: str
    points: int
    hint: str
    run: object  # run(mod, ctx) -> None; raises Fail (or anything) on a wrong answer


@dataclass
class Assignment:
    key: str
    file: str
    title: str
    functions: tuple
    forbidden: tuple  # dotted module names the student's file must not use
    reference: object  # () -> namespace with the reference functions
    reference_name: str
    parts: list = field(default_factory=list)


@dataclass
class Context:
    seed: int

    def rng(self, k):
        """Generator for hidden case k (visible cases use default_rng(0) directly)."""
        return np.random.default_rng([self.seed, k])


# --------------------------------------------------------------------------- comparisons
def _array(value, what):
    if value is None:
        raise Fail(f"{what} is None, expected an array")
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise Fail(f"{what} is a {type(value).__name__}, expected an array") from None


def close(got, expected, what, rtol=1e-6, atol=1e-8, case=""):
    """Fail unless ``got`` has the expected shape and values (max error and where it is)."""
    got = _array(got, what)
    expected = np.asarray(expected)
    where = f" ({case})" if case else ""
    if got.shape != expected.shape:
        raise Fail(f"{what} has shape {got.shape}, expected {expected.shape}{where}")
    if not np.all(np.isfinite(got)):
        raise Fail(f"{what} contains NaN or inf{where}")
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if not np.all(err <= atol + rtol * np.abs(expected)):
        idx = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        raise Fail(f"{what} is wrong{where}: max |got - expected| = {err.max():.3g} at index "
                   f"{tuple(int(i) for i in idx)} (got {float(got[idx]):.6g}, expected "
                   f"{float(expected[idx]):.6g})")


def grad_close(analytic, numeric, what, case=""):
    """Fail unless an analytic gradient matches central differences (lesson 01, Eq. 1.7)."""
    from minicnn.gradcheck import rel_error

    analytic = _array(analytic, what)
    if analytic.shape != numeric.shape:
        raise Fail(f"{what} has shape {analytic.shape}, expected {numeric.shape}"
                   + (f" ({case})" if case else ""))
    err = rel_error(analytic, numeric)
    if not err < GRAD_TOL:
        raise Fail(f"gradient check of {what} failed" + (f" ({case})" if case else "")
                   + f": relative error {err:.2e} against central differences (a correct "
                   f"backward gives about 1e-9)")


def _pair(result, what):
    if not isinstance(result, tuple) or len(result) != 2:
        raise Fail(f"{what} must return a pair (out, cache), got {type(result).__name__}")
    return result


def _triple(result, what):
    if not isinstance(result, tuple) or len(result) != 3:
        raise Fail(f"{what} must return (dx, dw, db), got {type(result).__name__}")
    return result


# --------------------------------------------------------------------------- A1: convolution
def _conv_cases(ctx, k0, n):
    """n hidden conv geometries: (x, w, b, stride, padding), float64, output >= 1 x 1."""
    out = []
    for k in range(n):
        r = ctx.rng(k0 + k)
        N, C, F = (int(v) for v in r.integers(1, 4, 3))
        KH, KW = (int(v) for v in r.integers(1, 5, 2))
        s, p = int(r.integers(1, 4)), int(r.integers(0, 3))
        H = int(r.integers(max(1, KH - 2 * p), KH + 6))
        W = int(r.integers(max(1, KW - 2 * p), KW + 6))
        b = r.standard_normal(F) if k % 3 else None
        out.append((r.standard_normal((N, C, H, W)), r.standard_normal((F, C, KH, KW)), b, s, p))
    return out


def _case(x, w, b, s, p):
    return (f"x {x.shape}, w {w.shape}, b {'None' if b is None else b.shape}, stride {s}, "
            f"padding {p}")


def a1_forward_visible(mod, ctx):
    from minicnn import naive

    r = np.random.default_rng(0)
    x, w, b = r.standard_normal((2, 3, 6, 5)), r.standard_normal((4, 3, 3, 2)), r.standard_normal(4)
    out, _ = _pair(mod.conv2d_forward(x, w, b, stride=2, padding=1), "conv2d_forward")
    close(out, naive.conv2d_forward(x, w, b, 2, 1)[0], "out", case=_case(x, w, b, 2, 1))


def a1_forward_hidden(mod, ctx):
    from minicnn import naive

    for x, w, b, s, p in _conv_cases(ctx, 0, 8):
        out, _ = _pair(mod.conv2d_forward(x, w, b, stride=s, padding=p), "conv2d_forward")
        close(out, naive.conv2d_forward(x, w, b, s, p)[0], "out", case=_case(x, w, b, s, p))


def _conv_of(mod, args, name, s, p):
    """The student's forward as a function of one of its arguments (for numerical_vjp)."""

    def f(v):
        kw = dict(args, **{name: v})
        return _array(mod.conv2d_forward(kw["x"], kw["w"], kw["b"], stride=s, padding=p)[0], "out")

    return f


def _a1_backward(mod, ctx, which):
    from minicnn import naive
    from minicnn.gradcheck import numerical_vjp

    for k, (x, w, b, s, p) in enumerate(_conv_cases(ctx, 100, 4)):
        case = _case(x, w, b, s, p)
        out, cache = _pair(mod.conv2d_forward(x, w, b, stride=s, padding=p), "conv2d_forward")
        dout = ctx.rng(200 + k).standard_normal(np.shape(out))
        dx, dw, db = _triple(mod.conv2d_backward(dout, cache), "conv2d_backward")
        rx, rw, rb = naive.conv2d_backward(dout, naive.conv2d_forward(x, w, b, s, p)[1])
        args = {"x": x, "w": w, "b": b}
        checks = [("dx", dx, rx)] if which == "dx" else [("dw", dw, rw)] + (
            [("db", db, rb)] if b is not None else [])
        for name, got, ref in checks:
            num = numerical_vjp(_conv_of(mod, args, name[1], s, p), args[name[1]].copy(), dout)
            grad_close(got, num, name, case)
            close(got, ref, name, case=case)


def _reference_a1():
    from minicnn import naive

    return types.SimpleNamespace(conv2d_forward=naive.conv2d_forward,
                                 conv2d_backward=naive.conv2d_backward)


A1 = Assignment("A1", "01_conv.py", "convolution forward and backward, with loops",
                ("conv2d_forward", "conv2d_backward"),
                ("minicnn.naive", "minicnn.functional", "minicnn.kernels"), _reference_a1, "minicnn.naive.conv2d_forward / conv2d_backward", [
    Part("forward, visible case (stride 2, padding 1)", 1,
         "out[n, f, oh, ow] = b[f] + sum over (c, i, j) of w[f, c, i, j] * x_pad[n, c, oh*s + i, "
         "ow*s + j]; OH = (H + 2p - KH) // s + 1 (lesson 01, Eqs. 1.1-1.2)", a1_forward_visible),
    Part("forward, hidden cases (kernels KH != KW, strides 1-3, padding 0-2, b None)", 2,
         "check KH and KW separately (non-square kernels), the stride in the window start "
         "oh*stride, and that b=None means no bias", a1_forward_hidden),
    Part("backward dx: gradient check and hidden cases", 3,
         "dx_pad[n, :, oh*s:oh*s+KH, ow*s:ow*s+KW] += sum_f dout[n, f, oh, ow] * w[f]; windows "
         "overlap, so ADD; then crop the padding (lesson 01, Eq. 1.5)",
         lambda m, c: _a1_backward(m, c, "dx")),
    Part("backward dw and db: gradient check and hidden cases", 3,
         "dw[f] += sum_n dout[n, f, oh, ow] * window[n]; db[f] = dout[:, f].sum() "
         "(lesson 01, Eqs. 1.4 and 1.6)", lambda m, c: _a1_backward(m, c, "dw")),
])


# --------------------------------------------------------------------------- A2: max pooling
def _pool(mod, x, K, s):
    return _pair(mod.maxpool2d_forward(x, K, stride=s), "maxpool2d_forward")


def _distinct(r, shape):
    """Distinct values 0.1 apart (max is differentiable there), shuffled."""
    return r.permutation(int(np.prod(shape))).reshape(shape) / 10.0


def a2_forward(mod, ctx):
    from minicnn import naive

    r = np.random.default_rng(0)
    cases = [(_distinct(r, (2, 3, 6, 6)), 2, None)]
    for k, (K, s) in enumerate(((3, None), (2, 1), (3, 2), (3, 3), (1, None))):
        rr = ctx.rng(300 + k)
        H, W = (int(v) for v in rr.integers(K, K + 6, 2))
        cases.append((rr.standard_normal((int(rr.integers(1, 3)), 2, H, W)), K, s))
    for x, K, s in cases:
        out, _ = _pool(mod, x, K, s)
        close(out, naive.maxpool2d_forward(x, K, s)[0], "out",
              case=f"x {x.shape}, kernel {K}, stride {s}")


def _a2_backward(mod, ctx, geometries, k0):
    from minicnn import naive
    from minicnn.gradcheck import numerical_vjp

    for k, (K, s) in enumerate(geometries):
        r = ctx.rng(k0 + k)
        H, W = (int(v) for v in r.integers(K, K + 5, 2))
        x = _distinct(r, (2, 2, H, W))
        case = f"x {x.shape}, kernel {K}, stride {s}"
        out, cache = _pool(mod, x, K, s)
        dout = r.standard_normal(np.shape(out))
        dx = mod.maxpool2d_backward(dout, cache)

        def f(v, K=K, s=s):
            return _array(_pool(mod, v, K, s)[0], "out")

        num = numerical_vjp(f, x.copy(), dout)
        grad_close(dx, num, "dx", case)
        ref = naive.maxpool2d_backward(dout, naive.maxpool2d_forward(x, K, s)[1])
        close(dx, ref, "dx", case=case)


def a2_ties(mod, ctx):
    from minicnn import naive

    zero = np.zeros((1, 1, 2, 2))
    _, cache = _pool(mod, zero, 2, None)
    dx = _array(mod.maxpool2d_backward(np.ones((1, 1, 1, 1)), cache), "dx")
    if dx.shape == zero.shape and np.allclose(dx, 1.0):
        raise Fail("an all-zero 2x2 window sent its gradient 1 to all four entries (a x == max "
                   "mask); it must go to the first entry only: [[1, 0], [0, 0]]")
    close(dx, [[[[1.0, 0.0], [0.0, 0.0]]]], "dx of an all-zero window")
    for k, (K, s) in enumerate(((2, None), (3, 2), (2, 1))):
        r = ctx.rng(500 + k)
        x = np.maximum(r.integers(-2, 3, (2, 3, 7, 7)), 0).astype(float)  # many ties, many zeros
        out, cache = _pool(mod, x, K, s)
        dout = r.standard_normal(np.shape(out))
        close(mod.maxpool2d_backward(dout, cache),
              naive.maxpool2d_backward(dout, naive.maxpool2d_forward(x, K, s)[1]), "dx",
              case=f"tied values, kernel {K}, stride {s}")


def _reference_a2():
    from minicnn import naive

    return types.SimpleNamespace(maxpool2d_forward=naive.maxpool2d_forward,
                                 maxpool2d_backward=naive.maxpool2d_backward)


A2 = Assignment("A2", "02_maxpool.py", "max pooling forward and backward, and the tie rule",
                ("maxpool2d_forward", "maxpool2d_backward"),
                ("minicnn.naive", "minicnn.functional", "minicnn.kernels"),
                _reference_a2, "minicnn.naive.maxpool2d_forward / maxpool2d_backward", [
    Part("forward, visible and hidden cases (kernels 1-3, strides 1-3)", 2,
         "OH = (H - K) // s + 1 with s = K when stride is None; out = max of each K x K window "
         "(lesson 02, Eq. 2.1)", a2_forward),
    Part("backward, gradient check (non-overlapping windows)", 2,
         "only each window's maximum gets the window's gradient: dx at (oh*s + i*, ow*s + j*) "
         "(lesson 02, Eq. 2.2)", lambda m, c: _a2_backward(m, c, ((2, None), (3, None)), 400)),
    Part("backward, overlapping windows (stride < kernel): gradients add up", 2,
         "a pixel can be the max of two windows: use dx[...] += ..., not =",
         lambda m, c: _a2_backward(m, c, ((3, 1), (3, 2), (2, 1)), 450)),
    Part("the tie rule: all of a window's gradient to its FIRST maximum", 2,
         "store argmax of the window flattened to K*K (np.argmax returns the first maximum) and "
         "route to divmod(argmax, K); a mask x == max sends the gradient to every tied entry",
         a2_ties),
])


# --------------------------------------------------------------------------- A3: Grad-CAM
def _tiny_net(r):
    """conv1 relu1 conv2 relu2 gap fc, float64, random weights; A layer 'conv2' (6 channels)."""
    from minicnn import Sequential
    from minicnn import layers as L

    net = Sequential([("conv1", L.Conv2d(2, 4, 3, padding=1, rng=r, dtype="float64")),
                      ("relu1", L.ReLU()),
                      ("conv2", L.Conv2d(4, 6, 3, padding=1, rng=r, dtype="float64")),
                      ("relu2", L.ReLU()), ("gap", L.GlobalAvgPool2d()),
                      ("fc", L.Linear(6, 3, rng=r, dtype="float64"))]).eval()
    for _, lay in net.named_layers():
        for k, p in lay.params.items():
            lay.params[k] = r.standard_normal(p.shape)
    return net


def _arrays(ctx, k):
    r = ctx.rng(k)
    N, K, u, v = (int(t) for t in r.integers(1, 6, 4))
    return r.standard_normal((N, K, u, v)), r.standard_normal((N, K, u, v)), r


def a3_weights(mod, ctx, which):
    import gradcam

    ref = gradcam.grad_cam_weights if which == "gradcam" else gradcam.counterfactual_weights
    fn = mod.grad_cam_weights if which == "gradcam" else mod.counterfactual_weights
    for k in range(4):
        A, dA, _ = _arrays(ctx, 600 + k)
        close(fn(A, dA), ref(A, dA), "alpha", case=f"A and dA {A.shape}")


def a3_map(mod, ctx):
    for k in range(4):
        A, _, r = _arrays(ctx, 700 + k)
        alpha = r.standard_normal(A.shape[:2])
        expected = np.maximum(np.einsum("nk,nkij->nij", alpha, A), 0)
        close(mod.grad_cam_map(A, alpha), expected, "map", case=f"A {A.shape}")


def a3_gradient(mod, ctx):
    import gradcam
    from gradcam.targets import class_score
    from minicnn.gradcheck import numerical_vjp

    r = ctx.rng(800)
    net = _tiny_net(r)
    x = r.standard_normal((3, 2, 6, 5))
    c = np.array([2, 0, 1])
    result = mod.class_score_gradient(net, x, c, "conv2")
    if not isinstance(result, tuple) or len(result) != 2:
        raise Fail("class_score_gradient must return a pair (A, dA)")
    A, dA = (_array(t, n) for t, n in zip(result, ("A", "dA")))
    _, rA, rdA = gradcam.capture(net, x, "conv2", class_score(c))
    close(A, rA, "A", case="the output of 'conv2'")
    after = [net[n] for n in ("relu2", "gap", "fc")]

    def head(a):
        for lay in after:
            a = lay.forward(a)
        return a

    seed = np.eye(3)[c]
    grad_close(dA, numerical_vjp(head, rA.copy(), seed), "dA = dy^c/dA",
               "a random float64 net, 3 images with classes [2, 0, 1]")
    close(dA, rdA, "dA", case="three images, three different classes")


def a3_end_to_end(mod, ctx):
    import gradcam
    from minicnn import zoo
    from minicnn.data import make_scenes

    model = zoo.shapes_cnn(pretrained=True)
    scenes = make_scenes(3, seed=int(ctx.rng(900).integers(1000, 10**6)))
    c = scenes.labels[:, 0]
    for layer in ("relu4", "relu3"):
        A, dA = mod.class_score_gradient(model, scenes.images, c, layer)
        got = mod.grad_cam_map(A, mod.grad_cam_weights(A, dA))
        ref = gradcam.grad_cam(model, scenes.images, c, layer)
        close(got, ref.coarse, "Grad-CAM map", rtol=1e-4, atol=1e-7,
              case=f"zoo.shapes_cnn at {layer}, 3 hidden scenes")


def _reference_a3():
    import gradcam
    from gradcam.targets import class_score

    return types.SimpleNamespace(
        grad_cam_weights=gradcam.grad_cam_weights,
        grad_cam_map=lambda A, alpha: np.maximum(gradcam.weighted_sum(alpha, A), 0),
        counterfactual_weights=gradcam.counterfactual_weights,
        class_score_gradient=lambda model, x, c, layer: gradcam.capture(
            model, x, layer, class_score(c))[1:])


A3 = Assignment("A3", "03_gradcam.py", "Grad-CAM weights and map (Eqs. 1-2), the counterfactual",
                ("grad_cam_weights", "grad_cam_map", "counterfactual_weights",
                 "class_score_gradient"),
                ("gradcam",), _reference_a3,
                "gradcam.grad_cam_weights, weighted_sum + ReLU, counterfactual_weights, capture", [
    Part("grad_cam_weights: Eq. (1) on hidden arrays", 1,
         "Eq. (1) averages each channel's gradient over its u x v positions (the last two "
         "axes): one number per image and channel, shape (N, K)",
         lambda m, c: a3_weights(m, c, "gradcam")),
    Part("grad_cam_map: Eq. (2) on hidden arrays", 2,
         "weight each channel A[n, k] by alpha[n, k] and ADD the channels (a sum over k, not a "
         "mean); the ReLU then keeps only the positive values",
         a3_map),
    Part("counterfactual_weights: Eq. (7.1) on hidden arrays", 1,
         "Eq. (7.1) is Eq. (1) with the sign of the gradient flipped",
         lambda m, c: a3_weights(m, c, "counterfactual")),
    Part("class_score_gradient: gradient check on a random float64 net", 2,
         "seed the backward with a one-hot row per image (dy[n, c[n]] = 1), and stop at the "
         "layer: model.backward(dy, stop_at=layer, need_dw=False)", a3_gradient),
    Part("end to end: your four functions vs gradcam.grad_cam on zoo.shapes_cnn", 2,
         "if the parts above pass, check the shapes: A is the layer's OUTPUT, "
         "model.activations[layer] after model.forward(x, keep=[layer])", a3_end_to_end),
])


# --------------------------------------------------------------------------- A4: ReLU rules, CAM
def a4_rule(mod, ctx, rule):
    from minicnn import functional

    fn = mod.guided_relu_backward if rule == "guided" else mod.deconvnet_relu_backward
    for k in range(4):
        r = ctx.rng(1000 + k)
        shape = tuple(int(t) for t in r.integers(1, 6, 3))
        x, dout = r.standard_normal(shape), r.standard_normal(shape)
        x[r.random(shape) < 0.1] = 0.0  # ReLU'(0) = 0, as in PyTorch
        close(fn(dout, x), functional.relu_backward(dout, x > 0, rule), "dx",
              case=f"shape {shape}, some forward inputs exactly 0")


def _gap_fc(W, c):
    """y^c(A) for A (K, u, v), from the library's GAP and linear forwards."""
    from minicnn import functional

    def f(A):
        F, _ = functional.global_avg_pool_forward(A[None])
        y, _ = functional.linear_forward(F, W)
        return y[0, c]

    return f


def a4_gap_gradient(mod, ctx):
    from minicnn.gradcheck import numerical_vjp

    for k in range(3):
        r = ctx.rng(1100 + k)
        classes, K, u, v = (int(t) for t in r.integers(2, 6, 4))
        W, c = r.standard_normal((classes, K)), int(r.integers(0, classes))
        A = r.standard_normal((K, u, v))
        case = f"W {W.shape}, c = {c}, u x v = {u} x {v}"
        got = mod.gap_linear_gradient(W, c, u, v)
        grad_close(got, numerical_vjp(_gap_fc(W, c), A, 1.0), "dy^c/dA", case)


def a4_cam_alpha(mod, ctx):
    import gradcam
    from minicnn import Sequential
    from minicnn import layers as L

    for k in range(3):
        r = ctx.rng(1200 + k)
        K, u, v, classes = (int(t) for t in r.integers(2, 7, 4))
        net = Sequential([("conv", L.Conv2d(2, K, 3, padding=1, rng=r, dtype="float64")),
                          ("relu", L.ReLU()), ("gap", L.GlobalAvgPool2d()),
                          ("fc", L.Linear(K, classes, rng=r, dtype="float64"))]).eval()
        x = r.standard_normal((1, 2, u, v))
        c = int(r.integers(0, classes))
        W = net["fc"].params["weight"]
        expected = gradcam.grad_cam(net, x, c, layer="relu").weights[0]
        got = _array(mod.cam_alpha(W, c, u, v), "alpha")
        if got.shape == W[c].shape and np.allclose(got, W[c]):
            raise Fail("alpha equals w^c exactly: that is CAM's weight, not Eq. (1)'s average "
                       f"of the gradient over the {u} x {v} positions")
        close(got, expected, "alpha", case=f"a random GAP net, K = {K}, u x v = {u} x {v}")


def _reference_a4():
    import gradcam
    from minicnn import functional

    def gap_linear_gradient(W, c, u, v):
        classes, K = W.shape
        _, cache = functional.linear_forward(np.zeros((1, K), dtype=W.dtype), W)
        seed = np.eye(classes, dtype=W.dtype)[[c]]  # (1, classes): dy^c/dy
        dF, _, _ = functional.linear_backward(seed, cache, need_dw=False)
        return functional.global_avg_pool_backward(dF, (1, K, u, v))[0]

    return types.SimpleNamespace(
        guided_relu_backward=lambda dout, x: functional.relu_backward(dout, x > 0, "guided"),
        deconvnet_relu_backward=lambda dout, x: functional.relu_backward(dout, x > 0, "deconvnet"),
        gap_linear_gradient=gap_linear_gradient,
        cam_alpha=lambda W, c, u, v: gradcam.grad_cam_weights(
            None, gap_linear_gradient(W, c, u, v)[None])[0])


A4 = Assignment("A4", "04_guided_cam.py", "guided ReLU rule, deconvnet rule, the CAM identity",
                ("guided_relu_backward", "deconvnet_relu_backward", "gap_linear_gradient",
                 "cam_alpha"),
                ("gradcam", "minicnn.functional", "minicnn.kernels", "minicnn.naive",
                 "minicnn.naive_layers", "minicnn.layers", "minicnn.model"), _reference_a4,
                "minicnn.functional.relu_backward, linear/GAP backward, gradcam.grad_cam_weights", [
    Part("guided_relu_backward: Eq. (6.3) on hidden arrays", 2,
         "the signal passes only where BOTH hold: the unit was active in the forward pass (an "
         "input of exactly 0 counts as inactive) and the signal from above is positive",
         lambda m, c: a4_rule(m, c, "guided")),
    Part("deconvnet_relu_backward: Eq. (6.2) on hidden arrays", 1,
         "the deconvnet rule looks only at the signal from above, never at the forward input",
         lambda m, c: a4_rule(m, c, "deconvnet")),
    Part("gap_linear_gradient: gradient check of dy^c/dA on hidden heads", 2,
         "differentiate Eq. (4.1): which row of W does y^c use, and how much does ONE position "
         "(i, j) change the average F_k?",
         a4_gap_gradient),
    Part("cam_alpha: the CAM identity against a real Grad-CAM run", 2,
         "Eq. (1) averages dy^c/dA over the positions, and on this head that gradient is the "
         "same at every position (part 3); mind the factor Z = u*v (lesson 05, section 5)",
         a4_cam_alpha),
])

ASSIGNMENTS = {a.key: a for a in (A1, A2, A3, A4)}


# --------------------------------------------------------------------------- running
def find(name):
    """An assignment by key ("A1", "a1", "1", "01"), file name ("01_conv", "01_conv.py") or slug."""
    key = str(name).strip().lower().removesuffix(".py")
    for a in ASSIGNMENTS.values():
        stem = a.file.removesuffix(".py")
        if key in (a.key.lower(), a.key[1:], a.key[1:].zfill(2), stem, stem.split("_", 1)[1]):
            return a
    raise KeyError(f"unknown assignment {name!r}; choose one of "
                   + ", ".join(f"{a.key} ({a.file})" for a in ASSIGNMENTS.values()))


def load_student(path):
    """Import a student's file by path (a fresh module each time). Raises with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"student_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forbidden_uses(path, forbidden):
    """(dotted name, line) for every use of a forbidden module in the file (imports and text)."""
    source = Path(path).read_text()
    hits = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return hits  # the import will report it
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            parts, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                names = [".".join([cur.id] + parts[::-1])]
        for name in names:
            for bad in forbidden:
                if name == bad or name.startswith(bad + "."):
                    hits.append((bad, node.lineno))
    return sorted(set(hits), key=lambda t: t[1])


def _where(exc, path):
    """' (your file, line N: code)' for the deepest frame of the traceback in the student's file."""
    if path is None:
        return ""
    target = str(Path(path).resolve())
    tb, found = exc.__traceback__, None
    while tb is not None:
        if str(Path(tb.tb_frame.f_code.co_filename).resolve()) == target:
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    line = found.tb_lineno
    try:
        code = Path(path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        code = ""
    return f" (your file, line {line}: {code})"


def _alarm(seconds):
    if hasattr(signal, "SIGALRM"):
        def handler(signum, frame):
            raise _Timeout()

        signal.signal(signal.SIGALRM, handler)
        signal.alarm(seconds)


def run_part(part, module, ctx, path):
    """(passed, message) for one part; never raises (except KeyboardInterrupt)."""
    try:
        np.seterr(all="ignore")
        _alarm(PART_TIME_LIMIT)
        try:
            part.run(module, ctx)
        finally:
            if hasattr(signal, "SIGALRM"):
                signal.alarm(0)
        return True, ""
    except KeyboardInterrupt:
        raise
    except _Timeout:
        return False, f"took longer than {PART_TIME_LIMIT} s (an endless loop?)"
    except NotImplementedError as e:
        return False, f"not implemented yet (NotImplementedError: {e})"
    except Fail as e:
        return False, str(e)
    except AttributeError as e:
        if module is not None and "has no attribute" in str(e) and "student_" in str(e):
            return False, f"your file does not define {str(e).split('attribute ')[-1]}"
        return False, f"raised AttributeError: {e}{_where(e, path)}"
    except Exception as e:  # noqa: BLE001  a crash in the student's code: a FAIL line
        return False, f"raised {type(e).__name__}: {e}{_where(e, path)}"


def grade(assignment, path=None, solutions=False, seed=HIDDEN_SEED, out=sys.stdout):
    """Grade one assignment; print per-part lines and a score. Returns (points, total)."""
    ctx = Context(seed)
    total = sum(p.points for p in assignment.parts)
    if solutions:
        print(f"Grading {assignment.key} ({assignment.title}) -- reference implementation: "
              f"{assignment.reference_name}", file=out)
    else:
        print(f"Grading {assignment.key} ({assignment.title}) -- {path}", file=out)
    module, blocked = None, None
    if solutions:
        module = assignment.reference()
    else:
        try:
            hits = forbidden_uses(path, assignment.forbidden)
            if hits:
                blocked = ("your file uses the solution key: "
                           + ", ".join(f"{name} (line {line})" for name, line in hits)
                           + "; write the code yourself")
            else:
                module = load_student(path)
        except Exception as e:  # noqa: BLE001  (an import error of any kind)
            blocked = f"could not load {path}: {type(e).__name__}: {e}{_where(e, path)}"
    points = 0
    for i, part in enumerate(assignment.parts, start=1):
        if blocked:
            ok, msg = False, blocked
        else:
            ok, msg = run_part(part, module, ctx, None if solutions else path)
        points += part.points if ok else 0
        print(f"  {'PASS' if ok else 'FAIL'}  {i}. {part.title:78s} "
              f"{part.points if ok else 0}/{part.points}", file=out)
        if not ok:
            print(f"        {msg}", file=out)
            print(f"        hint: {part.hint}", file=out)
    verdict = "all parts pass" if points == total else "some parts fail"
    print(f"Score: {points}/{total} ({100 * points / total:.0f}%) -- {verdict}", file=out)
    return points, total


def _list(out=sys.stdout):
    for a in ASSIGNMENTS.values():
        total = sum(p.points for p in a.parts)
        print(f"{a.key}  lessons/assignments/{a.file}: {a.title} ({total} points)", file=out)
        for i, p in enumerate(a.parts, start=1):
            print(f"      {i}. {p.title} ({p.points})", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lessons.grade",
                                     description="Grade an assignment of lessons/assignments/.")
    parser.add_argument("assignment", nargs="?", help="A1..A4 (or 01, conv, 01_conv.py); "
                        "with --solutions, 'all' or nothing grades every assignment")
    parser.add_argument("file", nargs="?", help="the student's file (default: the file in "
                        "lessons/assignments/)")
    parser.add_argument("--solutions", action="store_true",
                        help="grade the reference implementation (teachers: must score 100%%)")
    parser.add_argument("--seed", type=int, default=HIDDEN_SEED,
                        help="seed of the hidden cases (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the assignments and parts")
    args = parser.parse_intermixed_args(argv)  # flags may sit between the two names
    if args.list:
        _list()
        return 0
    try:
        if args.solutions and args.assignment in (None, "all"):
            chosen = list(ASSIGNMENTS.values())
        elif args.assignment is None:
            parser.print_usage(sys.stderr)
            print("grade: error: name an assignment (A1..A4), or use --solutions or --list",
                  file=sys.stderr)
            return 2
        else:
            chosen = [find(args.assignment)]
    except KeyError as e:
        print(f"grade: error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.file and args.solutions:
        print("grade: error: --solutions grades the reference; give no file", file=sys.stderr)
        return 2
    all_pass = True
    for a in chosen:
        path = Path(args.file) if args.file else ASSIGNMENTS_DIR / a.file
        if not args.solutions and not path.is_file():
            print(f"grade: error: no such file: {path}", file=sys.stderr)
            return 2
        points, total = grade(a, path, args.solutions, args.seed)
        all_pass &= points == total
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
