"""A1, ``lessons/assignments/01_conv.py``: a convolution's forward and backward pass, with loops.

The student writes ``conv2d_forward(x, w, b=None, stride=1, padding=0) -> (out, cache)`` and
``conv2d_backward(dout, cache) -> (dx, dw, db)`` in NumPy (lesson 01, Eqs. 1.1-1.6). The
solution key, which the file must not use, is ``minicnn.naive`` and ``minicnn.functional``;
``--solutions`` grades ``minicnn.naive.conv2d_forward`` / ``conv2d_backward`` themselves.

Parts (9 points):
    1. forward, the visible case (1): x (2, 3, 6, 5), w (4, 3, 3, 2), b (4,), stride 2,
       padding 1, drawn from default_rng(0) as in the student's ``check()``.
    2. forward, 8 hidden cases (2): against ``minicnn.naive.conv2d_forward``.
    3. backward dx (3): on 4 hidden cases, a gradient check against central differences of the
       student's OWN forward (``minicnn.gradcheck.numerical_vjp``), then against
       ``minicnn.naive.conv2d_backward``.
    4. backward dw and db (3): the same checks for dw, and for db where the case has a bias.

Hidden cases: case k draws from ``ctx.rng(k)`` (forward: k = 0..7; backward: k = 100..103, with
dout from ``ctx.rng(200 + k)``): N, C, F in 1..3, KH and KW in 1..4 (drawn apart, so often
KH != KW), stride 1..3, padding 0..2, H in max(1, KH - 2p)..KH + 5 (W likewise, so the output
is at least 1 x 1), all standard normal in float64; the bias is None in every third case.
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Part, as_array, close, expect_pair, expect_triple, grad_close


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
    out, _ = expect_pair(mod.conv2d_forward(x, w, b, stride=2, padding=1), "conv2d_forward")
    close(out, naive.conv2d_forward(x, w, b, 2, 1)[0], "out", case=_case(x, w, b, 2, 1))


def a1_forward_hidden(mod, ctx):
    from minicnn import naive

    for x, w, b, s, p in _conv_cases(ctx, 0, 8):
        out, _ = expect_pair(mod.conv2d_forward(x, w, b, stride=s, padding=p), "conv2d_forward")
        close(out, naive.conv2d_forward(x, w, b, s, p)[0], "out", case=_case(x, w, b, s, p))


def _conv_of(mod, args, name, s, p):
    """The student's forward as a function of one of its arguments (for numerical_vjp)."""

    def f(v):
        kw = dict(args, **{name: v})
        out = mod.conv2d_forward(kw["x"], kw["w"], kw["b"], stride=s, padding=p)[0]
        return as_array(out, "out")

    return f


def _a1_backward(mod, ctx, which):
    from minicnn import naive
    from minicnn.gradcheck import numerical_vjp

    for k, (x, w, b, s, p) in enumerate(_conv_cases(ctx, 100, 4)):
        case = _case(x, w, b, s, p)
        out, cache = expect_pair(mod.conv2d_forward(x, w, b, stride=s, padding=p), "conv2d_forward")
        dout = ctx.rng(200 + k).standard_normal(np.shape(out))
        dx, dw, db = expect_triple(mod.conv2d_backward(dout, cache), "conv2d_backward")
        rx, rw, rb = naive.conv2d_backward(dout, naive.conv2d_forward(x, w, b, s, p)[1])
        args = {"x": x, "w": w, "b": b}
        checks = [("dx", dx, rx)] if which == "dx" else [("dw", dw, rw)] + (
            [("db", db, rb)] if b is not None else [])
        for name, got, ref in checks:
            num = numerical_vjp(_conv_of(mod, args, name[1], s, p), args[name[1]].copy(), dout)
            grad_close(got, num, name, case)
            close(got, ref, name, case=case)


def reference():
    """For ``--solutions``: minicnn.naive's loops, which have the signatures A1 asks for."""
    from minicnn import naive

    return types.SimpleNamespace(conv2d_forward=naive.conv2d_forward,
                                 conv2d_backward=naive.conv2d_backward)


A1 = Assignment("A1", "01_conv.py", "convolution forward and backward, with loops",
                ("conv2d_forward", "conv2d_backward"),
                ("minicnn.naive", "minicnn.functional", "minicnn.kernels"),
                reference, "minicnn.naive.conv2d_forward / conv2d_backward", [
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
