"""Assignment A2: max pooling, forward and backward, with loops (lesson 02).

Fill in the two functions marked ``TODO(student)``. Then

    python lessons/assignments/02_maxpool.py                                # your own quick check
    python -m lessons.grade A2 lessons/assignments/02_maxpool.py            # the grader

The grader checks the forward on visible and hidden cases, the backward on inputs with
distinct values (where max is differentiable), overlapping
windows (stride < kernel), and THE TIE RULE: when several entries of a window share the
maximum, the whole gradient goes to the FIRST of them in row-major order of the window
(``np.argmax`` of the flattened window), as in PyTorch. After a ReLU, all-zero windows are
common, so this rule matters (lesson 02, "Ties").

Your ``check()`` compares with numbers written into this file (exit status 1 until they match).

Rules: import only NumPy (and the standard library's math, itertools ...): the grader refuses
any other import, however it is spelled (the library is the solution key). Lesson 02 derives
these equations and prints no code for them: write them yourself.

    out[n, c, oh, ow] = max_{i,j} x[n, c, oh*s + i, ow*s + j]                   (lesson 02, Eq. 2.1)
    dx[n, c, oh*s + i*, ow*s + j*] += dout[n, c, oh, ow],  (i*, j*) = first argmax   (Eq. 2.2)
    OH = (H - K) // s + 1   (no padding here)

Written questions (answer them in a few sentences each):
1. Why must the backward choose ONE maximum on a tie, and why the first?
2. Why are ties common in real networks?
3. With overlapping windows, can one pixel receive gradient from two windows?
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


# Small cases with exact numbers: x (1, 1, 4, 4) of distinct integers, kernel 2 (no overlap)
# and kernel 3 with stride 1 (overlapping windows), and an all-zero window (the tie rule).
X = np.array([[[[3.0, 1, 7, 0], [4, 12, 2, 5], [9, 6, 14, 8], [11, 13, 10, 15]]]])
correct_out = np.array([[[[12,  7],
       [13, 15]]]], dtype=float)
correct_dx = np.array([[[[0, 0, 2, 0],
       [0, 1, 0, 0],
       [0, 0, 0, 0],
       [0, 3, 0, 4]]]], dtype=float)  # dout = [[1, 2], [3, 4]]
correct_dx_overlap = np.array([[[[0, 0, 0, 0],
       [0, 0, 0, 0],
       [0, 0, 6, 0],
       [0, 0, 0, 4]]]], dtype=float)  # kernel 3, stride 1, dout = [[1, 2], [3, 4]]
correct_dx_tie = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    try:
        out, cache = maxpool2d_forward(X, 2)
        dx = maxpool2d_backward(dout, cache)
        _, cache3 = maxpool2d_forward(X, 3, stride=1)
        dx3 = maxpool2d_backward(dout, cache3)
        _, zc = maxpool2d_forward(np.zeros((1, 1, 2, 2)), 2)
        tie = maxpool2d_backward(np.ones((1, 1, 1, 1)), zc)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok = True
    for name, got, want in (("out", out, correct_out), ("dx", dx, correct_dx),
                            ("dx, overlapping", dx3, correct_dx_overlap),
                            ("dx, all-zero window", tie, correct_dx_tie)):
        got = np.asarray(got, dtype=float)
        good = got.shape == want.shape and bool(np.allclose(got, want))
        ok &= good
        print(f"{name:20s} {'ok' if good else 'WRONG: got ' + str(got.tolist())}")
    if np.allclose(np.asarray(tie, dtype=float), 1.0):
        print("hint: a tied window sent its gradient to every tied entry (a mask x == max); "
              "it goes to the FIRST maximum only")
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
