# %% [markdown]
# # Lesson 01: a convolution, forward and backward, by hand
#
# **Goal.** Compute a convolution with plain loops, then as sliding windows and one matrix
# product; derive its backward pass and prove it right with a numerical gradient check.
#
# Run it: `python lessons/01_convolution.py` (about 1 s; `SMOKE=1` about 1 s). Figures go to
# `lessons/out/` (or `$LESSONS_OUT`): `01_conv_edges.png`, `01_conv_backward.png`.
#
# Everything below calls the library; nothing is re-implemented. The loop version is
# `minicnn/naive.py`, the vectorised reference `minicnn/functional.py` (the tuned kernels that
# layers run, `minicnn/kernels/`, compute the same sums), the windows `minicnn/im2col.py`, the
# gradient check `minicnn/gradcheck.py`.

# %%
import time

import numpy as np

try:
    import _common as C  # lessons/ is the script's (or the open notebook's) folder
except ModuleNotFoundError:  # a notebook run elsewhere: lessons/ sits beside minicnn's checkout
    import pathlib
    import sys

    import minicnn

    sys.path.append(str(pathlib.Path(minicnn.__file__).parents[1] / "lessons"))
    import _common as C
from minicnn import functional, im2col, kernels, naive
from minicnn.data import make_shapes
from minicnn.gradcheck import numerical_vjp, rel_error

# %% [markdown]
# ## 1. The forward pass
#
# A convolution layer (a cross-correlation, as in PyTorch) slides F filters of size
# C x KH x KW over the zero-padded input and takes a dot product at every position.
# The Grad-CAM paper takes these equations for granted; we number them per lesson (1.x):
#
#     out[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * x_pad[n, c, oh*s + i, ow*s + j]  (1.1)
#     OH = floor((H + 2p - KH) / s) + 1,   OW likewise                                         (1.2)
#
# Shapes: x (N, C, H, W), w (F, C, KH, KW), b (F,), out (N, F, OH, OW); stride s, padding p.
# Here is (1.1) as loops over the output positions: at each (oh, ow) one small matrix
# product over (C, KH, KW) does all images and all filters at once.

# %%
C.show(naive.conv2d_forward)

# %%
r = C.rng(0)
x = r.standard_normal((2, 3, 7, 7))  # N=2 images, C=3 channels, 7x7
w = r.standard_normal((4, 3, 3, 3))  # F=4 filters of 3x3
b = r.standard_normal(4)
out, cache = naive.conv2d_forward(x, w, b, stride=2, padding=1)
print("out shape:", out.shape, "  (1.2): OH = floor((7 + 2 - 3) / 2) + 1 = 4")
print("out[0, 0, 0, :] =", out[0, 0, 0])
# prints: out shape: (2, 4, 4, 4); out[0, 0, 0, :] = [-2.3693 -3.2312  0.195  -7.1948]

# %% [markdown]
# ## 2. The same thing as windows and ONE matrix product (im2col)
#
# The loop reads KH*KW-sized windows one at a time. `im2col.windows` returns *all* of them
# as a strided view, (N, C, KH, KW, OH, OW), without copying a pixel. Flatten each window to
# a column and (1.1) becomes one matrix product:
#
#     out = W_mat @ cols,   W_mat: (F, C*KH*KW),   cols: (C*KH*KW, N*OH*OW)              (1.3)

# %%
C.show(im2col.windows)
x_pad = im2col.pad(x, (1, 1, 1, 1))  # (2, 3, 9, 9)
view = im2col.windows(x_pad, (3, 3), (2, 2), (1, 1), (4, 4))
print("windows view:", view.shape, " shares memory with x_pad:", np.shares_memory(view, x_pad))
# prints: windows view: (2, 3, 3, 3, 4, 4)  shares memory with x_pad: True
cols = view.transpose(1, 2, 3, 0, 4, 5).reshape(3 * 3 * 3, -1)  # (C*KH*KW, N*OH*OW) = (27, 32)
out_mat = (w.reshape(4, -1) @ cols).reshape(4, 2, 4, 4).transpose(1, 0, 2, 3)  # (N, F, OH, OW)
out_mat += b[None, :, None, None]
ref, ref_cache = functional.conv2d_forward(x, w, b, stride=2, padding=1)
C.check("relative error, loops vs (1.3) by hand", rel_error(out, out_mat), about=1e-16, below=1e-12)
C.check("relative error, loops vs functional.conv2d_forward", rel_error(out, ref), about=1e-16,
        below=1e-12)
# prints: 0.0e+00 twice here (float64; the same sums, at most reordered: 1e-16 at worst)

# %% [markdown]
# The library's reference version, `functional.conv2d_forward`, is (1.3) as written: one
# im2col copy of the windows and one matrix product (one per group of channels, for grouped
# convolutions; the batch rides along as a leading axis of the product):

# %%
C.show(functional.conv2d_forward)
C.show(functional._im2col)

# %% [markdown]
# Layers run a second, tuned tier with the same signature, `kernels.conv2d_forward`
# (`minicnn/kernels/conv.py`): it computes (1.3) in blocks of columns that fit in the CPU's
# cache, on every core, and for 3 x 3 stride-1 convolutions with 128 or more channels it
# switches to Winograd's algorithm (`minicnn/kernels/winograd.py`), the same sum with fewer
# multiplications. How much faster are they than the loops? The loop version is already half
# vectorised: its Python loop runs only over the OH*OW output positions, each a small
# (N, C*KH*KW) @ (C*KH*KW, F) product. So the gap is largest for a big image with few
# channels, like a first layer: 8 images of 3 x 64 x 64, 16 filters.

# %%
xb = C.rng(1).standard_normal((C.pick(8, 2), 3, 64, 64)).astype(np.float32)
wb = C.rng(2).standard_normal((16, 3, 3, 3)).astype(np.float32)


def best_of(fn, repeats=3):
    """The fastest of a few runs, in seconds (the machine may be busy with other work)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


t_loop, (slow_out, _) = best_of(lambda: naive.conv2d_forward(xb, wb, None, padding=1))
t_ref, (ref_out, _) = best_of(lambda: functional.conv2d_forward(xb, wb, None, padding=1))
t_fast, (fast_out, _) = best_of(lambda: kernels.conv2d_forward(xb, wb, None, padding=1))
print(f"loops {1e3 * t_loop:.1f} ms, reference {1e3 * t_ref:.1f} ms, kernels {1e3 * t_fast:.1f} ms"
      f"; rel error {rel_error(slow_out, ref_out):.1e}, {rel_error(slow_out, fast_out):.1e}")
# prints (on 2 idle cores): loops 23.0 ms, reference 0.9 ms, kernels 0.7 ms; rel error
# 0.0e+00, 0.0e+00 (or ~1e-7: float32 sums in another order). At this size one product is
# already nearly as fast as the kernels' blocks; those pay off on large layers (VGG16's: see
# benchmarks/README.md). Timings are the one thing here that is not reproducible: they depend
# on the machine, its load and the library's version (we have seen loops-to-kernels ratios
# from below 1 to 30; on a busy machine BLAS's threads wait for a core, and the reference's
# product can be the slowest of the three). Same numbers, different loop structure.

# %% [markdown]
# ## 3. The backward pass
#
# Given dout = dL/dout, every output position used one window of x_pad with the weights w,
# so its gradient flows back along the same connections (differentiate (1.1)):
#
#     dw[f, c, i, j]  = sum_{n,oh,ow} dout[n, f, oh, ow] * x_pad[n, c, oh*s + i, ow*s + j]   (1.4)
#     dx_pad[n, c, oh*s + i, ow*s + j] += sum_f dout[n, f, oh, ow] * w[f, c, i, j]         (1.5)
#     db[f]           = sum_{n,oh,ow} dout[n, f, oh, ow]                                      (1.6)
#
# and dx is dx_pad without its padded border. Writing this backward yourself, in the matrix
# form of section 4, is assignment A1 (`lessons/assignments/01_conv.py`): the lesson calls the
# library's backward and does not print it.

# %% [markdown]
# ## 4. Gradient checking
#
# How do we know (1.4)-(1.6) are right? Compare them with central differences. A backward
# computes a vector-Jacobian product: for L = sum(f(x) * dout) with a *random* dout,
#
#     dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / (2h),    error O(h^2)                     (1.7)
#     rel_error(a, b) = max|a - b| / max(|a| + |b|)      (one global ratio)               (1.8)
#
# CS231n's `rel_error` takes the ratio per element, max_i |a_i - b_i| / (|a_i| + |b_i|); (1.8)
# divides the largest difference by the largest size instead, so an entry that is nearly 0
# and off by round-off does not decide the verdict. It is never larger than CS231n's.
#
# In float64 with h = 1e-6 a correct backward gives a relative error near 1e-9 to 1e-11; a
# wrong one gives 1e-2 or more. (A random dout tests every entry of the Jacobian; checking
# sum(f(x)) alone would only test its column sums.)

# %%
C.show(numerical_vjp)
dout = C.rng(3).standard_normal(out.shape)
dx, dw, db = naive.conv2d_backward(dout, cache)
num_dx = numerical_vjp(lambda v: naive.conv2d_forward(v, w, b, 2, 1)[0], x.copy(), dout)
num_dw = numerical_vjp(lambda v: naive.conv2d_forward(x, v, b, 2, 1)[0], w.copy(), dout)
num_db = numerical_vjp(lambda v: naive.conv2d_forward(x, w, v, 2, 1)[0], b.copy(), dout)
C.check("dx relative error", rel_error(dx, num_dx), about=1e-10, below=1e-6)
C.check("dw relative error", rel_error(dw, num_dw), about=1e-10, below=1e-6)
C.check("db relative error", rel_error(db, num_db), about=1e-10, below=1e-6)
# prints: dx 3.2e-10, dw 1.7e-10, db 2.0e-10 (each "should be about 1e-10")

# %% [markdown]
# In matrix form (1.4) is dw = dout_mat @ cols^T, summed over the images, and (1.5) is
# col2im of w_mat^T @ dout_mat: each column of window gradients added back onto its window.
# That is the reference backward, and it must agree with the loop backward (the test suite
# checks both tiers against the loops on hypothesis-drawn geometries in
# `tests/test_naive_vs_fast.py`, and every fast path in `tests/test_tiers.py`; writing it, with
# col2im, is assignment A1):

# %%
fdx, fdw, fdb = functional.conv2d_backward(dout, ref_cache)
C.check("reference vs loop backward, max relative error",
        max(rel_error(dx, fdx), rel_error(dw, fdw), rel_error(db, fdb)), about=1e-16, below=1e-12)
# prints: 7.5e-17

# %% [markdown]
# ## 5. Pictures
#
# **Filters as edge detectors.** Two hand-made 5 x 5 filters (derivatives of a Gaussian)
# convolved with a shapes image (`minicnn.data.make_shapes`) respond to vertical and
# horizontal edges: the kind of filter a first conv layer learns by itself (lesson 03).
#
# **What the backward pass sends back.** With dout one-hot at a single output pixel,
# (1.5) pastes the filter w itself into dx at that pixel's window: the gradient of one
# output pixel is its receptive field weighted by the filter. With dout and w all ones, dx
# counts how many windows touch each input pixel: uniform for stride 1, a checkerboard for a
# 3 x 3 kernel at stride 2 (some pixels are in two windows, some in one; the same overlap
# causes the checkerboard artefacts of transposed convolutions).

# %%
data = make_shapes(4, seed=0)
k = int(np.flatnonzero(data.labels == 2)[0])  # the triangle
img = data.images[k].astype(np.float64)  # (3, 64, 64)
# each colour channel as its own one-channel image: (3, 1, 64, 64); minus its mean so that
# the zero padding is not an edge, and padding 0 ("valid") so the border is not either
chans = (img - img.mean(axis=(1, 2), keepdims=True))[:, None]
g = np.arange(-2, 3)
gauss = np.exp(-(g**2) / 2.0)
d_gauss = g * gauss  # cross-correlation: out ~ x(right) - x(left), a derivative
kx = (gauss[:, None] * d_gauss[None, :])[None, None]  # (1, 1, 5, 5): d/dx (along columns)
ky = kx.transpose(0, 1, 3, 2)  # d/dy (along rows)
edges, _ = functional.conv2d_forward(chans, np.concatenate([kx, ky]), None, padding=0)
print("edges:", chans.shape, "->", edges.shape, " (1.2) with p=0: 64 - 5 + 1 = 60")
# prints: edges: (3, 1, 64, 64) -> (3, 2, 60, 60)
mag = np.sqrt((edges**2).sum(axis=(0, 1)))  # (60, 60), over colour channels and both filters
lim = np.abs(edges).max()

fig = C.figure(10, 2.8)
axes = fig.subplots(1, 4)
C.im(axes[0], img, "input (make_shapes, seed 0)")
C.im(axes[1], edges[1, 0], "green channel * d/dx", cmap="RdBu_r", vmin=-lim, vmax=lim)
C.im(axes[2], edges[1, 1], "green channel * d/dy", cmap="RdBu_r", vmin=-lim, vmax=lim)
C.im(axes[3], mag, "edge magnitude", cmap="magma")
C.save(fig, "01_conv_edges.png")

# %%
w1 = C.rng(4).standard_normal((1, 1, 5, 5))
xg = np.zeros((1, 1, 16, 16))
o, cch = naive.conv2d_forward(xg, w1, None, padding=2)
onehot = np.zeros_like(o)
onehot[0, 0, 6, 9] = 1.0
dx_one, _, _ = naive.conv2d_backward(onehot, cch)
num_one = numerical_vjp(lambda v: naive.conv2d_forward(v, w1, None, 1, 2)[0], xg.copy(), onehot)
# (1.1) is linear in x, so here central differences are exact up to round-off
C.check("one-pixel dx vs numerical", rel_error(dx_one, num_one), about=1e-16, below=1e-6)
# prints: 6.2e-18
C.expect("dx of one output pixel is the filter pasted at its window",
         np.allclose(dx_one[0, 0, 4:9, 7:12], w1[0, 0]))

ones = np.ones((1, 1, 15, 15))
counts = []
for s in (1, 2):
    o, cch = naive.conv2d_forward(ones, np.ones((1, 1, 3, 3)), None, stride=s, padding=1)
    counts.append(naive.conv2d_backward(np.ones_like(o), cch)[0][0, 0])
print("windows per pixel, stride 2, first row:", counts[1][0].astype(int))
# prints: windows per pixel, stride 2, first row: [1 2 1 2 1 2 1 2 1 2 1 2 1 2 1]
# (row 0 lies in one row of windows, row 1 in two)

fig = C.figure(12.5, 2.8)
axes = fig.subplots(1, 4)
lim = np.abs(w1).max()
C.im(axes[0], w1[0, 0], "filter w (5x5)", cmap="RdBu_r", vmin=-lim, vmax=lim)
C.colorbar(C.im(axes[1], dx_one[0, 0], "dx for dout one-hot at (6, 9)", cmap="RdBu_r",
                vmin=-lim, vmax=lim))  # one scale for both: the same numbers, moved
C.colorbar(C.im(axes[2], counts[0], "windows per pixel, stride 1", cmap="viridis"),
           ticks=[4, 6, 9])
C.colorbar(C.im(axes[3], counts[1], "windows per pixel, stride 2", cmap="viridis"),
           ticks=[1, 2, 4])
C.save(fig, "01_conv_backward.png")

# %% [markdown]
# **What you should see.** `01_conv_edges.png`: a bright green triangle pointing left. The
# d/dx response is red (positive) where the green channel rises from left to right, on the
# triangle's two slanted left edges, and blue on its vertical right edge; d/dy marks the
# slanted edges only (red where brightness rises downwards, the upper edge; blue on the
# lower one). The magnitude outlines the triangle; the faint diagonal stripes are the
# background's texture. `01_conv_backward.png`:
# the second panel is the first panel moved to rows 4-8, columns 7-11, and zero elsewhere;
# stride 1 gives 9 windows per interior pixel (fewer at the zero-padded border); stride 2
# alternates 1, 2, 4 windows per pixel.
#
# **Questions.**
# 1. A convolution layer computes a cross-correlation. What changes in (1.1) and in the
#    backward (1.4)-(1.5) if you flip the kernel, and would a trained network notice?
# 2. For stride 2 some input pixels get 4 windows and some 1. What does that do to dx for a
#    uniform dout, and which pattern would you expect in a trained network's input gradient?
# 3. Why does the gradient check use float64, a random dout and central differences? What
#    relative error would a float32 check give, and why?
#
# **Next:** lesson 02 adds pooling, ReLU, a dense layer and the loss, and backpropagates
# through a whole network.
