"""A2, ``lessons/assignments/02_maxpool.py``: max pooling forward and backward, and the tie rule.

The student writes ``maxpool2d_forward(x, kernel_size, stride=None) -> (out, cache)`` and
``maxpool2d_backward(dout, cache) -> dx`` with loops (lesson 02, Eqs. 2.1-2.2). A window's
gradient goes to its FIRST maximum in row-major order (``np.argmax`` of the flattened window),
as in PyTorch. Lesson 02 derives both and prints neither. The file may import NumPy only;
``--solutions`` grades ``minicnn.naive.maxpool2d_forward`` /
``maxpool2d_backward`` themselves.

Parts (8 points):
    1. forward (2): the visible case (x (2, 3, 6, 6) of distinct values from default_rng(0),
       kernel 2, stride None) and 5 hidden cases, against ``minicnn.naive.maxpool2d_forward``.
    2. backward, non-overlapping windows (2): against ``minicnn.naive.maxpool2d_backward``.
    3. backward, overlapping windows (stride < kernel) (2): the same check.
    4. the tie rule (2): an all-zero 2 x 2 window must send its gradient to entry [0, 0] only,
       then 3 hidden cases full of ties; a ``x == max`` mask gets its own message.

Hidden cases: case k draws from ``ctx.rng(k)``.
    part 1: k = 300..304 for (kernel, stride) = (3, None), (2, 1), (3, 2), (3, 3), (1, None);
            x standard normal, N in 1..2, C = 2, H and W in K..K + 5.
    parts 2-3: k = 400..401 for (2, None), (3, None); k = 450..452 for (3, 1), (3, 2), (2, 1);
            x (2, 2, H, W), H and W in K..K + 4, distinct values 0.1 apart in shuffled order
            (max is differentiable there); dout standard normal from the same generator.
    part 4: k = 500..502 for (2, None), (3, 2), (2, 1); x (2, 3, 7, 7) of integers -2..2
            clipped at 0 (many ties, many all-zero windows, as after a ReLU).
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Fail, Part, as_array, close, diagnose, expect_tuple

TIE_MASK = ("a window full of ties sent its gradient to EVERY tied entry (a mask x == max); it "
            "must go to the first maximum only: an all-zero 2 x 2 window gives [[1, 0], [0, 0]]")


def _pool(student, x, K, s):
    """The student's forward, checked to return a pair (out, cache)."""
    return expect_tuple(student.maxpool2d_forward(x, K, stride=s), 2, "maxpool2d_forward",
                        "(out, cache)")


def _distinct(r, shape):
    """Distinct values 0.1 apart (max is differentiable there), shuffled."""
    return r.permutation(int(np.prod(shape))).reshape(shape) / 10.0


def ref_forward(x, K, s):
    from minicnn import naive

    return naive.maxpool2d_forward(x, K, s)[0]


def ref_backward(x, K, s, dout):
    from minicnn import naive

    return naive.maxpool2d_backward(dout, naive.maxpool2d_forward(x, K, s)[1])


def mask_backward(x, K, s, dout):
    """The mistake: every entry equal to its window's max gets the window's gradient."""
    N, C, H, W = x.shape
    s = s or K
    dx = np.zeros_like(x, dtype=float)
    for oh in range((H - K) // s + 1):
        for ow in range((W - K) // s + 1):
            win = x[:, :, oh * s:oh * s + K, ow * s:ow * s + K]
            hit = win == win.max(axis=(2, 3), keepdims=True)
            dx[:, :, oh * s:oh * s + K, ow * s:ow * s + K] += hit * dout[:, :, oh:oh + 1, ow:ow + 1]
    return dx


def a2_forward(student, ctx):
    r = np.random.default_rng(0)
    cases = [(_distinct(r, (2, 3, 6, 6)), 2, None)]
    for k, (K, s) in enumerate(((3, None), (2, 1), (3, 2), (3, 3), (1, None))):
        rr = ctx.rng(300 + k)
        H, W = (int(v) for v in rr.integers(K, K + 6, 2))
        cases.append((rr.standard_normal((int(rr.integers(1, 3)), 2, H, W)), K, s))
    for x, K, s in cases:
        out, _ = _pool(student, x, K, s)
        close(out, lambda: ref_forward(x, K, s), "out", case=f"x {x.shape}, kernel {K}, stride {s}")


def _a2_backward(student, ctx, geometries, k0):
    for k, (K, s) in enumerate(geometries):
        r = ctx.rng(k0 + k)
        H, W = (int(v) for v in r.integers(K, K + 5, 2))
        x = _distinct(r, (2, 2, H, W))
        case = f"x {x.shape}, kernel {K}, stride {s}"
        out, cache = _pool(student, x, K, s)
        dout = r.standard_normal(np.shape(out))
        dx = student.maxpool2d_backward(dout, cache)
        close(dx, lambda: ref_backward(x, K, s, dout), "dx", case=case)


def a2_ties(student, ctx):
    zero = np.zeros((1, 1, 2, 2))
    _, cache = _pool(student, zero, 2, None)
    dx = as_array(student.maxpool2d_backward(np.ones((1, 1, 1, 1)), cache), "dx")
    diagnose(dx, [(TIE_MASK, lambda: np.ones((1, 1, 2, 2)))])
    close(dx, [[[[1.0, 0.0], [0.0, 0.0]]]], "dx of an all-zero window")
    for k, (K, s) in enumerate(((2, None), (3, 2), (2, 1))):
        r = ctx.rng(500 + k)
        x = np.maximum(r.integers(-2, 3, (2, 3, 7, 7)), 0).astype(float)  # many ties, many zeros
        out, cache = _pool(student, x, K, s)
        dout = r.standard_normal(np.shape(out))
        dx = student.maxpool2d_backward(dout, cache)
        diagnose(dx, [(TIE_MASK, lambda: mask_backward(x, K, s, dout))])
        close(dx, lambda: ref_backward(x, K, s, dout), "dx",
              case=f"tied values, kernel {K}, stride {s}")


def reference():
    """For ``--solutions``: minicnn.naive's loops, which have the signatures A2 asks for."""
    from minicnn import naive

    return types.SimpleNamespace(maxpool2d_forward=naive.maxpool2d_forward,
                                 maxpool2d_backward=naive.maxpool2d_backward)


A2 = Assignment("A2", "02_maxpool.py", "max pooling forward and backward, and the tie rule",
                ("maxpool2d_forward", "maxpool2d_backward"), (),
                reference, "minicnn.naive.maxpool2d_forward / maxpool2d_backward", [
    Part("forward, visible and hidden cases (kernels 1-3, strides 1-3)", 2,
         "OH = (H - K) // s + 1 with s = K when stride is None; out = max of each K x K window "
         "(lesson 02, Eq. 2.1)", a2_forward),
    Part("backward, non-overlapping windows", 2,
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
