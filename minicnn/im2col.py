"""Sliding windows (im2col) and their adjoint (col2im), plus the geometry both need.

A convolution or a pooling layer looks at every KH x KW window of its (padded)
input. ``windows`` returns all of them at once as a *strided view*: no copy, no
Python loop over pixels. ``col2im`` is the adjoint: it adds window-shaped
gradients back onto the input, looping only over the KH*KW kernel offsets (each
offset touches a set of distinct pixels, so a strided ``+=`` is exact there).

Geometry (PyTorch's, for input size H, kernel K, stride s, dilation d, padding p_lo/p_hi):

    OH = floor((H + p_lo + p_hi - d*(K-1) - 1) / s) + 1

``"same"`` padding follows TensorFlow: OH = ceil(H / s), and the total padding
max((OH-1)*s + d*(K-1) + 1 - H, 0) is split with the extra pixel at the bottom/right.
"""

from __future__ import annotations

import math
import numbers
import os
import threading

from .backend import get_xp


def pair(v, name="value"):
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``. Rejects anything that is not a positive int or a
    pair of them: bools, and floats too (2.5 is refused, not silently taken as 2)."""
    pr = (v, v) if isinstance(v, numbers.Integral) else v
    try:
        a, b = pr
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in (a, b)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, got {v!r}")
    return int(a), int(b)


def conv_padding(padding, in_hw, kernel, stride=(1, 1), dilation=(1, 1)):
    """Normalise a padding spec to ``(top, bottom, left, right)``.

    Parameters
    ----------
    padding : int | (ph, pw) | (top, bottom, left, right) | "same" | "valid"
    in_hw : (H, W) input size (used only by "same")
    kernel, stride, dilation : (h, w) pairs
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode != "same":
            raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        pads = []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = math.ceil(size / s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # NOTE: TF puts the odd pixel after
        return tuple(pads)
    if isinstance(padding, int) and not isinstance(padding, bool):
        padding = (padding, padding)
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = (padding[0], padding[0], padding[1], padding[1])
    if len(padding) != 4 or min(padding) < 0:
        raise ValueError(f"padding must be non-negative: int, (ph, pw) or (t, b, l, r); got {padding!r}")
    return padding


def out_size(size, k, s, d, lo, hi):
    """Output length along one axis (PyTorch's formula, floor mode)."""
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def check_geometry(x_shape, kernel, stride, dilation, pads, what="conv2d"):
    """Return ``(OH, OW)`` or raise a ValueError that says which size is too small."""
    if len(x_shape) != 4:
        raise ValueError(f"{what} expects an (N, C, H, W) input, got shape {tuple(x_shape)}")
    H, W = x_shape[2:]
    OH = out_size(H, kernel[0], stride[0], dilation[0], pads[0], pads[1])
    OW = out_size(W, kernel[1], stride[1], dilation[1], pads[2], pads[3])
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{what}: input {H}x{W} with padding {pads} is smaller than the "
            f"{kernel[0]}x{kernel[1]} kernel (dilation {dilation})"
        )
    return OH, OW


def pad(x, pads, value=0.0):
    """Pad the last two axes of ``x`` by ``(top, bottom, left, right)``; no copy when all zero."""
    if not any(pads):
        return x
    xp = get_xp(x)
    t, b, l, r = pads
    N, C, H, W = x.shape
    out = xp.full((N, C, H + t + b, W + l + r), value, dtype=x.dtype)
    out[:, :, t:t + H, l:l + W] = x
    return out


def windows(xp_, kernel, stride, dilation, out_hw):
    """All KH x KW windows of a padded input, as a read-only strided view.

    (N, C, Hp, Wp) -> (N, C, KH, KW, OH, OW), where
    view[n, c, i, j, oh, ow] = xp_[n, c, oh*sh + i*dh, ow*sw + j*dw].

    NOTE: the kernel axes come before the output axes so that a reshape to
    (N, C*KH*KW, OH*OW) is the im2col matrix that one matrix product consumes.
    """
    xp = get_xp(xp_)
    N, C = xp_.shape[:2]
    sN, sC, sH, sW = xp_.strides
    (KH, KW), (sh, sw), (dh, dw), (OH, OW) = kernel, stride, dilation, out_hw
    view = xp.lib.stride_tricks.as_strided(
        xp_,
        shape=(N, C, KH, KW, OH, OW),
        strides=(sN, sC, sH * dh, sW * dw, sH * sh, sW * sw),
    )
    return view


def col2im(dcols, padded_shape, stride, dilation, out=None):
    """Adjoint of ``windows``: sum window gradients back onto the padded input.

    (N, C, KH, KW, OH, OW) -> (N, C, Hp, Wp), with
    dx[n, c, oh*sh + i*dh, ow*sw + j*dw] += dcols[n, c, i, j, oh, ow].

    The loop runs over the KH*KW kernel offsets only: for a fixed (i, j) the
    targets are distinct pixels, so a strided slice ``+=`` adds each exactly once.
    With ``out`` (an array of ``padded_shape``, or a view into a larger one) the sums are
    added into it, which lets a caller scatter one chunk of output rows at a time.
    """
    xp = get_xp(dcols)
    N, C, KH, KW, OH, OW = dcols.shape
    (sh, sw), (dh, dw) = stride, dilation
    dx = xp.zeros(padded_shape, dtype=dcols.dtype) if out is None else out
    for i in range(KH):
        for j in range(KW):
            h0, w0 = i * dh, j * dw
            dx[:, :, h0:h0 + sh * (OH - 1) + 1:sh, w0:w0 + sw * (OW - 1) + 1:sw] += dcols[:, :, i, j]
    return dx


def tap(xpad, i, j, stride, out_hw):
    """The (i, j) tap of every window: xpad[n, c, oh*sh + i, ow*sw + j], an (N, C, OH, OW) view.

    Pooling reduces over taps one at a time (KH*KW elementwise ops on views), so no window is
    ever copied; a 2x2 pool with stride 2 reads each tap as the plain reshape
    x.reshape(N, C, OH, 2, OW, 2)[:, :, :, i, :, j].
    """
    (sh, sw), (OH, OW) = stride, out_hw
    return xpad[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


def chunks(N, rows, per_row, budget, parts=1):
    """Split N images of ``rows`` output rows into blocks of about ``budget`` elements.

    Each block is (n0, n1, r0, r1): images n0:n1, output rows r0:r1. A large image is split
    into row blocks (one image per block); small images are grouped whole. ``per_row`` is the
    number of elements one output row of one image needs (e.g. K * OW for the im2col matrix).
    ``parts`` (the worker threads of ``run_blocks``): where the work allows, the number of
    blocks is a multiple of it, in near-equal sizes, so no worker idles at the end.

    NOTE: why chunk at all: the whole-layer im2col matrix of VGG16's conv1_2 is 115 MB; a block
    of ~4 MB stays in cache between the copy that builds it and the product that reads it,
    and one reused buffer replaces a fresh 100 MB+ allocation per layer.
    """
    per_image = per_row * rows
    if per_image >= budget or N < parts:  # row blocks within each image
        k = max(-(-per_image // budget), -(-parts // N))  # blocks per image
        if N * k > 1:
            k = -(-N * k // parts) * parts // N or 1  # a multiple of parts in all (if N allows)
        k = min(k, rows)
        cuts = [i * rows // k for i in range(k + 1)]  # near-equal row blocks
        return [(n, n + 1, a, b) for n in range(N) for a, b in zip(cuts, cuts[1:])]
    groups = -(-N // max(1, budget // per_image))  # whole images per block, by the budget
    groups = min(N, -(-groups // parts) * parts)
    cuts = [i * N // groups for i in range(groups + 1)]
    return [(a, b, 0, rows) for a, b in zip(cuts, cuts[1:])]


def cols_block(view, n0, n1, r0, r1, buf, batch_first):
    """Copy one block of windows into ``buf``: the im2col matrix of images n0:n1, rows r0:r1.

    view : (N, C, KH, KW, OH, OW) from ``windows``
    batch_first=True  -> (nb, C*KH*KW, rows*OW): one matrix per image (forward, input gradient)
    batch_first=False -> (C*KH*KW, nb*rows*OW): the batch inside the columns (weight gradient)
    """
    block = view[n0:n1, :, :, :, r0:r1]
    nb, C, KH, KW, R, OW = block.shape
    if batch_first:
        cols = buf[:block.size].reshape(nb, C, KH, KW, R, OW)
        cols[...] = block
        return cols.reshape(nb, C * KH * KW, R * OW)
    cols = buf[:block.size].reshape(C, KH, KW, nb, R, OW)
    cols[...] = block.transpose(1, 2, 3, 0, 4, 5)
    return cols.reshape(C * KH * KW, nb * R * OW)


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
    a maximum, else 1 + the same over taps 1.. . Two small-integer ops per tap; tracking the
    index inside the running maximum (masked copies) was 5x slower.
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
    ``_max_over_taps`` makes ~200 elementwise calls on tiny strided arrays; copying the windows
    (one pass) and reducing contiguous rows was 4x faster on the shapes CNN's pool4. With 2x2
    windows it is the other way round (rows of 4: 10x slower).
    """
    xp = get_xp(xpad)
    rows = disjoint_windows(xpad, kernel, out_hw)
    rows = rows.reshape(rows.shape[:4] + (kernel[0] * kernel[1],))  # a copy: one row per window
    if index is None:
        rows.max(axis=-1, out=out)
        return
    index[...] = i = rows.argmax(axis=-1)
    out[...] = xp.take_along_axis(rows, i[..., None], axis=-1)[..., 0]


def unpad(x, pads):
    """Inverse of ``pad`` for gradients: drop the padded border (a view)."""
    t, b, l, r = pads
    H, W = x.shape[2:]
    return x[:, :, t:H - b, l:W - r]


# --------------------------------------------------------------------------- blocks on two cores
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
GPU_CHUNK = 1 << 26  # elements per block on CuPy (256 MB in float32)
_pool, _local = None, threading.local()
try:  # optional: without it blocks run one after another, each product on BLAS's own threads
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - depends on the environment
    ThreadpoolController = None
_blas = None  # the ThreadpoolController, made on first use (it scans the loaded libraries once)


def block_plan(N, rows, per_row, chunk, xp):
    """``chunks`` for this backend: on NumPy blocks of ``chunk`` elements, a multiple of THREADS
    of them where possible; on CuPy blocks of GPU_CHUNK (a GPU wants few, large products)."""
    if xp.__name__ != "numpy":
        return chunks(N, rows, per_row, max(chunk, GPU_CHUNK))
    return chunks(N, rows, per_row, chunk, parts=THREADS if ThreadpoolController is not None else 1)


def run_blocks(fn, blocks, xp):
    """Run ``fn(n0, n1, r0, r1)`` for every block and return the results in block order;
    ``fn`` must write disjoint outputs (or return its part, for the caller to sum).

    NOTE: why threads: NumPy's elementwise ops (im2col copies, Winograd's transforms) use one
    core while BLAS uses all of them, so on 2 cores the copies would take as long as the
    products. With several blocks, each worker thread runs whole blocks (copy, transform and
    product; NumPy releases the GIL in all of them) with BLAS limited to one thread, so every
    step runs on every core. CuPy, a single block, or no ``threadpoolctl``: a plain loop.
    """
    global _pool, _blas
    if THREADS < 2 or len(blocks) < 2 or ThreadpoolController is None or xp.__name__ != "numpy":
        return [fn(*blk) for blk in blocks]
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool, _blas = ThreadPoolExecutor(THREADS, thread_name_prefix="minicnn"), ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        return [f.result() for f in [_pool.submit(fn, *blk) for blk in blocks]]


SPLIT_MIN = 1 << 16  # elements: a smaller array runs as one block (a hand-off costs ~20-50 us)


def over_channels(fn, x):
    """Run ``fn(cs)`` for blocks ``cs = slice(c0, c1)`` of the channels (axis 1) of ``x``, one
    block per worker thread of ``run_blocks``; returns the results in block order.

    For the layers in which every channel is computed on its own (ReLU, pooling, batch norm):
    ``fn`` reads ``x[:, cs]`` (and per-channel vectors ``v[cs]``) and writes its own part of
    preallocated outputs.

    NOTE: why: NumPy's elementwise ops run on one core, so on 2 cores these layers took half
    the time of a shapes-CNN training step; in blocks they run on every core (ReLU on
    64x16x64x64: 1.6 -> 0.9 ms). Each block costs a hand-off of ~30 us, and more, smaller
    blocks were slower, batch norm's several passes included (16 one-channel blocks: ReLU
    1.2 ms). Small arrays and CuPy (a GPU wants few, large kernels) get one block. ``x`` has at
    least 2 axes.
    """
    xp = get_xp(x)
    if x.size < SPLIT_MIN or xp.__name__ != "numpy":
        return [fn(slice(None))]
    C = x.shape[1]
    # channels play the part of chunks' "images": one block of about size/THREADS per thread
    blocks = chunks(C, 1, x.size // C, -(-x.size // THREADS), parts=THREADS)
    return run_blocks(lambda c0, c1, _r0, _r1: fn(slice(c0, c1)), blocks, xp)


def scratch(n, dtype, xp, slot="cols"):
    """A reusable flat buffer of at least ``n`` elements for the calling thread (NumPy), so the
    blocks of every layer reuse one allocation instead of a fresh one per block. ``slot`` names
    one of the buffers a block may need at once (the im2col matrix, a product's result)."""
    if xp.__name__ != "numpy":
        return xp.empty(n, dtype=dtype)  # CuPy's memory pool already reuses device memory
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = bufs[slot] = xp.empty(n, dtype=dtype)
    return buf[:n]
