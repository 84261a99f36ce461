"""Blocks of work on a thread pool: the plumbing every kernel of ``minicnn.kernels`` shares.

A kernel splits its work into blocks (of images and output rows: ``chunks``/``block_plan``; or
of channels: ``over_channels``) and ``run_blocks`` runs them on one worker thread per core, with
BLAS limited to one thread inside (``threadpoolctl``, optional). ``scratch`` gives each thread
reusable buffers. The reference tier (``minicnn.functional``) uses none of this.

Why each piece exists, with measurements: benchmarks/README.md, "Kernel notes".
"""

from __future__ import annotations

import os
import threading

from ..backend import get_xp


def chunks(N, rows, per_row, budget, parts=1):
    """Split N images of ``rows`` output rows into blocks of about ``budget`` elements.

    Each block is (n0, n1, r0, r1): images n0:n1, output rows r0:r1. A large image is split
    into row blocks (one image per block); small images are grouped whole. ``per_row`` is the
    number of elements one output row of one image needs (e.g. K * OW for the im2col matrix).
    ``parts`` (the worker threads of ``run_blocks``): where the work allows, the number of
    blocks is a multiple of it, in near-equal sizes, so no worker idles at the end.

    NOTE: why chunk at all: a block stays in cache between the copy that builds it and the
    product that reads it, and one reused buffer replaces a fresh large allocation per layer.
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
    core while BLAS uses all of them. With several blocks, each worker thread runs whole blocks
    (copy, transform and product; NumPy releases the GIL in all of them) with BLAS limited to
    one thread, so every step runs on every core. CuPy, a single block, or no
    ``threadpoolctl``: a plain loop.
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

    NOTE: why: NumPy's elementwise ops run on one core; in blocks they run on every core. One
    block per thread: more, smaller blocks were slower. Small arrays and CuPy (a GPU wants few,
    large kernels) get one block. ``x`` has at least 2 axes.
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
