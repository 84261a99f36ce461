"""Assignment A2: max pooling, forward and backward, with loops (lesson 02).

Fill in the two functions marked ``TODO(student)``. Then

    python lessons/assignments/02_maxpool.py                                # your own quick check
    python -m lessons.grade A2 lessons/assignments/02_maxpool.py            # the grader

The grader checks the forward on visible and hidden cases, the backward against central
differences (on inputs with distinct values, where max is differentiable), overlapping
windows (stride < kernel), and THE TIE RULE: when several entries of a window share the
maximum, the whole gradient goes to the FIRST of them in row-major order of the window
(``np.argmax`` of the flattened window), as in PyTorch. After a ReLU, all-zero windows are
common, so this rule matters (lesson 02, "Ties").

Rules: NumPy only. Do not import ``minicnn.naive`` or ``minicnn.functional``.

    out[n, c, oh, ow] = max_{i,j} x[n, c, oh*s + i, ow*s + j]                   (lesson 02, Eq. 2.1)
    dx[n, c, oh*s + i*, ow*s + j*] += dout[n, c, oh, ow],  (i*, j*) = first argmax   (Eq. 2.2)
    OH = (H - K) // s + 1   (no padding here)
"""

import numpy as np


def maxpool2d_forward(x, kernel_size, stride=None):
    """Max pooling with a square kernel, no padding.

    Parameters
    ----------
    x : (N, C, H, W) float array
    kernel_size : int K (windows are K x K)
    stride : int, or None for stride = kernel_size
    Returns
    -------
    out : (N, C, OH, OW)
    cache : anything your backward needs (e.g. x's shape, the geometry and the argmax indices)
    """
    # TODO(student): for every (oh, ow): the window x[:, :, oh*s:oh*s+K, ow*s:ow*s+K],
    #   reshaped to (N, C, K*K); its max is the output, its argmax (axis=2) goes in the cache.
    raise NotImplementedError("A2: write maxpool2d_forward (lesson 02, Eq. 2.1)")


def maxpool2d_backward(dout, cache):
    """Gradient of maxpool2d_forward: each window's gradient goes to its first maximum.

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : what your maxpool2d_forward returned
    Returns
    -------
    dx : (N, C, H, W)
    """
    # TODO(student): for every (oh, ow): turn the cached argmax into (i*, j*) = divmod(argmax, K)
    #   and ADD dout[:, :, oh, ow] at x[:, :, oh*s + i*, ow*s + j*] (windows may overlap: +=).
    #   Do not use a mask x == max: on ties it sends the gradient to every tied entry.
    raise NotImplementedError("A2: write maxpool2d_backward (lesson 02, Eq. 2.2)")


def check():
    """Your own quick check: the tie rule, and a gradient check with minicnn.gradcheck."""
    from minicnn.gradcheck import numerical_vjp, rel_error

    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 10.0  # distinct values
    try:
        out, cache = maxpool2d_forward(x, 2)
        dout = rng.standard_normal(out.shape)
        dx = maxpool2d_backward(dout, cache)
        _, zc = maxpool2d_forward(np.zeros((1, 1, 2, 2)), 2)
        tie = maxpool2d_backward(np.ones((1, 1, 1, 1)), zc)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        return
    num = numerical_vjp(lambda v: maxpool2d_forward(v, 2)[0], x.copy(), dout)
    print(f"dx relative error {rel_error(dx, num):.1e}  (should be about 1e-9)")
    print("all-zero window, gradient of 1:\n", tie[0, 0], "\n(expected [[1, 0], [0, 0]])")


if __name__ == "__main__":
    check()
