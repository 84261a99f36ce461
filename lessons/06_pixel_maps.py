# %% [markdown]
# # Lesson 06: pixel-space maps, and Guided Grad-CAM
#
# **Goal.** Take the class score back to the pixels under three ReLU rules, measure why the
# maps are not class-discriminative, and fix that with Grad-CAM: Guided Grad-CAM.
#
# Run it: `python lessons/06_pixel_maps.py` (about 2 s; `SMOKE=1` about 2 s). Figures:
# `06_pixel_maps.png`, `06_figure1.png`.
#
# Papers: Simonyan et al., arXiv:1312.6034 (gradient); Zeiler & Fergus, arXiv:1311.2901
# (deconvnet); Springenberg et al., arXiv:1412.6806, Fig. 1 (guided backprop); Grad-CAM,
# arXiv:1610.02391v4, Sec. 3 "Guided Grad-CAM". Code: `gradcam/engine.py` (`input_gradient`),
# `gradcam/guided.py`, `minicnn/functional.py` (`relu_backward`), `gradcam/viz.py` (`figure1`).

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
from gradcam import guided, viz
from gradcam.evaluate import map_correlation, pixel_saliency
from minicnn import functional, zoo
from minicnn.data import make_scenes
from minicnn.gradcheck import rel_error

# %% [markdown]
# ## 1. Three ways back through a ReLU
#
# All three maps are ONE backward pass of the seed e_c from the logits to the input; they
# differ only in what a ReLU passes back. With f the ReLU's forward input and R the signal
# arriving from above (Springenberg et al., Fig. 1):
#
#     gradient         R_in = R_out * [f > 0]                                            (6.1)
#     deconvnet        R_in = max(R_out, 0)            (ignores the forward pass)         (6.2)
#     guided backprop  R_in = R_out * [f > 0] * [R_out > 0]                              (6.3)
#
# Only (6.1) is a derivative. The rule is an argument of `model.backward` for one call, so
# the model itself never changes:

# %%
# Writing (6.2) and (6.3) yourself is assignment A4 (`lessons/assignments/04_guided_cam.py`):
# the lesson calls `functional.relu_backward` and does not print it.
C.show(guided.input_gradient)

f = np.array([-1.0, 2.0, -3.0, 4.0])  # forward input of a ReLU
R = np.array([1.0, -1.0, 1.0, 1.0])  # signal from above
_, mask = functional.relu_forward(f)
for rule in ("standard", "deconvnet", "guided"):
    print(f"{rule:9s}", functional.relu_backward(R, mask, rule) + 0.0)  # + 0.0: print -0 as 0
# prints: standard  [ 0. -1.  0.  1.]   deconvnet [1. 0. 1. 1.]   guided    [0. 0. 0. 1.]

# %% [markdown]
# ## 2. Only the vanilla gradient is a gradient
#
# Check each map against central differences of y^c at 40 random pixels p (float64):
#
#     g[p]  ~  (y^c(x + h e_p) - y^c(x - h e_p)) / (2h),    h = 1e-6                     (6.4)
#
# Two details make the check trustworthy. (a) The scenes are clipped to [0, 1], so some
# pixels are exactly 0 or 1, and flat clipped patches give exactly equal values in a
# max-pool window: a tie, where max is not differentiable (lesson 02). A jitter of 1e-3
# breaks the ties. (b) One pixel at a time: a step along a random direction through all
# 12288 pixels moves so many units at once that some cross a ReLU kink even at h = 1e-6.
#
# The gradient passes at about 1e-9; deconvnet and guided backprop miss by order 1:
# they are *visualisations*, not derivatives.

# %%
m64 = zoo.shapes_cnn(pretrained=True).astype("float64")
scenes = C.first(make_scenes(6, seed=11), C.pick(6, 2))  # SMOKE: the first 2 of the same 6
x, labels = scenes.images, scenes.labels
x64 = x[:1].astype(np.float64) + 1e-3 * C.rng(1).standard_normal(x[:1].shape)  # (a): no ties
c0 = int(labels[0, 0])
r0 = C.rng(0)
pixels = [(0, int(r0.integers(3)), int(r0.integers(64)), int(r0.integers(64)))
          for _ in range(C.pick(40, 12))]  # (n, channel, row, column)


def central(p, h=1e-6):
    """(6.4) at pixel p = (n, channel, row, column)."""
    e = np.zeros_like(x64)
    e[p] = h
    return (m64(x64 + e)[0, c0] - m64(x64 - e)[0, c0]) / (2 * h)


numeric = np.array([central(p) for p in pixels])
for name, fn in (("gradient", gradcam.saliency), ("deconvnet", gradcam.deconvnet),
                 ("guided", gradcam.guided_backprop)):
    g = fn(m64, x64, c0)
    err = rel_error(np.array([g[p] for p in pixels]), numeric)
    print(f"{name:9s} relative error at {len(pixels)} pixels {err:.1e}")
C.check("vanilla gradient vs (6.4), relative error",
        rel_error(np.array([gradcam.saliency(m64, x64, c0)[p] for p in pixels]), numeric),
        about=1e-9, below=1e-6)
# prints: gradient 1.1e-09, deconvnet 1.0e+00, guided 1.0e+00

# %% [markdown]
# ## 3. Not class-discriminative
#
# For a scene with objects of classes A and B, explain A and B and compare the two maps.
# A class-discriminative method gives different maps (correlation near 0 or negative); a
# class-blind one the same map twice (correlation 1). Pixel maps are reduced to
# max_c |g| per pixel (`gradcam.evaluate.pixel_saliency`); Grad-CAM's heatmap is compared
# as it is. `gradcam.evaluate.map_correlation` is Pearson's r per image.

# %%
model = zoo.shapes_cnn(pretrained=True)
ca, cb = labels[:, 0], labels[:, 1]
methods = {"gradient": gradcam.saliency, "deconvnet": gradcam.deconvnet,
           "guided backprop": gradcam.guided_backprop}
maps = {}
for name, fn in methods.items():
    maps[name] = (fn(model, x, ca), fn(model, x, cb))
ra, rb = gradcam.grad_cam(model, x, ca), gradcam.grad_cam(model, x, cb)
print(f"correlation of the maps for class A and class B, mean over {len(x)} scenes:")
corr = {}
for name, (ga, gb) in maps.items():
    corr[name] = map_correlation(pixel_saliency(ga), pixel_saliency(gb)).mean()
corr["Grad-CAM"] = map_correlation(ra.heatmap, rb.heatmap).mean()
for name, value in corr.items():
    print(f"  {name:16s} {value:+.2f}")
C.expect("guided backprop is far less class-discriminative than Grad-CAM",
         corr["guided backprop"] > corr["Grad-CAM"] + 0.3)
# prints: gradient +0.80, deconvnet +0.56, guided backprop +0.69, Grad-CAM -0.06

# %% [markdown]
# Why? The class enters a pixel-space map only through the seed e_c at the top; on the way
# down, every map passes through the same early layers, whose units respond to edges and
# colour contrast wherever they are, so the pixels that matter to any class (the edges of
# both objects) dominate every map. The vanilla gradient is the most class-blind here
# (+0.80): it is high wherever a small change of the pixel changes y^c, which is around
# every object. Guided backprop and deconvnet are sharper but still correlate at about +0.55
# to +0.7. Grad-CAM weights whole channels of the last conv layer by their effect on y^c, and
# those channels are class-specific: its two maps are uncorrelated. (README's evaluation
# table, 200 scenes: guided backprop +0.63 to +0.73, Grad-CAM -0.15 to +0.12.)
#
# ## 4. Guided Grad-CAM
#
# The paper's fix: keep guided backprop's pixel detail and Grad-CAM's class specificity
# by an elementwise product with the upsampled Grad-CAM heatmap (Sec. 3, "Guided Grad-CAM"):
#
#     Guided Grad-CAM = guided_backprop(x) * upsample(L^c_Grad-CAM)                      (6.5)

# %%
C.show(gradcam.guided_grad_cam)
gg_lib = gradcam.guided_grad_cam(model, x, ca)
gg_hand = maps["guided backprop"][0] * ra.heatmap[:, None]  # (N, 3, H, W) * (N, 1, H, W)
C.check("(6.5) by hand vs gradcam.guided_grad_cam, max |difference|",
        float(np.abs(gg_lib - gg_hand).max()), about=1e-16, below=1e-12)
ggb = gradcam.guided_grad_cam(model, x, cb)
corr_gg = map_correlation(pixel_saliency(gg_lib), pixel_saliency(ggb)).mean()
print(f"Guided Grad-CAM, class A vs B correlation: {corr_gg:+.2f}")
# prints: 0.0e+00; Guided Grad-CAM, class A vs B correlation: +0.11 (guided backprop: +0.69)

# %% [markdown]
# ## 5. Pictures
#
# `06_pixel_maps.png`: one scene, one row per class. Columns: the image, the three pixel
# maps (grey = 0, lighter/darker = the sign, `viz.to_uint8_gradient`), Grad-CAM and Guided
# Grad-CAM.
#
# `06_figure1.png`: the paper's Figure 1 layout (`viz.explain_figure1` + `viz.figure1`):
# image, Grad-CAM, Guided Backprop, Guided Grad-CAM and the counterfactual map (lesson 07)
# for the two classes of a scene.

# %%
n = 0
img = viz.chw_to_rgb(x[n])
fig = C.figure(13.5, 4.8)
axes = fig.subplots(2, 6)
for row, (c, rr, gg) in enumerate(((ca, ra, gg_lib), (cb, rb, ggb))):
    C.im(axes[row, 0], img, "image" if row == 0 else None)
    axes[row, 0].set_ylabel(f"class '{model.class_names[c[n]]}'", fontsize=9)
    for j, name in enumerate(methods, start=1):
        C.im(axes[row, j], viz.to_uint8_gradient(maps[name][row][n]), name if row == 0 else None)
    C.im(axes[row, 4], viz.overlay(img, rr.heatmap[n]), "Grad-CAM" if row == 0 else None)
    C.im(axes[row, 5], viz.to_uint8_gradient(gg[n]), "Guided Grad-CAM" if row == 0 else None)
C.save(fig, "06_pixel_maps.png")

# %%
panels = viz.explain_figure1(model, x[n:n + 1], targets=[int(ca[n]), int(cb[n])])
C.save(viz.figure1(panels["image"], panels["rows"], title="Figure 1 layout, zoo.shapes_cnn"),
       "06_figure1.png")

# %% [markdown]
# **What you should see.** The scene has an orange cross and a green circle. In
# `06_pixel_maps.png` the gradient is speckled colour noise over both objects, almost the
# same for both classes. Deconvnet and guided backprop are sparser: for 'circle' they draw
# a crisp ring on the circle's outline plus scattered specks near the cross and lower left;
# for 'cross' a dense patch on the cross plus a fainter ring on the circle: both objects, in
# both rows. Grad-CAM is a blob on the explained object: for 'cross' a clean one; for
# 'circle' one that peaks on the circle's upper-right edge, with faint patches elsewhere.
# Guided Grad-CAM keeps only the detail under that blob: the ring for 'circle', the patch
# for 'cross'. `06_figure1.png` shows the same in the paper's layout, with the softmax
# probabilities (the model gives 'cross' 0.92 and 'circle' 0.00 here, yet Grad-CAM for
# 'circle' still finds the circle) and the counterfactual maps, which point at the OTHER
# object (for 'cross', at the circle's edges, with faint patches elsewhere).
#
# **Questions.**
# 1. Of the three backward rules only the vanilla gradient passes the gradient check. What
#    do guided backprop and deconvnet compute instead, and why do they look sharper?
# 2. Why are pixel-space maps not class-discriminative, even though each is seeded with the
#    class's one-hot vector?
# 3. Guided Grad-CAM multiplies two maps. What does each factor contribute, and what happens
#    where Grad-CAM's heatmap is 0?
#
# **Next:** lesson 07 flips the sign of the gradient: counterfactual explanations.
