# %% [markdown]
# # Lesson 05: Grad-CAM, deriving alpha, any layer, and CAM as a special case
#
# **Goal.** Compute Grad-CAM from one forward and one backward pass, check its gradient, move
# it to other layers, and prove numerically that on a GAP head it is CAM.
#
# Run it: `python lessons/05_gradcam.py` (about 4 s; `SMOKE=1` about 2 s). Figures:
# `05_gradcam_steps.png`, `05_layers.png`, `05_cam_vs_gradcam.png`.
#
# Paper: Selvaraju et al., "Grad-CAM", arXiv:1610.02391v4, Sec. 3 (Eqs. 1-2) and Sec. 3.1
# ("Grad-CAM generalizes CAM"). Code: `gradcam/engine.py` (`capture`), `gradcam/core.py` (`grad_cam`),
# `gradcam/weights.py` (Eq. 1 and the CAM derivation), `gradcam/targets.py` (the seed).

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
import gradcam
from gradcam import viz
from gradcam.targets import class_score, one_hot
from minicnn import zoo
from minicnn.data import make_scenes
from minicnn.gradcheck import numerical_vjp, rel_error

# %% [markdown]
# ## 1. The equations
#
# CAM needed a GAP + linear head to read its weights w^c. Grad-CAM gets a weight for every
# channel of ANY layer from the gradient of the class score y^c (before the softmax) with
# respect to that layer's activations A^k (u x v maps, Z = u*v):
#
#     alpha_k^c = (1/Z) sum_i sum_j  dy^c / dA^k_ij                                       (1)
#     L^c_Grad-CAM = ReLU( sum_k alpha_k^c A^k )                                          (2)
#
# alpha_k^c is "a partial linearization of the deep network downstream from A": how much
# y^c rises, on average over positions, per unit of channel k. The ReLU keeps only the
# positions whose features raise y^c. The u x v map is then upsampled to the image.
#
# dy^c/dA is one backward pass seeded at the logits with the one-hot vector e_c (dy^c/dy =
# e_c), stopped at A. `capture` does exactly that, in eval mode:

# %%
# Writing the seed, the backward and (1)-(2) yourself is assignment A3
# (`lessons/assignments/03_gradcam.py`), so the lesson calls the library and does not print it.
print("the seed e_c for classes [2, 0] of 4:", one_hot([2, 0], np.zeros((2, 4))).tolist())
# prints: the seed e_c for classes [2, 0] of 4: [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]

# %% [markdown]
# ## 2. Step by step, on the dense-head model
#
# `zoo.shapes_cnn` ends with max-pool to 2 x 2, flatten and a dense layer: CAM cannot run
# on it (lesson 04), Grad-CAM can. Its last conv block's output `relu4` is 64 maps of 16 x 16.

# %%
model = zoo.shapes_cnn(pretrained=True)
scenes = C.first(make_scenes(4, seed=7), C.pick(4, 2))  # SMOKE: the first 2 of the same 4
x, c = scenes.images, scenes.labels[:, 0]
logits, A, dA = gradcam.capture(model, x, "relu4", class_score(c))
alpha = dA.mean(axis=(2, 3))  # (1): (N, K)
linear_map = gradcam.weighted_sum(alpha, A)  # sum_k alpha_k A^k: (N, u, v)
coarse = np.maximum(linear_map, 0)  # (2): L^c_Grad-CAM
print("A", A.shape, " dA", dA.shape, " alpha", alpha.shape, " map", coarse.shape)
# prints: A (4, 64, 16, 16)  dA (4, 64, 16, 16)  alpha (4, 64)  map (4, 16, 16)

r = gradcam.grad_cam(model, x, c, layer="relu4")  # the library's one call
print(r)
C.check("by hand vs gradcam.grad_cam, max |difference|",
        float(max(np.abs(alpha - r.weights).max(), np.abs(coarse - r.coarse).max())),
        about=1e-16, below=1e-12)
# prints: GradCAMResult(method='gradcam', layer='relu4', target=[3, 2, 2, 3], class_names=['cross',
# 'triangle', 'triangle', 'cross'], ...) and 0.0e+00: the very same operations.

# %% [markdown]
# ## 3. Is dy^c/dA right? A gradient check
#
# Central differences on A need a point where the rest of the network is differentiable.
# After `relu4` comes an 8 x 8 max-pool, and a ReLU leaves many exact zeros that tie for
# the max: a step of +h on one of them changes the max, and the numerical gradient is
# meaningless there (lesson 02). So we check one layer earlier, at `bn4` (before the ReLU,
# where values are almost never exactly 0), in float64, on the first scene: Grad-CAM works
# at any layer, so this is the same computation. The rest of the network is run as its own
# layers' `forward`, from `bn4` on.

# %%
m64 = zoo.shapes_cnn(pretrained=True).astype("float64").eval()
x64 = x[:1].astype(np.float64)
_, A4, dA4 = gradcam.capture(m64, x64, "bn4", class_score(int(c[0])))
names = m64.layer_names()
after = [m64[n] for n in names[names.index("bn4") + 1:]]  # relu4, pool4, flatten, drop, fc
print("downstream of bn4:", [type(lay).__name__ for lay in after])
K_check = C.pick(16, 4)  # channels perturbed (each one 256 numbers, two forward passes each)


def head(a_sub):
    """Logits from bn4's output, with channels [0, K_check) replaced by a_sub."""
    out = np.concatenate([a_sub, A4[:, K_check:]], axis=1)
    for lay in after:
        out = lay.forward(out)
    return out


dy = one_hot([int(c[0])], head(A4[:, :K_check].copy()))  # the seed e_c
num = numerical_vjp(head, A4[:, :K_check].copy(), dy)
C.check(f"dy^c/dA at bn4, {K_check} channels, relative error", rel_error(dA4[:, :K_check], num),
        about=1e-9, below=1e-6)
# prints (full mode): dy^c/dA at bn4, 16 channels, relative error 7.2e-09

# %% [markdown]
# ## 4. Any layer
#
# Nothing in (1)-(2) is specific to the last conv layer. Earlier layers have finer maps but
# less class-specific features; the paper uses the last conv layer as the best compromise
# (`layer=None` picks it: `relu4` here). `05_layers.png` shows the same scene explained at
# `relu2` (32 x 32), `relu3` and `relu4` (16 x 16).

# %%
layers = ["relu2", "relu3", "relu4"]
per_layer = {lay: gradcam.grad_cam(model, x, c, layer=lay) for lay in layers}
print("default layer:", gradcam.grad_cam(model, x[:1]).layer)
# prints: default layer: relu4

# %% [markdown]
# ## 5. CAM is Grad-CAM on a GAP head: the proof, then the numbers
#
# The derivation (Sec. 3.1), as written in `gradcam/weights.py`:

# %%
import gradcam.weights as gw  # noqa: E402

print(gw.__doc__[gw.__doc__.index("Why Grad-CAM"):].strip())

# %% [markdown]
# So on `zoo.shapes_gap`: alpha * Z == w^c (the linear layer's row for c), dy^c/dA is the
# same at every position, and Z * Grad-CAM == ReLU(CAM). In float64 the identities hold to
# round-off (about 1e-16 relative). On `zoo.shapes_cnn` (the dense head) dy^c/dA varies
# from position to position, so no single weight per channel stands behind it: the
# negative control.

# %%
gap64 = zoo.shapes_gap(pretrained=True).astype("float64")
xs64 = x.astype(np.float64)
rg = gradcam.grad_cam(gap64, xs64, c)  # layer=None -> relu4, the input of the GAP
rc = gradcam.cam(gap64, xs64, c)
W = gap64["fc"].params["weight"]  # (4, 64)
Z = rg.activations.shape[2] * rg.activations.shape[3]
print("layer", rg.layer, " Z =", Z)
C.check("alpha * Z vs w^c, relative error", rel_error(rg.weights * Z, W[rg.target]),
        about=1e-16, below=1e-12)
C.check("Z * Grad-CAM vs ReLU(CAM), relative error", rel_error(Z * rg.coarse, rc.coarse),
        about=1e-16, below=1e-12)
C.check("normalised heatmaps, max |difference|", float(np.abs(rg.heatmap - rc.heatmap).max()),
        about=1e-16, below=1e-12)
# prints: layer relu4  Z = 256; all three errors 0.0e+00.

# %% [markdown]
# Exactly 0, not just 1e-16. Why? The backward puts w_k^c / 256 at every position (dividing
# by a power of two is exact in binary floating point), and Eq. (1) averages those 256 equal
# numbers. Summing copies of a number is NOT exact in float64 in general: 3v, 5v, ... need
# more mantissa bits than v has, and the running sums round. It is exact here because the
# weights were float32 before `astype("float64")`: a 24-bit mantissa leaves 29 spare bits,
# so every partial sum of up to 256 copies (8 more bits) is exact, and so is the division by
# 256. The same test on 1000 numbers, once with full float64 mantissas, once born float32:

# %%
def mean_of_copies(v):
    """Eq. (1) on maps that hold v_k at all 16 x 16 positions: mean over (u, v)."""
    return np.repeat(v[:, None], 256, axis=1).reshape(len(v), 16, 16).mean(axis=(1, 2))


v64 = C.rng(5).standard_normal(1000)  # 53-bit mantissas
v32 = v64.astype(np.float32).astype(np.float64)  # 24-bit mantissas, as the shipped weights
n64, n32 = int((mean_of_copies(v64) != v64).sum()), int((mean_of_copies(v32) != v32).sum())
print(f"mean of 256 copies != the number: float64-born {n64} of 1000, float32-born {n32} of 1000")
# prints: mean of 256 copies != the number: float64-born 702 of 1000, float32-born 0 of 1000
C.expect("float32-born numbers average exactly", n32 == 0)
C.expect("full float64 numbers often do not (the negative control)", n64 > 100)

# %%


def spread(dA):
    """How much dy^c/dA varies over positions, relative to its size (0 = constant per channel)."""
    return float(np.ptp(dA, axis=(2, 3)).max() / np.abs(dA).max())


rd = gradcam.grad_cam(zoo.shapes_cnn(pretrained=True).astype("float64"), xs64, c)
print(f"spread of dy^c/dA over positions: GAP head {spread(rg.gradients):.1e}, "
      f"dense head {spread(rd.gradients):.2f}")
# prints: spread of dy^c/dA over positions: GAP head 0.0e+00, dense head 1.00
C.expect("the negative control fails the identity", spread(rd.gradients) > 0.1)

# %% [markdown]
# ## 6. Pictures
#
# `05_gradcam_steps.png`: (1)-(2) for the first scene: the image, alpha sorted (most
# channels near 0), the three channels with the largest alpha, the signed map
# sum_k alpha_k A^k (red raises y^c, blue lowers it), its ReLU, and the heatmap over the image.
#
# `05_layers.png`: Grad-CAM at three layers for each scene.
#
# `05_cam_vs_gradcam.png`: `gradcam.viz.cam_vs_gradcam` on the float32 shipped model: CAM,
# Grad-CAM and their difference (float32 round-off, about 1e-7, drawn black).

# %%
n = 0
img = viz.chw_to_rgb(x[n])
top = np.argsort(-r.weights[n])[:3]
print(f"alpha > 0 for {(r.weights[n] > 0).sum()} of {r.weights.shape[1]} channels; "
      f"largest {r.weights[n].max():.4f}")
# prints: alpha > 0 for 27 of 64 channels; largest 0.0026
fig = C.figure(17.5, 2.6)
axes = fig.subplots(1, 8)
C.im(axes[0], img, f"class '{r.class_names[n]}'")
axes[1].bar(np.arange(r.weights.shape[1]), np.sort(r.weights[n])[::-1], width=1.0)
axes[1].set_title("alpha_k^c, sorted", fontsize=9)
axes[1].set_xlabel("channel (sorted)", fontsize=8)
axes[1].tick_params(labelsize=7)
for ax, k in zip(axes[2:5], top):
    C.im(ax, r.activations[n, k], f"A^{k} (alpha {r.weights[n, k]:+.3f})", cmap="viridis")
lim = np.abs(r.linear_map[n]).max()
C.colorbar(C.im(axes[5], r.linear_map[n], "sum_k alpha_k A^k", cmap="RdBu_r", vmin=-lim,
                vmax=lim))
C.colorbar(C.im(axes[6], r.coarse[n], "ReLU: Eq. (2), 16x16", cmap="jet"))
C.im(axes[7], viz.overlay(img, r.heatmap[n]), "upsampled heatmap")
C.save(fig, "05_gradcam_steps.png")

# %%
N = len(x)
fig = C.figure(2.2 * (len(layers) + 1), 2.3 * N)
axes = fig.subplots(N, len(layers) + 1, squeeze=False)
for i in range(N):
    img = viz.chw_to_rgb(x[i])
    C.im(axes[i, 0], img, "image" if i == 0 else None)
    axes[i, 0].set_ylabel(f"class '{r.class_names[i]}'", fontsize=9)
    for j, lay in enumerate(layers, start=1):
        ri = per_layer[lay]
        u, v = ri.coarse.shape[1:]
        C.im(axes[i, j], viz.overlay(img, ri.heatmap[i]), f"{lay} ({u}x{v})" if i == 0 else None)
C.save(fig, "05_layers.png")

# %%
gap = zoo.shapes_gap(pretrained=True)
r32, c32 = gradcam.grad_cam(gap, x, c), gradcam.cam(gap, x, c)
rows = [{"label": f"'{r32.class_names[i]}'", "cam": c32.heatmap[i], "gradcam": r32.heatmap[i]}
        for i in range(N)]
C.save(viz.cam_vs_gradcam([viz.chw_to_rgb(xi) for xi in x], rows, title="zoo.shapes_gap, float32"),
       "05_cam_vs_gradcam.png")
print(f"float32: max |CAM - Grad-CAM| = {np.abs(r32.heatmap - c32.heatmap).max():.1e}")
# prints: float32: max |CAM - Grad-CAM| = 2.4e-07

# %% [markdown]
# **What you should see.** In the steps figure (the cross-and-square scene, class 'cross'),
# the sorted alphas run from +0.0026 down to about -0.002: a handful of large positive ones,
# a long stretch near 0, then a steeper negative tail; 27 of 64 are positive. The three
# channels with the largest alpha all peak on the cross; the signed map is strongly red on
# the cross and only faintly blue elsewhere, and the ReLU keeps the red: a blob on the cross
# in the 16 x 16 map. In `05_layers.png`, `relu2` maps are finer but pick up edges of
# both objects and the background; `relu3` and `relu4` sit on the explained object. In
# `05_cam_vs_gradcam.png` the CAM and Grad-CAM columns are the same picture and the
# difference column is black.
#
# **Questions.**
# 1. Grad-CAM with summed instead of averaged gradients gives the same heatmap after
#    normalisation. Why, and which number in the result is then Z times too large?
# 2. Why is the gradient check done at `bn4` and not at `relu4`? What would go wrong there?
# 3. The CAM identity held exactly here because the weights were float32. Predict the error
#    of the same identity for a model trained in float64, then check your guess.
#
# **Next:** lesson 06 goes down to the pixels: gradients at the input, and Guided Grad-CAM.
