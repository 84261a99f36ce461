"""A1, ``lessons/assignments/01_conv.py``: a convolution's backward pass as matrix products.

The file GIVES ``im2col`` and ``conv2d_forward(x, w, b=None, stride=1, padding=0) -> (out,
cache)`` (lesson 01, Eq. 1.3); the student writes ``col2im(dcols, x_shape, KH, KW, stride,
padding) -> dx`` (the adjoint of im2col) and ``conv2d_backward(dout, cache) -> (dx, dw, db)``
(Eqs. 1.4-1.6 in matrix form). Lesson 01 derives both and prints neither. The references are
the library's reference tier: ``minicnn.im2col.col2im`` and ``minicnn.functional``.

Parts (9 points):
    1. col2im (3): the visible case of the student's ``check()`` (window counts), then 4 hidden
       cases; a result of the padded shape gets its own message.
    2. backward dx (3): the visible case, then 4 hidden cases; the dx of the flipped kernel
       gets the message "a convolution layer computes a cross-correlation".
    3. backward dw (2): the same cases; dw of the first image only gets its own message.
    4. backward db (1): the same cases (with a bias); the mean instead of the sum gets its own.

Hidden cases: case k draws from ``ctx.rng(k)``: col2im k = 0..3, backward k = 100..103 (dout
from ``ctx.rng(200 + k)``): N, C, F in 1..3, KH and KW in 1..4 (drawn apart), stride 1..3,
padding 0..2, H in max(1, KH - 2p)..KH + 5 (W likewise), all standard normal in float64; the
bias is None in case 101 (db is then checked to be None).
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Fail, Part, as_array, close, diagnose, expect_tuple

CROSS_CORRELATION = ("your dx is the dx of the FLIPPED kernel. A convolution layer computes a "
                     "cross-correlation: (1.5) sends dout back through the same w[f, c, i, j] "
                     "that (1.1) used, unflipped")


def _geometry(r):
    N, C, F = (int(v) for v in r.integers(1, 4, 3))
    KH, KW = (int(v) for v in r.integers(1, 5, 2))
    s, p = int(r.integers(1, 4)), int(r.integers(0, 3))
    H = int(r.integers(max(1, KH - 2 * p), KH + 6))
    W = int(r.integers(max(1, KW - 2 * p), KW + 6))
    return N, C, F, KH, KW, s, p, H, W


def ref_col2im(dcols, x_shape, KH, KW, s, p):
    """col2im through the library: (C*KH*KW, N*OH*OW) -> (N, C, H, W)."""
    from minicnn import im2col

    N, C, H, W = x_shape
    OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
    d = np.asarray(dcols).reshape(C, KH, KW, N, OH, OW).transpose(3, 0, 1, 2, 4, 5)
    dxp = im2col.col2im(np.ascontiguousarray(d), (N, C, H + 2 * p, W + 2 * p), (s, s), (1, 1))
    return im2col.unpad(dxp, (p, p, p, p))


def ref_backward(x, w, b, s, p, dout):
    from minicnn import functional

    return functional.conv2d_backward(dout, functional.conv2d_forward(x, w, b, s, p)[1])


def _visible():
    """The case of the student's check(): integer arrays, stride 1, padding 1."""
    x = (np.arange(18) % 5 - 2.0).reshape(1, 2, 3, 3)
    w = (np.arange(16) % 3 - 1.0).reshape(2, 2, 2, 2) + np.eye(2).reshape(1, 1, 2, 2)
    return x, w, np.array([1.0, -2.0]), 1, 1, (np.arange(32) % 7 - 3.0).reshape(1, 2, 4, 4)


def a1_col2im(student, ctx):
    cases = [(np.ones((9, 4)), (1, 1, 4, 4), 3, 3, 1, 0)]
    for k in range(4):
        r = ctx.rng(k)
        N, C, _, KH, KW, s, p, H, W = _geometry(r)
        OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
        cases.append((r.standard_normal((C * KH * KW, N * OH * OW)), (N, C, H, W), KH, KW, s, p))
    for dcols, shape, KH, KW, s, p in cases:
        case = f"x {shape}, kernel {KH} x {KW}, stride {s}, padding {p}"
        got = as_array(student.col2im(dcols, shape, KH, KW, s, p), "dx")
        padded = shape[:2] + (shape[2] + 2 * p, shape[3] + 2 * p)
        if p and got.shape == padded:
            raise Fail(f"dx has the PADDED shape {padded} ({case}): crop the padding off dx_pad")
        close(got, lambda: ref_col2im(dcols, shape, KH, KW, s, p), "dx", case=case)


def _cases(ctx):
    out = [_visible()]
    for k in range(4):
        r = ctx.rng(100 + k)
        N, C, F, KH, KW, s, p, H, W = _geometry(r)
        x, w = r.standard_normal((N, C, H, W)), r.standard_normal((F, C, KH, KW))
        b = None if k == 1 else r.standard_normal(F)
        OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
        out.append((x, w, b, s, p, ctx.rng(200 + k).standard_normal((N, F, OH, OW))))
    return out


def _a1_backward(student, ctx, which):
    for x, w, b, s, p, dout in _cases(ctx):
        case = (f"x {x.shape}, w {w.shape}, b {'None' if b is None else b.shape}, stride {s}, "
                f"padding {p}")
        _, cache = expect_tuple(student.conv2d_forward(x, w, b, stride=s, padding=p), 2,
                                "conv2d_forward (given)", "(out, cache)")
        dx, dw, db = expect_tuple(student.conv2d_backward(dout, cache), 3, "conv2d_backward",
                                  "(dx, dw, db)")
        ref = lambda: ref_backward(x, w, b, s, p, dout)  # noqa: E731
        if which == "dx":
            diagnose(dx, [(CROSS_CORRELATION,
                           lambda: ref_backward(x, w[:, :, ::-1, ::-1], b, s, p, dout)[0])],
                     correct=lambda: ref()[0])
            close(dx, lambda: ref()[0], "dx", case=case)
        elif which == "dw":
            diagnose(dw, [("dw holds the first image's share only: (1.4) sums over n as well",
                           lambda: ref_backward(x[:1], w, b, s, p, dout[:1])[1])],
                     correct=lambda: ref()[1])
            close(dw, lambda: ref()[1], "dw", case=case)
        elif b is None:
            if db is not None:
                raise Fail(f"db must be None when the forward had b=None ({case})")
        else:
            n_sum = dout.shape[0] * dout.shape[2] * dout.shape[3]
            diagnose(db, [(f"db is the mean over (n, oh, ow), {n_sum} times too small: (1.6) "
                           "is a sum", lambda: ref()[2] / n_sum)], correct=lambda: ref()[2])
            close(db, lambda: ref()[2], "db", case=case)


def reference():
    """For ``--solutions``: the library's reference tier, in A1's signatures."""
    from minicnn import functional

    return types.SimpleNamespace(
        col2im=ref_col2im,
        conv2d_forward=lambda x, w, b=None, stride=1, padding=0: functional.conv2d_forward(
            x, w, b, stride, padding),
        conv2d_backward=functional.conv2d_backward)


A1 = Assignment("A1", "01_conv.py", "convolution backward as matrix products, with col2im",
                ("col2im", "conv2d_backward"), (), reference,
                "minicnn.im2col.col2im, minicnn.functional.conv2d_forward / conv2d_backward", [
    Part("col2im: the visible case (window counts) and hidden cases", 3,
         "dx_pad starts at zero with the PADDED shape; for every column (n, oh, ow) ADD its "
         "(C, KH, KW) block onto the window at (oh*s, ow*s) (windows overlap: +=, not =); "
         "then crop the padding", a1_col2im),
    Part("backward dx: visible and hidden cases (kernels KH != KW, strides 1-3, padding 0-2)", 3,
         "dcols = w_mat^T @ dout_mat with dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1) "
         "(the column order of im2col: (n, oh, ow)); then dx = col2im(dcols) (lesson 01, Eq. 1.5)",
         lambda m, c: _a1_backward(m, c, "dx")),
    Part("backward dw: visible and hidden cases", 2,
         "dw_mat = dout_mat @ cols^T, reshaped to w's shape; the columns of every image are in "
         "cols, so the product already sums over n (lesson 01, Eq. 1.4)",
         lambda m, c: _a1_backward(m, c, "dw")),
    Part("backward db: visible and hidden cases (None without a bias)", 1,
         "db[f] = dout[:, f].sum(): over images AND positions (lesson 01, Eq. 1.6)",
         lambda m, c: _a1_backward(m, c, "db")),
])
