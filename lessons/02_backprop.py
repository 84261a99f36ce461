# %% [markdown]
# # Lesson 02: pooling, ReLU, dense, softmax cross-entropy, and backprop through a network
#
# **Goal.** Learn the forward and backward rule of every other layer a CNN classifier needs,
# then chain them: backpropagation is one loop over the layers in reverse.
#
# Run it: `python lessons/02_backprop.py` (about 2 s; `SMOKE=1` about 1 s). Figures:
# `02_maxpool_routing.png`, `02_backprop_chain.png`.
#
# Code shown: `minicnn/naive.py` (max pooling), `minicnn/functional.py` (ReLU, linear),
# `minicnn/losses.py` (softmax cross-entropy), `minicnn/model.py` (`Sequential.backward`).

# %%
import numpy as np

try:
    import _common as C  # lessons/ is the script's (or the open notebook's) folder
except ModuleNotFoundError:  # a notebook run elsewhere: lessons/ sits beside minicnn's checkout
    import pathlib
    import sys

    import minicnn

    sys.path.append(str(pathlib.Path(minicnn.__file__).parents[1] / "lessons"))
    import _common as C
from minicnn import Sequential, functional, losses, naive, zoo
from minicnn import layers as L
from minicnn.data import make_shapes
from minicnn.gradcheck import numerical_vjp, rel_error

# %% [markdown]
# ## 1. Max pooling
#
#     out[n, c, oh, ow] = max_{i, j} x[n, c, oh*s + i, ow*s + j]                           (2.1)
#     dx[n, c, oh*s + i*, ow*s + j*] += dout[n, c, oh, ow],  (i*, j*) = argmax of the window  (2.2)
#
# Only the maximum of each window influenced the output, so only it receives gradient. When
# several entries tie for the maximum, the gradient of a max is not defined; the library
# (like PyTorch) gives all of it to the FIRST maximum in row-major order of the window.

# %%
# Writing (2.1) and (2.2) yourself, with the tie rule, is assignment A2
# (`lessons/assignments/02_maxpool.py`): the lesson calls the library's loops, it does not
# print them.

# %% [markdown]
# A gradient check needs a point where the max is differentiable: distinct values, so that
# a step of h = 1e-6 cannot change which entry wins. A random permutation guarantees that.

# %%
r = C.rng(0)
x = r.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 10.0  # distinct values, 0.1 apart
out, cache = naive.maxpool2d_forward(x, 2)
dout = r.standard_normal(out.shape)
dx = naive.maxpool2d_backward(dout, cache)
num = numerical_vjp(lambda v: naive.maxpool2d_forward(v, 2)[0], x.copy(), dout)
C.check("max-pool dx relative error", rel_error(dx, num), about=1e-9, below=1e-6)
# prints: 2.4e-09. (Max-pooling is exact selection; the error is the round-off of evaluating
# sums of values up to 21.5 at a step of h = 1e-6: about 1e-16 * 20 / 1e-6 = 2e-9.)

# overlapping windows (3x3, stride 2): a pixel can be the max of two windows; gradients add
out3, cache3 = naive.maxpool2d_forward(x, 3, stride=2)
dout3 = r.standard_normal(out3.shape)
num3 = numerical_vjp(lambda v: naive.maxpool2d_forward(v, 3, stride=2)[0], x.copy(), dout3)
dx3 = naive.maxpool2d_backward(dout3, cache3)
C.check("overlapping windows dx relative error", rel_error(dx3, num3),
        about=1e-9, below=1e-6)
# prints: 1.2e-09

# %% [markdown]
# **Ties.** After a ReLU whole windows are often exactly 0. The library sends the window's
# gradient to its first entry only. A common shortcut, `mask = (x == max)`, sends it to every
# tied entry and so multiplies it: here by 4. In a network this inflates gradients from
# dead regions, and it visibly changes Grad-CAM maps (see the NOTE in
# `functional.maxpool2d_backward`). Assignment A2 grades exactly this rule.

# %%
zeros = np.zeros((1, 1, 2, 2))
_, zc = naive.maxpool2d_forward(zeros, 2)
first = naive.maxpool2d_backward(np.ones((1, 1, 1, 1)), zc)[0, 0]
shortcut = (zeros == zeros.max())[0, 0].astype(float)
print("first-max rule:\n", first, "\nx == max shortcut:\n", shortcut)
C.expect("first-max rule: all gradient to the top-left", first.sum() == 1 and first[0, 0] == 1)
# prints: [[1. 0.] [0. 0.]] for the library, [[1. 1.] [1. 1.]] for the shortcut (4x the gradient)

# %% [markdown]
# ## 2. ReLU and the dense layer
#
#     ReLU:    out = max(x, 0),        dx = dout * [x > 0]                                 (2.3)
#     Linear:  y = x W^T + b,          dx = dout W,   dW = dout^T x,   db = sum_n dout      (2.4)
#
# W is (out, in) as in PyTorch. ReLU's derivative at exactly 0 is taken as 0. `relu_backward`
# also holds two other rules (deconvnet, guided) that lesson 06 uses for pixel-space maps (and
# assignment A4 asks you to write, so it is not printed here).

# %%
C.show(functional.linear_backward)

# %%
xr = r.standard_normal((3, 5))
xr[np.abs(xr) < 1e-3] = 0.5  # keep away from the kink at 0
o, mask = functional.relu_forward(xr)
do = r.standard_normal(o.shape)
C.check("ReLU dx relative error",
        rel_error(functional.relu_backward(do, mask),
                  numerical_vjp(lambda v: functional.relu_forward(v)[0], xr.copy(), do)),
        about=1e-10, below=1e-6)
# prints: 5.0e-11

xl, Wl, bl = r.standard_normal((4, 6)), r.standard_normal((3, 6)), r.standard_normal(3)
yl, lc = functional.linear_forward(xl, Wl, bl)
dyl = r.standard_normal(yl.shape)
gx, gW, gb = functional.linear_backward(dyl, lc)
lin = functional.linear_forward
errs = [rel_error(gx, numerical_vjp(lambda v: lin(v, Wl, bl)[0], xl.copy(), dyl)),
        rel_error(gW, numerical_vjp(lambda v: lin(xl, v, bl)[0], Wl.copy(), dyl)),
        rel_error(gb, numerical_vjp(lambda v: lin(xl, Wl, v)[0], bl.copy(), dyl))]
C.check("Linear dx, dW, db: max relative error", max(errs), about=1e-10, below=1e-6)
# prints: 1.8e-10

# %% [markdown]
# ## 3. Softmax cross-entropy
#
# The scores s (N, classes) become probabilities and a loss; the gradient is remarkably simple:
#
#     p[n, c] = exp(s[n, c]) / sum_j exp(s[n, j])                                          (2.5)
#     L = -1/N sum_n log p[n, y_n],      dL/ds = (p - onehot(y)) / N                        (2.6)
#
# (Computed with the row maximum subtracted first, so `exp` never overflows.) With random
# small scores every class is equally likely and L = ln(classes): ln 4 = 1.386 for the four
# shapes. That is the loss to expect before training (lesson 03).

# %%
C.show(losses.softmax_cross_entropy)
s = 0.01 * r.standard_normal((5, 4))
y = np.array([0, 1, 2, 3, 1])
loss, ds = losses.softmax_cross_entropy(s, y)
print(f"loss at random small scores: {loss:.4f}   (ln 4 = {np.log(4):.4f})")
# prints: loss at random small scores: 1.3869   (ln 4 = 1.3863)
num_ds = numerical_vjp(lambda v: np.array(losses.softmax_cross_entropy(v, y)[0]), s.copy(), 1.0)
C.check("dL/ds relative error", rel_error(ds, num_ds), about=1e-10, below=1e-6)
# prints: 5.6e-10

# %% [markdown]
# ## 4. Backprop through a whole network
#
# The chain rule, applied layer by layer: each layer turns the gradient at its output into
# the gradient at its input (and stores its parameter gradients on the way). This loop is
# all of `Sequential.backward`; its `stop_at` returns the gradient at any layer's output,
# which is what Grad-CAM needs (lesson 05).

# %%
C.show(Sequential._backward)

# %% [markdown]
# A small float64 network (conv, ReLU, max-pool, conv, ReLU, global average pooling, linear)
# and a check of every parameter gradient and of dL/dx against central differences: each
# numerical estimate perturbs one number of the *model's own* parameter array and reruns the
# whole forward pass and loss.

# %%
rn = C.rng(1)
net = Sequential([
    ("conv1", L.Conv2d(3, 4, 3, padding=1, rng=rn, dtype="float64")), ("relu1", L.ReLU()),
    ("pool1", L.MaxPool2d(2)),
    ("conv2", L.Conv2d(4, 6, 3, padding=1, rng=rn, dtype="float64")), ("relu2", L.ReLU()),
    ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(6, 4, rng=rn, dtype="float64")),
])
for _, layer in net.named_layers():  # non-zero biases, so their gradients are tested too
    if "bias" in layer.params:
        layer.params["bias"][:] = 0.1 * rn.standard_normal(layer.params["bias"].shape)
xn = rn.standard_normal((2, 3, 8, 8))
yn = np.array([1, 3])
print(net)


def loss_of(_):
    """The loss of the current parameters (numerical_vjp perturbs them in place)."""
    return np.array(losses.softmax_cross_entropy(net(xn), yn)[0])


loss0, dscores = losses.softmax_cross_entropy(net(xn), yn)
dxn = net.backward(dscores)
grads = net.grad_dict()
worst = 0.0
for key, p in net.state_dict().items():
    e = rel_error(grads[key], numerical_vjp(loss_of, p, 1.0))
    worst = max(worst, e)
    print(f"  {key:14s} {str(p.shape):14s} relative error {e:.1e}")
e = rel_error(dxn, numerical_vjp(lambda v: np.array(losses.softmax_cross_entropy(net(v), yn)[0]),
                                 xn.copy(), 1.0))
print(f"  {'input x':14s} {str(xn.shape):14s} relative error {e:.1e}")
C.check("worst relative error in the network", max(worst, e), about=1e-8, below=1e-6)
# prints: conv1.weight 1.7e-09, conv1.bias 2.0e-09, conv2.weight 9.0e-10, conv2.bias 2.0e-10,
# fc.weight 2.8e-10, fc.bias 1.6e-10, input x 1.2e-08; worst 1.2e-08. The input gradient is
# the smallest in size (the loss depends on x only through a GAP of many terms), so the same
# absolute round-off is a larger relative error; a wrong backward would give 1e-2 or more.

# %% [markdown]
# ## 5. Pictures
#
# `02_maxpool_routing.png`: a 6 x 6 input with a block of zeros (as after a ReLU), its 2 x 2
# max-pool and where a gradient of ones goes back: one entry per window, the first maximum
# when the window ties.
#
# `02_backprop_chain.png`: the trained demo model `zoo.shapes_gap` (lesson 03 trains one like
# it) on one image. Top row: the forward activation at each layer, in the channel that
# responds most to the object (its mean on the object minus off it). Bottom row: the size
# of the loss gradient there, summed over channels, from `backward(dscores, stop_at=layer)`:
# the gradient at each layer's output.

# %%
grid = np.arange(36, dtype=float).reshape(6, 6) % 7
grid[2:4, 2:4] = 0.0  # a tied window
grid[0:2, 4:6] = 5.0  # another tie, at a non-zero value
xp_, pc = naive.maxpool2d_forward(grid[None, None], 2)
routed = naive.maxpool2d_backward(np.ones_like(xp_), pc)[0, 0]

fig = C.figure(9.5, 3.4)
axes = fig.subplots(1, 3)
for ax, arr, title in ((axes[0], grid, "input x (6x6)"), (axes[1], xp_[0, 0], "max-pool 2x2"),
                       (axes[2], routed, "dx for dout = 1 (first max)")):
    C.im(ax, arr, title, cmap="Blues", vmin=0, vmax=max(arr.max(), 1) * 1.6)
    for (i, j), v in np.ndenumerate(arr):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=9)
    if arr.shape == (6, 6):
        for t in (1.5, 3.5):
            ax.axhline(t, color="k", lw=1)
            ax.axvline(t, color="k", lw=1)
C.save(fig, "02_maxpool_routing.png")

# %%
model = zoo.shapes_gap(pretrained=True)
data = make_shapes(4, seed=0)
x1, y1 = data.images[:1], data.labels[:1]
names = ["relu1", "pool1", "relu2", "pool2", "relu3", "relu4"]
scores = model(x1, keep=names)
acts = dict(model.activations)
_, dscores = losses.softmax_cross_entropy(scores, y1)
gmaps = {n: np.abs(model.backward(dscores, stop_at=n, need_dw=False)).sum(axis=1)[0]
         for n in names}
gmaps["input"] = np.abs(model.backward(dscores, need_dw=False)).sum(axis=1)[0]
print("predicted", model.class_names[int(scores.argmax())], "for a", model.class_names[int(y1[0])])
# prints: predicted triangle for a triangle

fig = C.figure(2.0 * (len(names) + 1), 4.4)
axes = fig.subplots(2, len(names) + 1)
C.im(axes[0, 0], x1[0], "input (64x64)")
C.im(axes[1, 0], gmaps["input"], "|dL/dx|", cmap="magma")
for j, n in enumerate(names, start=1):
    a = acts[n][0]  # (K, h, w)
    h, w = a.shape[1:]
    # the most object-selective channel: mean activation on the object minus off it, with the
    # object mask averaged down to the map's cells
    cover = data.masks[0].reshape(h, 64 // h, w, 64 // w).mean(axis=(1, 3))
    on = (a * cover).sum(axis=(1, 2)) / cover.sum()
    off = (a * (1 - cover)).sum(axis=(1, 2)) / (1 - cover).sum()
    sel = on - off
    k = int(sel.argmax())
    C.im(axes[0, j], a[k], f"{n} ch {k} ({h}x{w})", cmap="viridis")
    flat = np.ptp(gmaps[n]) < 1e-6 * gmaps[n].max()
    C.im(axes[1, j], gmaps[n], f"|dL/d {n}|" + (" (constant)" if flat else ""), cmap="magma",
         **({"vmin": 0} if flat else {}))
spread = np.ptp(gmaps["relu4"]) / gmaps["relu4"].max()
print(f"relu4 gradient: max {gmaps['relu4'].max():.4f}, "
      f"relative spread over positions {spread:.1e}")
# prints: relu4 gradient: max 0.0064, relative spread over positions 0.0e+00. Global average
# pooling gives every position of a channel the same gradient w_k / Z: lesson 04 builds CAM
# on exactly this fact.
C.save(fig, "02_backprop_chain.png")

# %% [markdown]
# **What you should see.** In `02_maxpool_routing.png` every 2 x 2 window sends its 1 to
# exactly one cell; the all-zero window (centre) and the all-5 window (top right) send it to
# their top-left cell. In `02_backprop_chain.png` the activations get coarser from 64 x 64
# to 16 x 16 while the gradient at the input concentrates on and around the triangle, and
# the deeper gradients on a blob around it; max-pooling makes the gradient at `relu1` and
# `relu2` sparse (at most one cell in four). The selected channels go from an edge detector
# (`relu1`, one slanted edge of the triangle) to blobs that cover the whole object (`relu4`).
# The gradient at `relu4` is one flat colour: constant over positions, as the print says.
#
# **Questions.**
# 1. Max pooling routes the whole gradient to the first maximum of a tied window. Why does a
#    numerical gradient check disagree there, and why is that not a bug?
# 2. Why is the gradient of softmax cross-entropy with respect to the scores (p - onehot)/N,
#    and what does its sum over classes tell you?
# 3. The gradient at `relu4` is constant over positions. Which layer makes it so, and what
#    would break that constancy?
#
# **Next:** lesson 03 trains such a network on the shapes.
