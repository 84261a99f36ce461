"""Winograd F(2x2, 3x3): the 3x3 stride-1 convolution with 2.25x fewer multiplies.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", arXiv:1509.09308v2, Sec. 4.
Every 2x2 block of outputs reads a 4x4 tile d of the padded input (tiles overlap by 2). With

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

one output block of filter f is (Lavin & Gray, Sec. 4.1, the nested 2-D form, summed over c)

    Y[f] = A^T [ sum_c U[f, c] (.) V[c] ] A,    U = G w G^T (4x4),   V = B^T d B (4x4)

The sum over c at each of the 16 positions (a, b) of the 4x4 tile is a matrix product,
M[a, b] = U[a, b] (F, C) @ V[a, b] (C, tiles): 16 products of the size one output pixel
would need, instead of the 9 x 4 = 36 that direct convolution spends on a 2x2 block.
The transforms B^T . B and A^T . A are only additions, done here as whole-array ops.

Precision: the transforms add and subtract neighbouring values, so float32 results differ from
direct convolution by a few float32 ulps of the layer's output scale (measured ~1e-6 relative on
VGG16 layers; the direct im2col product differs from torch by ~5e-7). In float64 the two agree
to ~1e-14, which is what the twin test checks (tolerance 1e-9, see tests/test_perf_paths.py).

Used by ``kernels.conv.conv2d_forward`` for 3x3, stride-1, dilation-1, ungrouped convolutions
with enough channels for the product to dominate (``use_winograd``), and by its backward for
the input gradient, which is the same convolution with a flipped kernel (``transpose=True``).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..backend import get_xp
from .blocks import block_plan, run_blocks

# NOTE: the transforms cost ~(C + F) elementwise ops per pixel, the product ~C*F multiply-adds, so
# Winograd pays off only with enough channels (on VGG16, from 128 on).
MIN_CHANNELS = 128
# Chunk size in floats of the transformed tiles V (and of the products M): small enough to stay
# in the last-level cache between the transform and the product, large enough for a fast product.
CHUNK = 1 << 20
# NOTE: flipping the kernel (for the input gradient) permutes the rows of G: G J = S G, where J
# reverses 3 entries and S swaps rows 0 and 3. So transform(flip(w)) = U at the slots S x S,
# and no second transformed copy of the weights is needed.
_FLIP = (3, 1, 2, 0)
_SAME = (0, 1, 2, 3)


def use_winograd(x, w, stride, dilation, groups):
    """True when ``conv2d_forward`` takes this path: 3x3, stride 1, dilation 1, groups 1, and
    at least MIN_CHANNELS input and output channels."""
    return (w.shape[2:] == (3, 3) and stride == (1, 1) and dilation == (1, 1) and groups == 1
            and w.shape[0] >= MIN_CHANNELS and w.shape[1] >= MIN_CHANNELS
            and x.dtype.kind == "f")


# --------------------------------------------------------------------------- weights
def weight_transform(w):
    """U[a, b, f, c] = (G w[f, c] G^T)[a, b], returned as (16, F, C).

    Rows first: (G w)[0] = w0, [1] = (w0+w1+w2)/2, [2] = (w0-w1+w2)/2, [3] = w2; then columns.
    """
    xp = get_xp(w)
    F, C = w.shape[:2]
    half = w.dtype.type(0.5)

    def g(v0, v1, v2):  # the three taps along one axis -> four rows of G v
        s = (v0 + v2) * half
        return [v0, s + v1 * half, s - v1 * half, v2]

    rows = g(w[:, :, 0], w[:, :, 1], w[:, :, 2])  # 4 x (F, C, 3)
    U = xp.empty((4, 4, F, C), dtype=w.dtype)
    for a, r in enumerate(rows):
        for b, v in enumerate(g(r[..., 0], r[..., 1], r[..., 2])):
            U[a, b] = v
    return U.reshape(16, F, C)


_memo = {}  # id(w) -> (weakref to w, copy of w, U)


def cached_weight_transform(w):
    """``weight_transform(w)``, memoised per weight array while it is unchanged.

    NOTE: transforming the weights costs a noticeable part of a forward pass at batch 1 on the
    host, so it is done once per weight array. Optimisers update weights in place, so the
    memo keeps a copy and compares it (exactly) before reuse; a changed array is transformed
    again. The entry goes away with the weight array. On a device (CuPy) there is no memo: the
    compare would end in a host sync per convolution (its answer decides what runs next),
    while the transform itself is a few elementwise kernels over the weights that queue behind
    the previous layer without waiting for it.
    """
    xp = get_xp(w)
    if xp is not np:
        return weight_transform(w)
    key = id(w)
    hit = _memo.get(key)
    if hit is not None and hit[0]() is w and hit[1].shape == w.shape and hit[1].dtype == w.dtype \
            and bool(xp.array_equal(hit[1], w)):
        return hit[2]
    U = weight_transform(w)
    try:
        ref = weakref.ref(w, lambda _, k=key: _memo.pop(k, None))
    except TypeError:  # an array type without weak references: no memo
        return U
    _memo[key] = (ref, w.copy(), U)
    return U


# --------------------------------------------------------------------------- input and output transforms
def _bt(d0, d1, d2, d3, out):
    """out[k] = (B^T d)[k] for the four rows (or columns) d0..d3 of a tile: elementwise."""
    xp = get_xp(d0)
    xp.subtract(d0, d2, out=out[0])
    xp.add(d1, d2, out=out[1])
    xp.subtract(d2, d1, out=out[2])
    xp.subtract(d1, d3, out=out[3])


def _at(m0, m1, m2, m3, out0, out1):
    """(A^T m)[0] = m0 + m1 + m2, (A^T m)[1] = m1 - m2 - m3: elementwise."""
    xp = get_xp(m0)
    xp.add(m0, m1, out=out0)
    out0 += m2
    xp.subtract(m1, m2, out=out1)
    out1 -= m3


def conv3x3(x, U, pads, b=None, transpose=False):
    """Winograd F(2x2, 3x3) cross-correlation of x with the weights whose transform is U.

    Parameters
    ----------
    x : (N, C, H, W)
    U : (16, F, C) from ``weight_transform(w)``; with ``transpose=True`` it is the transform of
        w (C, F, 3, 3) and the convolution uses w flipped in both spatial axes and transposed
        in (in, out): the input gradient of the forward with w (``kernels.conv.conv2d_backward``)
    pads : (top, bottom, left, right) zero padding
    b : (F,) bias or None
    Returns
    -------
    out : (N, F, OH, OW), OH = H + top + bottom - 2
    """
    xp = get_xp(x, U)
    N, C, H, W = x.shape
    F = U.shape[2] if transpose else U.shape[1]
    t, bo, l, r = pads
    OH, OW = H + t + bo - 2, W + l + r - 2
    th, tw = -(-OH // 2), -(-OW // 2)  # 2x2 output blocks (tiles), rounded up
    # Pad to (2 th + 2, 2 tw + 2) and split rows and columns by parity ("deinterleave"):
    # X[pr, pc, n, c, i, j] = xpad[n, c, 2i + pr, 2j + pc]. Row k of a tile starting at 2i is then
    # X[k % 2, :, :, :, i + k // 2]: every tile row/column is a contiguous slice, not a stride-2 view.
    X = xp.zeros((2, 2, N, C, th + 1, tw + 1), dtype=x.dtype)
    for pr in range(2):  # padding and deinterleaving in one copy per parity
        r0 = (pr - t) % 2  # first input row that lands on padded row parity pr
        for pc in range(2):
            c0 = (pc - l) % 2
            src = x[:, :, r0::2, c0::2]
            a0, b0 = (r0 + t) // 2, (c0 + l) // 2
            X[pr, pc, :, :, a0:a0 + src.shape[2], b0:b0 + src.shape[3]] = src
    Ut = U.transpose(0, 2, 1) if transpose else U  # (16, F, C) either way (a view, no copy)
    s = _FLIP if transpose else _SAME
    out = xp.empty((N, F, 2 * th, 2 * tw), dtype=x.dtype)
    Q = tw + 1  # columns per row of X, R and V (the last one is junk, see below)
    blocks = block_plan(N, th, 16 * max(C, F) * Q, CHUNK, xp)  # (images, tile rows) per block

    def block(n0, n1, r0, r1):
        nb, tr = n1 - n0, r1 - r0
        Xc = X[:, :, n0:n1, :, r0:r1 + 1]  # (2, 2, nb, C, tr+1, Q)
        # rows: R[k] = (B^T d)[k] for every tile, (4, 2, nb, C, tr, Q)
        R = xp.empty((4, 2, nb, C, tr, Q), dtype=x.dtype)
        _bt(Xc[0, :, :, :, :tr], Xc[1, :, :, :, :tr], Xc[0, :, :, :, 1:], Xc[1, :, :, :, 1:], R)
        # columns: V[slot(k, m)] = (B^T d B)[k, m]. NOTE: the column pairs (j, j+1) are taken as
        # flat offsets 0 and 1 of each image's (C, tr, Q) block, so every op runs over one long
        # contiguous stretch; column Q-1 of each row mixes two rows and is junk, never used.
        V = xp.empty((nb, 16, C * tr * Q), dtype=x.dtype)
        V[:, :, -1] = 0
        for k in range(4):
            e, o = R[k, 0].reshape(nb, -1), R[k, 1].reshape(nb, -1)
            slots = [V[:, 4 * s[k] + s[m], :-1] for m in range(4)]
            _bt(e[:, :-1], o[:, :-1], e[:, 1:], o[:, 1:], slots)
        # the 16 products, batched over images: (16, F, C) @ (nb, 16, C, tr*Q) -> (nb, 16, F, tr*Q)
        M = xp.matmul(Ut, V.reshape(nb, 16, C, tr * Q))
        del V, R
        if b is not None:
            # NOTE: M[1, 1] enters every output of the block with coefficient +1 (A^T row 0 and
            # row 1 both have +1 at index 1), so adding the bias there adds it to all four outputs.
            M[:, 4 * s[1] + s[1]] += b.reshape(F, 1)
        # outputs: Y = A^T M A; rows first, T[i, m] = (A^T M)[i, m], (nb, 2, 4, F, tr*Q)
        T = xp.empty((nb, 2, 4, F, tr * Q), dtype=x.dtype)
        for m in range(4):
            ms = [M[:, 4 * s[k] + s[m]] for k in range(4)]
            _at(*ms, T[:, 0, m], T[:, 1, m])
        del M
        # columns, written straight into the output: Y[i, j] of tile (r, c) is out[2r+i, 2c+j]
        dst = out[n0:n1, :, 2 * r0:2 * r1].reshape(nb, F, tr, 2, tw, 2)
        for i in range(2):
            Ti = [T[:, i, m].reshape(nb, F, tr, Q)[..., :tw] for m in range(4)]
            _at(*Ti, dst[:, :, :, i, :, 0], dst[:, :, :, i, :, 1])

    run_blocks(block, blocks, xp)
    if (OH, OW) == (2 * th, 2 * tw):
        return out
    return xp.ascontiguousarray(out[:, :, :OH, :OW])  # odd sizes: drop the extra row/column
