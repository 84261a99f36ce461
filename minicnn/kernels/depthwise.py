"""Depthwise convolution (groups = in = out channels), tuned: channels-last, taps by einsum.

    out[n, c, oh, ow] = b[c] + sum_{i<KH, j<KW} w[c, 0, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]

The general path (``kernels.conv``) runs a depthwise conv as C one-row matrix products over a
copied im2col matrix whose rows are one output row long. Here each block of images and output
rows is copied once into a padded channels-last (NHWC) buffer; a strided conv splits it into
its stride phases x_pad[a::sh, b::sw] (contiguous copies), in which tap (i, j) is a shift by
(i // sh, j // sw). In NHWC a window row of pixels and channels is one contiguous run of OW * C
values, so the windows of a phase's taps are one strided view (ka, kb, nb, R, OW * C), summed
against the weights tiled along the row by one ``einsum`` per phase:

    acc[n, r, (ow, c)] += sum_{i, j in phase} view[i, j, n, r, (ow, c)] * wtile[i, j, (ow, c)]

The output is NHWC memory, returned as an (N, C, OH, OW) view: the layers after it (batch
norm, ReLU6, the 1x1 projection's matrix product) read any strides, and no copy back to NCHW
is made.

NOTE: why: EfficientNet-Lite0's depthwise layers took about 40 % of its batched forward. Two
NCHW rewrites were dropped before (taps on strided NCHW views, taps on flattened phase
images): their inner loop is one image row (7-112 values). Tap-by-tap multiply-adds in NHWC
(two passes per tap) measured 1.0-2.5x faster than the general path at batch 16; one einsum
over the taps 2x faster again; without the phases (strided windows, an inner loop of C) the
strided layers were 1-3x slower than the general path (measurements: benchmarks/README.md,
"Kernel notes"). NumPy only: on CuPy the general path (few, large kernels) runs.
"""

from numpy.lib.stride_tricks import as_strided

from ..backend import get_xp
from .blocks import block_plan, run_blocks, scratch

CHUNK = 1 << 18  # output values per block (1 MB in float32)
MIN_CHANNELS = 8  # narrower layers keep the general path (the inner loop is OW * C long)


def use_depthwise(x, w, stride, dilation, groups):
    """True when ``conv2d_forward`` takes this path: a depthwise conv, C = F = groups >= 8, at
    stride 1 or without dilation, on NumPy."""
    return (groups == x.shape[1] == w.shape[0] >= MIN_CHANNELS and w.shape[1] == 1
            and (tuple(stride) == (1, 1) or tuple(dilation) == (1, 1))
            and get_xp(x).__name__ == "numpy")


def _padded_rows(x, n0, n1, p0, p1, pads, Wp, buf):
    """Padded rows p0:p1 of images n0:n1 in channels-last order: (nb, p1 - p0, Wp, C) in ``buf``;
    the padding is zero."""
    N, C, H, W = x.shape
    t, _, l, _ = pads
    xb = buf[:(n1 - n0) * (p1 - p0) * Wp * C].reshape(n1 - n0, p1 - p0, Wp, C)
    a, b = max(p0, t), min(p1, t + H)  # padded rows that hold input rows
    xb[:, :a - p0] = 0
    xb[:, max(b, a) - p0:] = 0
    if b > a:
        xb[:, a - p0:b - p0, :l] = 0
        xb[:, a - p0:b - p0, l + W:] = 0
        xb[:, a - p0:b - p0, l:l + W] = x[n0:n1, :, a - t:b - t].transpose(0, 2, 3, 1)
    return xb


def conv2d_depthwise(x, w, b, stride, dilation, pads, out_hw):
    """The depthwise conv above: x (N, C, H, W) (any strides), w (C, 1, KH, KW), b (C,) or None,
    ``stride``/``dilation`` pairs, ``pads`` (top, bottom, left, right) from ``conv_geometry``.

    Returns (N, C, OH, OW): a view of channels-last memory (strides (OH*OW*C, 1, OW*C, C)).
    """
    xp = get_xp(x, w)
    N, C, H, W = x.shape
    KH, KW = w.shape[2:]
    (sh, sw), (dh, dw), (OH, OW) = stride, dilation, out_hw
    Wp = W + pads[2] + pads[3]
    dtype = xp.result_type(x, w)
    wk = w.reshape(C, KH, KW).transpose(1, 2, 0).astype(dtype)  # (KH, KW, C)
    # without dilation tap (i, j) reads phase (i % sh, j % sw) at (i // sh, j // sw); at stride 1
    # the one phase is x_pad itself and tap (i, j) reads it at (i * dh, j * dw)
    phases = (sh, sw) == (1, 1) or (dh, dw) == (1, 1)
    if phases:  # each tap's weights tiled along an output row of (ow, c)
        wt = xp.empty((KH, KW, OW, C), dtype=dtype)
        wt[...] = wk[:, :, None, :]
        wk = wt.reshape(KH, KW, OW * C)
    out = xp.empty((N, OH, OW, C), dtype=dtype)
    size = out.itemsize

    def block(n0, n1, r0, r1):
        nb, R = n1 - n0, r1 - r0
        p0, p1 = r0 * sh, (r1 - 1) * sh + (KH - 1) * dh + 1  # the padded rows these outputs read
        xb = _padded_rows(x, n0, n1, p0, p1, pads, Wp, scratch(nb * (p1 - p0) * Wp * C, dtype, xp))
        acc = out[n0:n1, r0:r1]
        if not phases:  # dilated and strided: a window row is not one run (never chosen)
            sN, sR, sW = xb.strides[:3]
            view = as_strided(xb, (KH, KW, nb, R, OW, C),
                              (dh * sR, dw * sW, sN, sh * sR, sw * sW, size))
            xp.einsum("ijnrwc,ijc->nrwc", view, wk, out=acc)
            return
        acc = acc.reshape(nb, R, OW * C)
        tmp = scratch(nb * R * OW * C, dtype, xp, "product").reshape(nb, R, OW * C)
        for a in range(min(sh, KH)):
            for c in range(min(sw, KW)):
                # NOTE: the phase x_pad[a::sh, c::sw] as a contiguous copy (at stride 1, xb
                # itself), so that the window rows of its taps are runs of OW * C values
                ph = xp.ascontiguousarray(xb[:, a::sh, c::sw])
                sN, sR, sW = ph.strides[:3]
                taps = wk[a::sh, c::sw]
                view = as_strided(ph, taps.shape[:2] + (nb, R, OW * C),
                                  (dh * sR, dw * sW, sN, sR, size))
                xp.einsum("ijnrq,ijq->nrq", view, taps, out=tmp if a or c else acc)
                if a or c:
                    acc += tmp

    run_blocks(block, block_plan(N, OH, OW * C, CHUNK, xp), xp)
    out = out.transpose(0, 3, 1, 2)
    if b is not None:
        out += b.reshape(1, C, 1, 1)
    return out
