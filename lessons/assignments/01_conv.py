"""Assignment A1: a convolution's forward and backward pass, with loops (lesson 01).

Fill in the two functions marked ``TODO(student)``. Then

    python lessons/assignments/01_conv.py                                   # your own quick check
    python -m lessons.grade A1 lessons/assignments/01_conv.py               # the grader

The grader compares your functions with the reference on a visible case and on hidden
random cases (other shapes, strides, paddings, with and without bias), and checks your
backward against central differences of YOUR forward (a gradient check, lesson 01 Eq. 1.7).

Rules: NumPy only. Do not import ``minicnn.naive`` or ``minicnn.functional``: they are the
solution key, and the grader refuses a file that imports them.

Shapes (lesson 01, Eqs. 1.1-1.6):
    x (N, C, H, W), w (F, C, KH, KW), b (F,) or None  ->  out (N, F, OH, OW)
    OH = (H + 2*padding - KH) // stride + 1,  OW = (W + 2*padding - KW) // stride + 1
    out[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * x_pad[n, c, oh*stride + i, ow*stride + j]
"""

import numpy as np


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in PyTorch) by loops over output positions.

    Parameters
    ----------
    x : (N, C, H, W) float array
    w : (F, C, KH, KW) filters (KH and KW may differ)
    b : (F,) biases, or None for no bias
    stride : int, the same along both axes
    padding : int, zeros added on every side
    Returns
    -------
    out : (N, F, OH, OW), the dtype of x
    cache : anything your conv2d_backward needs (e.g. a tuple (x, w, b, stride, padding))
    """
    # TODO(student): 1. pad x with zeros on the two spatial axes only (np.pad)
    #                2. compute OH, OW and allocate out
    #                3. for every (oh, ow): take the window x_pad[:, :, oh*stride:oh*stride+KH, ...]
    #                   and reduce it against w over (C, KH, KW) for every n and f at once
    #                   (np.tensordot or a reshape and @), then add b if it is not None
    raise NotImplementedError("A1: write conv2d_forward (lesson 01, Eq. 1.1)")


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward.

    Parameters
    ----------
    dout : (N, F, OH, OW) upstream gradient dL/dout
    cache : what your conv2d_forward returned
    Returns
    -------
    dx : (N, C, H, W)
    dw : (F, C, KH, KW)
    db : (F,), or None when the forward had b=None
    """
    # TODO(student): loop over (oh, ow) again; each window gets back (lesson 01, Eqs. 1.4-1.6)
    #   dw           += the window weighted by dout[:, :, oh, ow], summed over n
    #   dx_pad[window] += w weighted by dout[:, :, oh, ow], summed over f
    #   db = dout summed over n, oh, ow
    # and crop the padding off dx_pad at the end.
    raise NotImplementedError("A1: write conv2d_backward (lesson 01, Eqs. 1.4-1.6)")


def check():
    """Your own quick check: shapes, and a gradient check with minicnn.gradcheck."""
    from minicnn.gradcheck import numerical_vjp, rel_error

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    try:
        out, cache = conv2d_forward(x, w, b, stride=2, padding=1)
        print("out shape", out.shape, "(expected (2, 4, 3, 3))")
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv2d_backward(dout, cache)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        return
    num = numerical_vjp(lambda v: conv2d_forward(v, w, b, 2, 1)[0], x.copy(), dout)
    print(f"dx relative error {rel_error(dx, num):.1e}  (should be about 1e-10)")
    num = numerical_vjp(lambda v: conv2d_forward(x, v, b, 2, 1)[0], w.copy(), dout)
    print(f"dw relative error {rel_error(dw, num):.1e}  (should be about 1e-10)")
    num = numerical_vjp(lambda v: conv2d_forward(x, w, v, 2, 1)[0], b.copy(), dout)
    print(f"db relative error {rel_error(db, num):.1e}  (should be about 1e-10)")


if __name__ == "__main__":
    check()
