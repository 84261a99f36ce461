"""Max pooling, tuned: running maxima over the window's taps, or over copied rows.

Same signatures and cache (``functional.PoolCache``) as the reference ``minicnn.functional``
max-pool, and the same rule: each window's gradient goes to its FIRST maximum. Channels are
independent, so blocks of them run on the worker threads (``blocks.over_channels``).
"""

from __future__ import annotations

from ..backend import get_xp
from ..functional import PoolCache
from ..im2col import pad, pool_geometry, unpad, windows
from .blocks import over_channels


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling (floor mode; padding counts as -inf, as in PyTorch).

    out[n, c, oh, ow] = max_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]

    The cache keeps, per window, the index of the maximum: the FIRST one in
    row-major order of the window when several tie (``argmax``'s rule, and PyTorch's).
    The maximum is a running one over the KH*KW taps (elementwise ops on strided views),
    so no window is copied and the index costs one comparison per tap.

    Returns
    -------
    out : (N, C, OH, OW); cache : PoolCache
    """
    kernel, stride, pads, out_hw = pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    xpad = pad(x, pads, value=-float("inf"))
    out, index = max_pool_taps(xpad, kernel, stride, out_hw, need_index=True)
    return out, PoolCache(x.shape, xpad.shape, kernel, stride, pads, index)


def maxpool2d_infer(x, kernel_size, stride=None, padding=0):
    """``maxpool2d_forward`` without the cache (no index): for layers backward never reaches."""
    kernel, stride, pads, out_hw = pool_geometry(x, kernel_size, stride, padding, "max_pool2d")
    xpad = pad(x, pads, value=-float("inf"))
    return max_pool_taps(xpad, kernel, stride, out_hw, need_index=False)[0]


def maxpool2d_backward(dout, cache):
    """``functional.maxpool2d_backward``'s rule (each window's gradient to its FIRST maximum),
    written tap by tap or row by row, in blocks of channels."""
    xp = get_xp(dout)
    KH, KW = cache.kernel
    out_hw = dout.shape[2:]
    dxp = xp.zeros(cache.padded_shape, dtype=dout.dtype)
    # NOTE: when kernel == stride the windows do not overlap, so each tap's pixels belong to one
    # window only and the product can be written straight into them (no += read-modify-write).
    disjoint = tuple(cache.kernel) == tuple(cache.stride)
    by_rows = pools_by_rows(cache.kernel, cache.stride)  # as the forward reduced

    def block(cs):  # channels are independent: blocks of them run on the worker threads
        d, index = dout[:, cs], cache.argmax[:, cs]
        if by_rows:  # one row of KH*KW per window: dout at its argmax, zeros elsewhere
            # NOTE: a one-hot where(), not put_along_axis, which CuPy has only from 14.0
            taps = xp.arange(KH * KW, dtype=index.dtype)
            rows = xp.where(index[..., None] == taps, d[..., None], xp.zeros((), d.dtype))
            dst = disjoint_windows(dxp[:, cs], cache.kernel, out_hw)
            dst[...] = rows.reshape(d.shape + (KH, KW))
            return
        for t in range(KH * KW):
            dst = tap(dxp[:, cs], t // KW, t % KW, cache.stride, out_hw)
            if disjoint:
                xp.multiply(d, index == t, out=dst)
            else:
                dst += d * (index == t)

    over_channels(block, dxp)
    return xp.ascontiguousarray(unpad(dxp, cache.pads)) if any(cache.pads) else dxp


def tap(xpad, i, j, stride, out_hw):
    """The (i, j) tap of every window: xpad[n, c, oh*sh + i, ow*sw + j], an (N, C, OH, OW) view.

    Pooling reduces over taps one at a time (KH*KW elementwise ops on views), so no window is
    ever copied; a 2x2 pool with stride 2 reads each tap as the plain reshape
    x.reshape(N, C, OH, 2, OW, 2)[:, :, :, i, :, j].
    """
    (sh, sw), (OH, OW) = stride, out_hw
    return xpad[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


WINDOW_TAPS = 16  # max-pool windows larger than this, side by side, are reduced as copied rows


def pools_by_rows(kernel, stride):
    """True when max-pool reduces copied window rows (``_max_over_rows``) rather than taps:
    windows side by side (kernel == stride) of more than WINDOW_TAPS taps (the shapes CNN's
    8x8 pool4). The forward and the backward both follow this rule."""
    return tuple(kernel) == tuple(stride) and kernel[0] * kernel[1] > WINDOW_TAPS


def disjoint_windows(xpad, kernel, out_hw):
    """Windows side by side (stride == kernel) as (N, C, OH, OW, KH, KW): a strided view of
    ``xpad``, writable (no two windows share a pixel)."""
    return windows(xpad, kernel, kernel, (1, 1), out_hw).transpose(0, 1, 4, 5, 2, 3)


def max_pool_taps(xpad, kernel, stride, out_hw, need_index):
    """Maximum over every KH x KW window of ``xpad``, and where it is.

    Returns (out, index): index[n, c, oh, ow] is the FIRST tap, in row-major order of the
    window, that equals the maximum (PyTorch's rule when values tie), or None. Channels are
    independent, so blocks of them run on the worker threads (``over_channels``), each reduced
    by ``_max_over_taps`` or, for large windows side by side (``pools_by_rows``),
    ``_max_over_rows``.
    """
    xp = get_xp(xpad)
    KH, KW = kernel
    out = xp.empty(xpad.shape[:2] + tuple(out_hw), dtype=xpad.dtype)
    # NOTE: keep the index small: KH*KW < 256 for any pooling window in practice.
    itype = xp.uint8 if KH * KW < 256 else xp.int64
    index = xp.zeros(out.shape, dtype=itype) if need_index else None
    reduce = _max_over_rows if pools_by_rows(kernel, stride) else _max_over_taps

    def block(cs):
        ix = None if index is None else index[:, cs]
        reduce(xpad[:, cs], kernel, stride, out_hw, out[:, cs], ix)

    over_channels(block, xpad)
    return out, index


def _max_over_taps(xpad, kernel, stride, out_hw, out, index):
    """``max_pool_taps`` as a running maximum over the KH*KW taps (see ``tap``), into ``out``
    and (unless None) ``index``, which starts at zero.

    NOTE: the index is found after the maximum, by Horner's rule from the last tap back:
    index = ne_0 * (1 + ne_1 * (1 + ... ne_{T-2})), ne_t = [tap t != max] -- so 0 when tap 0 is
    a maximum, else 1 + the same over taps 1.. . Two small-integer ops per tap: cheaper than
    tracking the index inside the running maximum (masked copies).
    """
    xp = get_xp(xpad)
    KH, KW = kernel
    taps = [tap(xpad, t // KW, t % KW, stride, out_hw) for t in range(KH * KW)]
    xp.copyto(out, taps[0])
    for v in taps[1:]:
        xp.maximum(out, v, out=out)
    if index is not None:
        for v in taps[-2::-1]:
            index += 1
            index *= v != out


def _max_over_rows(xpad, kernel, stride, out_hw, out, index):
    """``max_pool_taps`` for windows side by side: each window copied into one contiguous row of
    KH*KW values, then ``argmax`` (the first maximum) or ``max`` along it.

    NOTE: why: an 8x8 pool on a 16x16 map has 64 taps of only 2x2 outputs each, so
    ``_max_over_taps`` makes ~200 elementwise calls on tiny strided arrays; one copy and
    contiguous rows are faster there (and slower for small windows: hence WINDOW_TAPS).
    """
    xp = get_xp(xpad)
    rows = disjoint_windows(xpad, kernel, out_hw)
    rows = rows.reshape(rows.shape[:4] + (kernel[0] * kernel[1],))  # a copy: one row per window
    if index is None:
        rows.max(axis=-1, out=out)
        return
    index[...] = i = rows.argmax(axis=-1)
    out[...] = xp.take_along_axis(rows, i[..., None], axis=-1)[..., 0]
