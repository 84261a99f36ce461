"""Assignment A1: a convolution's backward pass as matrix products, with col2im (lesson 01).

Lesson 01 derives the backward pass (Eqs. 1.4-1.6) and its matrix form, but prints neither:
that is this assignment. The forward pass (lesson 01, Eq. 1.3: one im2col and one matrix
product) is GIVEN below; you write its adjoint ``col2im`` and the backward ``conv2d_backward``
(the two functions marked ``TODO(student)``). Then

    python lessons/assignments/01_conv.py                                   # your own check
    python -m lessons.grade A1 lessons/assignments/01_conv.py               # the grader

Your ``check()`` compares with numbers written into this file (exit status 1 until they
match). The grader runs your file in a process of its own and compares with the library on
the visible case and on hidden random cases (other shapes, strides, paddings, b = None).

Rules: import only NumPy (and the standard library's math, itertools, functools ...). The
grader refuses any other import, however it is spelled: the library is the solution key.

Shapes and the matrix form (lesson 01):
    x (N, C, H, W), w (F, C, KH, KW), b (F,) or None  ->  out (N, F, OH, OW)
    cols = im2col(x): (C*KH*KW, N*OH*OW); row (c, i, j), column (n, oh, ow):
        cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*s + i, ow*s + j]
    out_mat = w_mat @ cols,  w_mat = w.reshape(F, C*KH*KW),  out_mat: (F, N*OH*OW)      (1.3)
    dw_mat = dout_mat @ cols^T                                                          (1.4)
    dcols = w_mat^T @ dout_mat;  dx = col2im(dcols)                                     (1.5)
    db = dout summed over n, oh, ow                                                     (1.6)
with dout_mat = dout arranged like out_mat: (F, N*OH*OW).

Written questions (answer them in a few sentences each):
1. Why is col2im the adjoint of im2col, and how could you test that without a reference?
2. With stride 1 and a 3 x 3 kernel, how many windows cover a pixel? What happens to dx if
   col2im writes `=` instead of `+=`?
3. The layer computes a cross-correlation. Where, if anywhere, does a flipped kernel appear
   in its backward pass?
"""

import numpy as np


# --------------------------------------------------------------------------- given
def out_size(H, K, stride, padding):
    """OH = (H + 2*padding - K) // stride + 1   (lesson 01, Eq. 1.2)."""
    return (H + 2 * padding - K) // stride + 1


def im2col(x, KH, KW, stride=1, padding=0):
    """Every window of the zero-padded x as a column: (C*KH*KW, N*OH*OW). GIVEN.

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*stride + i, ow*stride + j]
    """
    N, C, H, W = x.shape
    OH, OW = out_size(H, KH, stride, padding), out_size(W, KW, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW]
            cols[:, :, :, :, oh, ow] = window.transpose(1, 2, 3, 0)  # (C, KH, KW, N)
    return cols.reshape(C * KH * KW, N * OH * OW)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """A convolution layer's forward pass (a cross-correlation, Eq. 1.3). GIVEN.

    Returns
    -------
    out : (N, F, OH, OW)
    cache : (x, w, b, stride, padding, cols), for conv2d_backward
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = out_size(H, KH, stride, padding), out_size(W, KW, stride, padding)
    cols = im2col(x, KH, KW, stride, padding)
    out = w.reshape(F, -1) @ cols  # (F, N*OH*OW)
    if b is not None:
        out = out + b[:, None]
    out = out.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)
    return out, (x, w, b, stride, padding, cols)


# --------------------------------------------------------------------------- yours
def col2im(dcols, x_shape, KH, KW, stride=1, padding=0):
    """The adjoint of im2col: add every column's gradient back onto its window.

    dx_pad[n, c, oh*s + i, ow*s + j] += dcols[(c, i, j), (n, oh, ow)]   for every column,
    then dx = dx_pad without its padded border.

    Parameters
    ----------
    dcols : (C*KH*KW, N*OH*OW) gradient of the columns
    x_shape : (N, C, H, W), the shape of the (unpadded) input
    KH, KW, stride, padding : the geometry of the im2col that made the columns
    Returns
    -------
    dx : (N, C, H, W)
    """
    # TODO(student): 1. dx_pad = zeros of the PADDED shape; view dcols as (C, KH, KW, N, OH, OW)
    #                2. for every (oh, ow): ADD that column block onto its window of dx_pad
    #                   (windows overlap when stride < kernel: += , not =)
    #                3. crop the padding
    raise NotImplementedError("A1: write col2im (the adjoint of im2col)")


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward, as matrix products (Eqs. 1.4-1.6).

    Parameters
    ----------
    dout : (N, F, OH, OW) upstream gradient dL/dout
    cache : what conv2d_forward returned: (x, w, b, stride, padding, cols)
    Returns
    -------
    dx : (N, C, H, W);  dw : (F, C, KH, KW);  db : (F,), or None when the forward had b=None
    """
    # TODO(student): 1. dout_mat: dout arranged as (F, N*OH*OW), like out_mat in the forward
    #                2. dw from (1.4), db from (1.6)
    #                3. dcols from (1.5), then dx = col2im(dcols, ...)
    raise NotImplementedError("A1: write conv2d_backward (lesson 01, Eqs. 1.4-1.6)")


# --------------------------------------------------------------------------- your check
# A small case with integer inputs, so the expected numbers are exact and short: x (1, 2, 3, 3),
# w (2, 2, 2, 2) (not symmetric), b (2,), stride 1, padding 1 (overlapping windows), dout.
X = (np.arange(18) % 5 - 2.0).reshape(1, 2, 3, 3)
W = (np.arange(16) % 3 - 1.0).reshape(2, 2, 2, 2) + np.eye(2).reshape(1, 1, 2, 2)
B = np.array([1.0, -2.0])
DOUT = (np.arange(32) % 7 - 3.0).reshape(1, 2, 4, 4)
correct_dx = np.array([[[[-13,  -2,   2],
       [ 10,   0,  -3],
       [ -2,   2,   6]],
    
      [[  2,   5,   1],
       [ -7,  -4,   6],
       [  5,   1,  -3]]]], dtype=float)
correct_dw = np.array([[[[-15, -13],
       [ 21,   9]],
    
      [[  0, -13],
       [ -3,  12]]],
    
    
     [[[  9,  -3],
       [ -4,   5]],
    
      [[ 12,  27],
       [-12, -11]]]], dtype=float)
correct_db = np.array([-5, -1], dtype=float)
# col2im of all-ones columns counts how many windows cover each pixel (x (1, 1, 4, 4), 3 x 3,
# stride 1, padding 0; lesson 01's figure of overlaps):
correct_counts = np.array([[[[1, 2, 2, 1],
       [2, 4, 4, 2],
       [2, 4, 4, 2],
       [1, 2, 2, 1]]]], dtype=float)


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    def rel_error(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))

    try:
        counts = col2im(np.ones((9, 4)), (1, 1, 4, 4), 3, 3, 1, 0)
        out, cache = conv2d_forward(X, W, B, stride=1, padding=1)
        dx, dw, db = conv2d_backward(DOUT, cache)
        flipped = conv2d_backward(DOUT, conv2d_forward(X, W[:, :, ::-1, ::-1], B, 1, 1)[1])[0]
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok = True
    for name, got, want in (("col2im counts", counts, correct_counts), ("dx", dx, correct_dx),
                            ("dw", dw, correct_dw), ("db", db, correct_db)):
        got = np.asarray(got, dtype=float)
        good = got.shape == want.shape and rel_error(got, want) < 1e-9
        ok &= good
        print(f"{name:14s} {'ok' if good else 'WRONG'}"
              + ("" if got.shape == want.shape else f"  shape {got.shape}, expected {want.shape}")
              + (f"  relative error {rel_error(got, want):.1e}" if got.shape == want.shape else ""))
    if dx.shape == correct_dx.shape and rel_error(np.asarray(flipped), correct_dx) < 1e-9:
        print("hint: your dx is right for the FLIPPED kernel. A convolution layer computes a "
              "cross-correlation: (1.5) sends dout back through the same w[f, c, i, j] as (1.1)")
    if np.shape(db) == correct_db.shape and rel_error(np.asarray(db) * 16, correct_db) < 1e-9:
        print("hint: db is 16 = OH*OW times too small: (1.6) is a sum, not a mean")
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
