# %% [markdown]
# # Lesson 04: CAM, class activation mapping on a GAP network
#
# **Goal.** See why a network that ends in global average pooling and one linear layer
# explains itself: its class score is an average over positions, so the summand is a map.
#
# Run it: `python lessons/04_cam.py` (about 1 s; `SMOKE=1` about 1 s). Figures:
# `04_cam_decomposition.png`, `04_cam_scenes.png`.
#
# Code used: `gradcam/core.py` (`cam`), `gradcam/engine.py` (`cam_head`), `gradcam/weights.py` (`cam_weights`),
# `gradcam/viz.py` (`overlay`), the shipped model `zoo.shapes_gap` (lesson 03).

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
from gradcam.weights import cam_weights
from minicnn import zoo
from minicnn.data import make_scenes
from minicnn.gradcheck import rel_error

# %% [markdown]
# ## 1. The equation
#
# CAM (Zhou et al., arXiv:1512.04150, Sec. 2). Let A^k (k = 1..K) be the last conv layer's
# u x v feature maps, Z = u*v. Global average pooling and a linear layer give the score of
# class c as (the CAM score as the Grad-CAM paper writes it, Sec. 3.1):
#
#     y^c = sum_k w_k^c * (1/Z) sum_{i,j} A^k_ij + b_c                                     (4.1)
#
# Swap the two sums: the score is the average over positions of one map,
#
#     y^c = (1/Z) sum_{i,j} M_c(i, j) + b_c,     M_c(i, j) = sum_k w_k^c A^k_ij             (4.2)
#
# M_c is the class activation map: how much each position contributes to y^c. No gradient
# is needed, only the weights w^c of the linear layer (one row of its (classes, K) matrix).

# %%
model = zoo.shapes_gap(pretrained=True)
print(model)
print("CAM head (A layer, linear layer):", gradcam.cam_head(model))
# prints: CAM head (A layer, linear layer): ('relu4', 'fc')
C.show(cam_weights)
C.show(gradcam.weighted_sum)

# %% [markdown]
# ## 2. Checking (4.2) numerically
#
# In float64 the two sides of (4.2) agree to round-off. `gradcam.cam` returns M_c as
# `linear_map`, ReLU(M_c) as `coarse` and the upsampled, max-normalised map as `heatmap`.

# %%
scenes = C.first(make_scenes(4, seed=7), C.pick(4, 2))  # SMOKE: the first 2 of the same 4
model64 = zoo.shapes_gap(pretrained=True).astype("float64")
x64 = scenes.images.astype(np.float64)
r = gradcam.cam(model64, x64, target=scenes.labels[:, 0])
W, b = model64["fc"].params["weight"], model64["fc"].params["bias"]
c = r.target
score = r.logits[np.arange(len(c)), c]
rhs = r.linear_map.mean(axis=(1, 2)) + b[c]
print("y^c        :", score)
print("mean M_c + b:", rhs)
C.check("(4.2) relative error", rel_error(score, rhs), about=1e-16, below=1e-12)
# prints: y^c = [ 8.3909 -1.9282  1.9973 -1.4489] on both lines; relative error 5.3e-17
# (1e-16 or below, depending on the order of the float64 sums).
# (The second and fourth scores are negative: there the model prefers the OTHER object's class.)
A = r.activations  # (N, 64, 16, 16)
M_c = np.einsum("nk,nkij->nij", W[c], A)  # (4.2), spelled out
C.check("M_c vs sum_k w_k^c A^k", float(np.abs(r.linear_map - M_c).max()),
        about=1e-16, below=1e-12)
# prints: 0.0e+00 (the same products and sums)

# %% [markdown]
# ## 3. One map per class
#
# The same A gives a different map for every class: only the weights w^c change. For a
# scene with two objects, the map for either class should light up its own object. CAM
# needs exactly this head; on `zoo.shapes_cnn` (max-pool to 2 x 2, flatten, dense) the
# score is not an average over positions and `gradcam.cam` refuses with a clear error.
# Lesson 05 shows that Grad-CAM handles any head, and that it *is* CAM on this one.

# %%
try:
    gradcam.cam(zoo.shapes_cnn(pretrained=True), scenes.images[:1])
except ValueError as e:
    print("ValueError:", str(e)[:160], "...")
# prints: ValueError: CAM (Zhou et al., arXiv:1512.04150) needs a head of global average pooling
# followed directly by the final Linear layer ...

# %% [markdown]
# ## 4. Pictures
#
# `04_cam_decomposition.png`: (4.2) drawn for one scene and class. The six channels that
# add most to y^c (largest w_k^c * mean(A^k)), each A^k with its weight, then their sum over
# all 64 channels, M_c, and its ReLU laid over the image.
#
# `04_cam_scenes.png`: one row per scene: the image, CAM for the class of the first
# object, CAM for the class of the second, and M_c of the first class before the ReLU (red
# raises the score, blue lowers it).

# %%
n = 0
contrib = W[c[n]] * A[n].mean(axis=(1, 2))  # (K,) each channel's share of y^c - b_c
top = np.argsort(-contrib)[:6]
print("top channels:", top, " w_k^c:", W[c[n], top].round(3))
print(f"their share of y^c - b_c: {contrib[top].sum():.3f} of {contrib.sum():.3f}")
# prints: top channels: [52 47 27 15 33 30]  w_k^c: [0.655 0.635 0.56  0.633 0.574 0.599];
# their share of y^c - b_c: 5.828 of 8.479

img = viz.chw_to_rgb(scenes.images[n])
fig = C.figure(17, 2.3)
axes = fig.subplots(1, 9)
C.im(axes[0], img, f"scene, class '{model.class_names[c[n]]}'")
for ax, k in zip(axes[1:7], top):
    C.im(ax, A[n, k], f"A^{k}  (w = {W[c[n], k]:+.2f})", cmap="viridis")
lim = np.abs(r.linear_map[n]).max()
C.colorbar(C.im(axes[7], r.linear_map[n], "M_c = sum_k w_k^c A^k", cmap="RdBu_r", vmin=-lim,
                vmax=lim))
C.im(axes[8], viz.overlay(img, r.heatmap[n]), "ReLU(M_c), upsampled")
C.save(fig, "04_cam_decomposition.png")

# %%
ra = gradcam.cam(model, scenes.images, scenes.labels[:, 0])
rb = gradcam.cam(model, scenes.images, scenes.labels[:, 1])
fig = C.figure(9.8, 2.3 * len(scenes.images))
axes = fig.subplots(len(scenes.images), 4, squeeze=False)
for i in range(len(scenes.images)):
    img = viz.chw_to_rgb(scenes.images[i])
    na, nb = (model.class_names[k] for k in scenes.labels[i])
    C.im(axes[i, 0], img, "scene" if i == 0 else None)
    axes[i, 0].set_ylabel(f"{na} + {nb}", fontsize=9)
    C.im(axes[i, 1], viz.overlay(img, ra.heatmap[i]), f"CAM '{na}'")
    C.im(axes[i, 2], viz.overlay(img, rb.heatmap[i]), f"CAM '{nb}'")
    lim = np.abs(ra.linear_map[i]).max()
    C.colorbar(C.im(axes[i, 3], ra.linear_map[i], f"M_c '{na}' before ReLU", cmap="RdBu_r",
                    vmin=-lim, vmax=lim))
C.save(fig, "04_cam_scenes.png")

# %% [markdown]
# **What you should see.** In the decomposition (a scene with a small orange cross and a
# green square, class 'cross'), the six strongest channels all respond to the cross, and
# faintly to the square too; in the weighted sum over all 64 channels the square's
# part comes out slightly negative (pale blue) and the cross strongly positive. In the
# scenes, each CAM column lights up its own object in three of the four scenes; in the
# first, CAM for 'square' spreads from the square onto the cross as well (the model is less
# sure of the square there). The signed M_c is negative (blue) on the other object: that
# object's features *lower* this class's score, which the ReLU of the displayed map hides.
# Lesson 07 makes use of that negative part.
#
# **Questions.**
# 1. CAM needs global average pooling right before the one linear layer. Which step of the
#    derivation (4.1)-(4.2) fails for a network with max pooling and a dense head?
# 2. The signed map M_c is negative on the other object. Why does the displayed CAM hide
#    that, and when would you want to see it?
# 3. The bias b_c does not appear in the map. Why not, and does it affect the argmax class?
#
# **Next:** lesson 05 gets the same map from gradients, for any head and any layer: Grad-CAM.
