"""Convolution, tuned: the ``conv2d_forward`` / ``conv2d_backward`` pair and its fast paths.

Same signatures and cache (``functional.Conv2dCache``) as the reference ``minicnn.functional``
conv, which is one im2col and one matrix product; here:

- blocked im2col: windows (``im2col.windows``, a strided view) copied block by block into a
  cache-sized matrix, one matrix product per block, written straight into the NCHW output;
- Winograd F(2x2, 3x3) for 3x3 stride-1 convs with many channels (``kernels.winograd``);
- the backward computes only what is asked for: dw from the input rebuilt into windows block by
  block, dx as the adjoint (a flipped-kernel convolution, or col2im of w^T @ dout).

The plain-loop twin is ``minicnn.naive.conv2d_forward``; tests/test_perf_paths.py checks every
path against it on the shapes that trigger it.
"""

from __future__ import annotations

from ..backend import get_xp
from ..functional import Conv2dCache
from ..im2col import col2im, conv_geometry, pad, unpad, windows
from . import depthwise, winograd
from .blocks import block_plan, run_blocks, scratch

CHUNK = 1 << 20  # floats per block of the im2col matrix (4 MB in float32): see ``blocks.chunks``


def _is_pointwise(kernel, stride, pads):
    return tuple(kernel) == (1, 1) and stride == (1, 1) and not any(pads)


def _matmul_into(a, b, out):
    """out[...] = a @ b; NumPy writes the product straight into the (strided) view ``out``."""
    xp = get_xp(a, b)
    if xp.__name__ == "numpy":
        xp.matmul(a, b, out=out)
    else:  # NOTE: CuPy's matmul takes no strided out=; one device copy instead
        out[...] = xp.matmul(a, b)


DW_RUN = 2048  # columns per product in the weight gradient (see _conv_dw)
WIDE_MIN = 32  # output width from which stride-1 windows are read on the wide grid (see _windows)


def _windows(x, kernel, stride, dilation, pads, out_hw):
    """The forward's windows of the padded input, (N, C, KH, KW, OH, GW), and the grid width GW.

    GW = OW: ``im2col.windows`` of the padded input. Stride-1 convs with OW >= WIDE_MIN use the
    "wide grid" instead: GW = Wp, the padded width, so each output row also computes Wp - OW
    junk columns, which ``_conv_gemm`` drops.

    NOTE: why: on the wide grid the window row (oh, 0..Wp-1) of tap (i, j) is the contiguous run
    x_pad[oh + i*dh, j*dw:][:Wp] (running on into the next padded row), so a block's R rows are
    one run of R*Wp values and the im2col copy runs at memory speed; with GW = OW every run is
    only OW long. Below WIDE_MIN the junk columns cost what the long runs save. The weight
    gradient gained nothing this way (its copy transposes the batch) and keeps GW = OW. One
    extra padded row keeps the last windows' overrun inside the array.
    """
    OH, OW = out_hw
    if stride != (1, 1) or OW < WIDE_MIN:
        return windows(pad(x, pads), kernel, stride, dilation, out_hw), OW
    t, b, l, r = pads
    xpad = pad(x, (t, b + 1, l, r))
    return windows(xpad, kernel, stride, dilation, (OH, xpad.shape[3])), xpad.shape[3]


def cols_block(view, n0, n1, r0, r1, buf):
    """Copy one block of windows into ``buf``: the im2col matrices of images n0:n1, rows r0:r1,
    as (nb, C*KH*KW, rows*OW), one matrix per image (the forward, and both gradients).

    view : (N, C, KH, KW, OH, OW) from ``windows``
    """
    block = view[n0:n1, :, :, :, r0:r1]
    nb, C, KH, KW, R, OW = block.shape
    cols = buf[:block.size].reshape(nb, C, KH, KW, R, OW)
    cols[...] = block
    return cols.reshape(nb, C * KH * KW, R * OW)


def _conv_gemm(x, w, b, stride, dilation, pads, groups, out_hw):
    """The general path: im2col in cache-sized blocks, one matrix product per block.

    out[n, g, :, p] = w[g] (Fg, Cg*KH*KW) @ cols[n, g] (Cg*KH*KW, p)   for each block of pixels p

    The product writes straight into the NCHW output (no transposes), and each worker thread
    reuses one buffer for its blocks (``blocks.scratch``). A 1x1 stride-1 conv needs no windows
    at all: x[n] is already its matrix.
    """
    xp = get_xp(x, w)
    N, C = x.shape[:2]
    F, Cg, KH, KW = w.shape
    G, (OH, OW) = groups, out_hw
    K = Cg * KH * KW
    wmat = w.reshape(G, F // G, K)
    out = xp.empty((N, F, OH, OW), dtype=xp.result_type(x, w))
    if _is_pointwise((KH, KW), stride, pads):
        _matmul_into(wmat, x.reshape(N, G, Cg, OH * OW), out.reshape(N, G, F // G, OH * OW))
    else:
        view, GW = _windows(x, (KH, KW), stride, dilation, pads, out_hw)  # (N, C, KH, KW, OH, GW)

        def block(n0, n1, r0, r1):
            nb, P = n1 - n0, (r1 - r0) * GW
            buf = scratch(nb * C * KH * KW * P, x.dtype, xp)
            cols = cols_block(view, n0, n1, r0, r1, buf).reshape(nb, G, K, P)
            # (G, Fg, K) @ (nb, G, K, P) -> (nb, G, Fg, P), written into out[n0:n1, :, r0:r1]
            dst = out[n0:n1, :, r0:r1]
            if GW == OW:
                _matmul_into(wmat, cols, dst.reshape(nb, G, F // G, P))
            else:  # the wide grid: the product into a buffer, its first OW columns per row out
                res = scratch(nb * F * P, out.dtype, xp, "product").reshape(nb, G, F // G, P)
                _matmul_into(wmat, cols, res)
                dst[...] = res.reshape(nb, F, r1 - r0, GW)[..., :OW]

        run_blocks(block, block_plan(N, OH, C * KH * KW * GW, CHUNK, xp), xp)
    if b is not None:
        out += b.reshape(1, F, 1, 1)
    return out


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation (PyTorch's Conv2d), as blocked im2col + matrix products.

    out[n, g*Fg+f, oh, ow] = b[g*Fg+f]
        + sum_{c<Cg, i<KH, j<KW} w[g*Fg+f, c, i, j] * x_pad[n, g*Cg+c, oh*sh + i*dh, ow*sw + j*dw]

    3x3 stride-1 convolutions with 128+ input and output channels (VGG16 from conv2_2 on) take
    the Winograd F(2x2, 3x3) path instead (``kernels.winograd``): the same sum with 2.25x fewer
    multiplies. The cache holds the input and the weights, no im2col copy.

    Parameters and returns as ``minicnn.functional.conv2d_forward``.

    See Also
    --------
    minicnn.functional.conv2d_forward : the reference (one im2col, one matrix product).
    minicnn.naive.conv2d_forward : the plain-loop twin.
    """
    stride, dilation, pads, out_hw = conv_geometry(x, w, stride, padding, dilation, groups)
    U = None
    if winograd.use_winograd(x, w, stride, dilation, groups):
        U = winograd.cached_weight_transform(w)
        out = winograd.conv3x3(x, U, pads, b)
    elif depthwise.use_depthwise(x, w, stride, dilation, groups):
        out = depthwise.conv2d_depthwise(x, w, b, stride, dilation, pads, out_hw)
    else:
        out = _conv_gemm(x, w, b, stride, dilation, pads, groups, out_hw)
    return out, Conv2dCache(x, w, b is not None, stride, dilation, pads, groups, out_hw, U)


def _conv_dw(dout, c):
    """dw[g] = sum over images n of (cols[n, g] (Cg*KH*KW, P) @ dout[n, g]^T (P, Fg))^T.

    The windows are rebuilt block by block in the forward's batch-first layout."""
    xp = get_xp(dout)
    N, F, OH, OW = dout.shape
    _, Cg, KH, KW = c.w.shape
    G, C, K = c.groups, c.x.shape[1], Cg * KH * KW
    dw = xp.zeros((G, F // G, K), dtype=dout.dtype)
    if _is_pointwise((KH, KW), c.stride, c.pads):
        x = c.x.reshape(N, G, Cg, OH * OW)
        d = dout.reshape(N, G, F // G, OH * OW)
        for n in range(N):
            dw += xp.matmul(d[n], x[n].transpose(0, 2, 1))
        return dw.reshape(c.w.shape)
    view = windows(pad(c.x, c.pads), (KH, KW), c.stride, c.dilation, (OH, OW))

    def block(n0, n1, r0, r1):
        nb = n1 - n0
        buf = scratch(nb * (r1 - r0) * C * KH * KW * OW, c.x.dtype, xp)
        cols = cols_block(view, n0, n1, r0, r1, buf).reshape(nb, G, K, -1)  # (nb, G, K, P)
        dT = dout[n0:n1, :, r0:r1].reshape(nb, G, F // G, -1).transpose(0, 1, 3, 2)  # (nb, G, P, Fg)
        # NOTE: one (K, P) @ (P, Fg) product per image, summed over the images after: the
        # batch-first copy is the forward's fast one (no transpose of the batch into the
        # columns), and OpenBLAS runs this long-inner-axis product faster as (K, P) @ (P, Fg)
        # than as (Fg, P) @ (P, K), and in runs of DW_RUN columns
        part = 0
        for s in range(0, cols.shape[3], DW_RUN):
            part = part + xp.matmul(cols[..., s:s + DW_RUN], dT[:, :, s:s + DW_RUN]).sum(axis=0)
        return part.transpose(0, 2, 1)  # this block's share, (G, Fg, K)

    for part in run_blocks(block, block_plan(N, OH, C * KH * KW * OW, CHUNK, xp), xp):
        dw += part
    return dw.reshape(c.w.shape)


def _conv_dx(dout, c):
    """dx = the adjoint of the forward's window product.

    Stride 1: the adjoint is itself a convolution, of dout padded by d*(K-1) - p with the kernel
    flipped in both spatial axes and transposed in (in, out) -- so it takes the forward's fast
    paths (Winograd for 3x3). Otherwise: dcols = w^T @ dout per block, scattered by col2im.

    NOTE: the flipped conv copies F*KH*KW values per pixel (the windows of dout), col2im adds
    C*KH*KW, with short strided rows; so with far fewer input than output channels (VGG16's
    conv1_1: C=3, F=64) col2im is the cheaper one. The measured crossover gives the rule 2C >= F.
    """
    xp = get_xp(dout)
    N, F, OH, OW = dout.shape
    _, Cg, KH, KW = c.w.shape
    G, (dh, dw_), (t, bo, l, r) = c.groups, c.dilation, c.pads
    N, C, H, W = c.x.shape
    tpads = (dh * (KH - 1) - t, dh * (KH - 1) - bo, dw_ * (KW - 1) - l, dw_ * (KW - 1) - r)
    if c.stride == (1, 1) and min(tpads) >= 0 and (c.U is not None or 2 * C >= F):
        if c.U is not None:  # the forward's Winograd weights serve the flipped kernel too
            return winograd.conv3x3(dout, c.U, tpads, transpose=True)
        # (F, Cg, KH, KW) -> (G*Cg, Fg, KH, KW), flipped: out-channel g*Cg+c reads group g's dout
        wt = c.w.reshape(G, F // G, Cg, KH, KW).transpose(0, 2, 1, 3, 4).reshape(C, F // G, KH, KW)
        return _conv_gemm(dout, wt[:, :, ::-1, ::-1], None, (1, 1), c.dilation, tpads, G, (H, W))
    wmat_t = c.w.reshape(G, F // G, Cg * KH * KW).transpose(0, 2, 1)  # (G, K, Fg)
    dxp = xp.zeros((N, C, H + t + bo, W + l + r), dtype=dout.dtype)
    sh = c.stride[0]

    def block(n0, n1, r0, r1):
        d = dout[n0:n1, :, r0:r1].reshape(n1 - n0, G, F // G, -1)
        dcols = xp.matmul(wmat_t, d).reshape(n1 - n0, C, KH, KW, r1 - r0, OW)
        # scatter this block's windows onto the padded rows it covers (starting at r0*sh)
        col2im(dcols, None, c.stride, c.dilation, out=dxp[n0:n1, :, r0 * sh:])

    blocks = block_plan(N, OH, C * KH * KW * OW, CHUNK, xp)
    if all((r0, r1) == (0, OH) for _, _, r0, r1 in blocks):
        run_blocks(block, blocks, xp)  # whole images: the blocks write disjoint parts of dx
    else:
        for blk in blocks:  # NOTE: row blocks of one image overlap at their edges in dx: in turn
            block(*blk)
    return xp.ascontiguousarray(unpad(dxp, c.pads)) if any(c.pads) else dxp


def conv2d_backward(dout, cache, need_dx=True, need_dw=True):
    """Gradients of ``conv2d_forward``.

    dw[f, c, i, j] = sum_{n, oh, ow} dout[n, f, oh, ow] * x_pad[n, c', oh*sh + i*dh, ow*sw + j*dw]
    dx = col2im(w^T @ dout)        db[f] = sum_{n, oh, ow} dout[n, f, oh, ow]

    Parameters
    ----------
    dout : (N, F, OH, OW)
    cache : Conv2dCache from the forward
    need_dx, need_dw : skip the input-gradient / weight-gradient product when not wanted
        (Grad-CAM needs neither below its layer; pixel-space maps need no dw).
    Returns
    -------
    dx : (N, C, H, W) or None; dw : like w, or None; db : (F,) or None
    """
    db = dout.sum(axis=(0, 2, 3)) if (need_dw and cache.has_bias) else None
    dw = _conv_dw(dout, cache) if need_dw else None
    dx = _conv_dx(dout, cache) if need_dx else None
    return dx, dw, db
