# %% [markdown]
# # Lesson 11: the CAM family, one weighting each
#
# **Goal.** See that Grad-CAM's relatives differ in one thing only, how they weight the
# feature maps A^k, and read each weighting as one entry of the registry. Run eight of them
# side by side on the shapes and on a photograph, then measure the case Grad-CAM++ was
# designed for: two objects of the same class.
#
# Run it: `python lessons/11_cam_family.py` (about 10 s on 2 idle cores; `SMOKE=1` about
# 5 s). Figures: `11_family_shapes.png`, `11_family_photo.png`, `11_twins.png`.
#
# Papers: Grad-CAM, arXiv:1610.02391v4, Eqs. (1)-(2); Grad-CAM++, Chattopadhay et al.,
# arXiv:1710.11063v3, Eqs. (5), (10), (19); the others as the registry prints their
# citations below. Code: `gradcam/registry.py` (the table), `gradcam/method.py` (an entry),
# `gradcam/family/` (one module per group of methods), `gradcam/metrics/localisation.py`.
# Needs the EfficientNet-Lite0 weights, as lesson 09.

# %%
import numpy as np
from matplotlib import cbook
from PIL import Image

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
from gradcam.family import elementwise, plusplus
from gradcam.metrics import area_share, object_share, weaker_instance, weaker_share
from gradcam.targets import class_score
from minicnn import zoo
from minicnn.data import make_scenes
from minicnn.gradcheck import rel_error
from minicnn.zoo import efficientnet

# %% [markdown]
# ## 1. One map, many weightings
#
# Every method here ends the way Grad-CAM does, Eq. (2): a weighted sum of the layer's maps
# A^k (K maps of u x v), then a ReLU, then bilinear upsampling to the image:
#
#     L^c = ReLU( sum_k alpha_k^c A^k ),  or per position:  ReLU( sum_k alpha_k^c(i,j) A^k_ij )
#
# Only alpha differs. With dA = dy^c/dA (one backward pass, lesson 05), S_k = sum_ab A^k_ab:
#
#     Grad-CAM      alpha_k = (1/Z) sum_ij dA^k_ij                               mean gradient (1)
#     Grad-CAM++    alpha_k = sum_ij a^k_ij relu(dA^k_ij),
#                   a^k_ij = dA_ij^2 / (2 dA_ij^2 + S_k dA_ij^3)                 (11.1)
#     XGrad-CAM     alpha_k = sum_ij A^k_ij dA^k_ij / S_k                        (11.2)
#     HiResCAM      alpha_k(i,j) = dA^k_ij                         per position  (11.3)
#     LayerCAM      alpha_k(i,j) = relu(dA^k_ij)                   per position  (11.4)
#     Score-CAM     alpha_k = softmax_k( y^c(x * H^k) - y^c(baseline) ), H^k = A^k upsampled,
#                   scaled to [0, 1]: K more forward passes, no gradient         (11.5)
#     Ablation-CAM  alpha_k = (y^c - y^c with A^k set to 0) / y^c               (11.6)
#     Eigen-CAM     the first principal direction of A: no class, no gradient    (11.7)
#
# (11.1) is Grad-CAM++'s closed form for a network of linear pieces (ReLU, conv, linear),
# where the second and third derivatives of exp(y^c) are powers of dA (its Eq. (19)).
#
# In the library each method is one `Method` entry of the registry: a name, a kind
# ("channel": alpha is (N, K); "position": (N, K, u, v)), whether it needs the gradient,
# and one weighting function of the context (A, dA, the model, ...). The first line of
# each weighting's docstring is its equation:

# %%
FAMILY = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam",
          "ablationcam", "eigencam"]
table = gradcam.methods()
for name in FAMILY:
    m = table[name]
    print(f"{name:12s} kind={m.kind:8s} gradient={'yes' if m.needs_grad else 'no'}")
    if m.weighting.__doc__:  # Eigen-CAM's equation is in its citation line
        print("    " + m.weighting.__doc__.strip().splitlines()[0])
    print("    " + m.citation)
print(len(table), "methods registered in all (pixel maps and FullGrad too)")
C.show(plusplus.gradcam_pp_weights)
C.show(elementwise.xgradcam_weights)

# %% [markdown]
# ## 2. The equations are the code: a check by hand
#
# From one `capture` (A, dA) on the shapes network (float64), (1) and (11.1)-(11.4) by
# hand, and (11.6) by running the head again with each channel zeroed, against
# `gradcam.explain`. Expected: round-off, about 1e-16.

# %%
m64 = zoo.shapes_cnn(pretrained=True).astype("float64").eval()
scenes = C.first(make_scenes(24, seed=7), C.pick(24, 8))  # SMOKE: the first 8 of the same 24
x, c = scenes.images, scenes.labels[:, 0]
x64 = x[:4].astype(np.float64)
logits, A, dA = gradcam.capture(m64, x64, "relu4", class_score(c[:4]))
S = A.sum(axis=(2, 3), keepdims=True)
d2 = dA * dA
pp = (np.where(d2 != 0, d2 / np.where(d2 != 0, 2 * d2 + S * d2 * dA, 1), 0)
      * np.maximum(dA, 0)).sum(axis=(2, 3))  # (11.1)
by_hand = {"gradcam": dA.mean(axis=(2, 3)), "gradcam++": pp,
           "xgradcam": (A * dA).sum(axis=(2, 3)) / S[:, :, 0, 0],  # (11.2)
           "hirescam": dA, "layercam": np.maximum(dA, 0)}  # (11.3), (11.4)
y = logits[np.arange(4), c[:4]]
y_k = np.empty_like(A[:, :, 0, 0])
for k in range(A.shape[1]):  # (11.6): K forward passes of the head from relu4 up
    A0 = A.copy()
    A0[:, k] = 0
    y_k[:, k] = m64.forward_from("relu4", A0)[np.arange(4), c[:4]]
by_hand["ablationcam"] = (y[:, None] - y_k) / y[:, None]
worst = max(rel_error(by_hand[n], gradcam.explain(m64, x64, c[:4], method=n).weights)
            for n in by_hand)
C.check("six weightings by hand vs the registry, worst relative error", worst,
        about=1e-16, below=1e-12)
# prints: six weightings by hand vs the registry, worst relative error: 7.0e-17
wrong = rel_error(dA.sum(axis=(2, 3)), gradcam.explain(m64, x64, c[:4], method="gradcam").weights)
print(f"negative control, Grad-CAM with summed (not averaged) gradients: {wrong:.2f}")
# prints: negative control, Grad-CAM with summed (not averaged) gradients: 0.99 (Z = 256 x)
C.expect("the check catches a wrong weighting", wrong > 0.5)

# %% [markdown]
# ## 3. Side by side on the shapes
#
# The shipped `shapes_cnn` (dense head), at `relu4` (16 x 16), explaining object A of each
# scene. Lesson 08's class-discrimination metric scores each method on the scenes: the
# share of the map's mass on either object that lies on object A (1: all on A).

# %%
model = zoo.shapes_cnn(pretrained=True)
maps, share = {}, {}
for name in FAMILY:
    r = gradcam.explain(model, x, c, method=name)
    maps[name] = r.heatmap
    share[name] = object_share(r.heatmap, scenes.masks[:, 0], scenes.masks[:, 1])
    print(f"  {name:12s} share on object A: {share[name].mean():.2f}")
# prints (full mode, 24 scenes): gradcam 0.77, gradcam++ 0.68, xgradcam 0.79, hirescam 0.72,
# layercam 0.67, scorecam 0.57, ablationcam 0.61, eigencam 0.54
C.expect("Grad-CAM discriminates far better than the class-blind Eigen-CAM",
         share["gradcam"].mean() > share["eigencam"].mean() + 0.2)

# %% [markdown]
# Eigen-CAM uses neither the class nor the gradient: it is the same map for every class, so
# on a scene of two objects it lands on whichever object dominates A, and scores about a
# coin flip. Grad-CAM and XGrad-CAM discriminate best here. The per-position methods
# (HiResCAM, LayerCAM) and Grad-CAM++ leak some mass onto the other object; Ablation-CAM
# more, and Score-CAM, which weights channels by how much y^c rises when the image is
# masked by each upsampled A^k, leaks almost as much as Eigen-CAM on this network. One
# network and 24 scenes are not a verdict on a method, only a reason to measure before you
# choose.
#
# ## 4. Side by side on a photograph
#
# EfficientNet-Lite0 on `grace_hopper.jpg`, class 'military uniform', at the default layer
# `_relu1` (7 x 7), which feeds global average pooling (lesson 09). There dy^c/dA^k_ij =
# w_k^c / Z at every position, so (1), (11.2) and (11.3) give the same map: the mean, the
# A-weighted mean and the per-position value of a constant are that constant. LayerCAM and
# Grad-CAM++ keep only the channels with w_k^c > 0, and (11.1) becomes
# relu(w_k^c) / (2 + S_k w_k^c / Z): Grad-CAM's negative channels, which subtract, are gone.
# (Score-CAM would need 1280 forward passes of the whole network here; it is left out.)

# %%
try:
    net = zoo.efficientnet_lite0(pretrained=True)
except ModuleNotFoundError as e:
    raise SystemExit(f"lesson 11 needs the ImageNet weights: {e}") from None
photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
xp_ = efficientnet.preprocess(photo)
rgb = viz.chw_to_rgb((xp_[0] * 128 + 127) / 255)
PHOTO = C.pick(["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "ablationcam",
                "eigencam"], ["gradcam", "gradcam++", "xgradcam", "hirescam"])
photo_maps = {n: gradcam.explain(net, xp_, "military uniform", method=n).heatmap[0]
              for n in PHOTO}
same = max(np.abs(photo_maps[n] - photo_maps["gradcam"]).max() for n in ("xgradcam", "hirescam"))
C.check("XGrad-CAM and HiResCAM vs Grad-CAM at the GAP input, max |difference|", float(same),
        about=1e-7, below=1e-5)
# prints: ... 1.8e-07 (float32 round-off)
differ = np.abs(photo_maps["gradcam++"] - photo_maps["gradcam"]).max()
print(f"Grad-CAM++ vs Grad-CAM, max |difference|: {differ:.2f}")
# prints: Grad-CAM++ vs Grad-CAM, max |difference|: 0.40
C.expect("Grad-CAM++ is a different map here", differ > 0.1)

# %% [markdown]
# ## 5. Two objects of one class: Grad-CAM++'s case
#
# Chattopadhay et al. motivate Grad-CAM++ with images holding several instances of a class:
# Grad-CAM's mean gradient lets the stronger instance dominate, while (11.1) sums only
# positive gradients, each with its own coefficient. `make_scenes(same_class=True)` draws
# such scenes; lesson 08's `weaker_share` scores a map by the share of its mass on the two
# instances that lies on the smaller one (0: only the larger one found). An even spread over
# both would give the smaller one's share of the two objects' area, `area_share`.

# %%
twins = C.first(make_scenes(100, seed=11, same_class=True), C.pick(100, 12))
t_maps = {n: gradcam.explain(model, twins.images, twins.labels[:, 0], method=n).heatmap
          for n in ("gradcam", "gradcam++")}
ws = {n: weaker_share(m, twins.masks) for n, m in t_maps.items()}
gain = ws["gradcam++"] - ws["gradcam"]
print(f"weaker instance's share: Grad-CAM {ws['gradcam'].mean():.3f}, Grad-CAM++ "
      f"{ws['gradcam++'].mean():.3f}, even spread {area_share(twins.masks).mean():.3f}")
print(f"Grad-CAM++ puts 0.1 or more extra on the weaker one in {(gain >= 0.1).sum()} of "
      f"{len(gain)} scenes, 0.1 or more less in {(gain <= -0.1).sum()}")
# prints (full mode, 100 scenes): weaker instance's share: Grad-CAM 0.369, Grad-CAM++ 0.378,
# even spread 0.398; Grad-CAM++ puts 0.1 or more extra on the weaker one in 3 of 100 scenes,
# 0.1 or more less in 0
C.expect("on average Grad-CAM++ gives the weaker instance at least Grad-CAM's share",
         ws["gradcam++"].mean() >= ws["gradcam"].mean())

# %% [markdown]
# On average the two barely differ: on these scenes Grad-CAM already finds both instances
# most of the time, so the case the paper draws is rare here (the README's evaluation
# tables say the same). Where they do differ, Grad-CAM++ is the one that finds the weaker
# instance. `11_twins.png` shows the three scenes with the largest gain.
#
# ## 6. Pictures
#
# `11_family_shapes.png`: four scenes, the eight methods for object A (its class on the left).
#
# `11_family_photo.png`: the photo and each method's map for 'military uniform'.
#
# `11_twins.png`: left, the weaker instance's share under Grad-CAM (x) and Grad-CAM++ (y),
# one dot per scene, with the diagonal; right, the three scenes where Grad-CAM++ gains most,
# the weaker instance outlined in white.

# %%
rows = min(4, len(x))
fig = C.figure(1.6 * (len(FAMILY) + 1), 1.75 * rows)
axes = fig.subplots(rows, len(FAMILY) + 1, squeeze=False)
for i in range(rows):
    img = viz.chw_to_rgb(x[i])
    C.im(axes[i, 0], img, "scene" if i == 0 else None)
    axes[i, 0].set_ylabel(f"A = {model.class_names[c[i]]}", fontsize=9)
    for j, name in enumerate(FAMILY, start=1):
        C.im(axes[i, j], viz.overlay(img, maps[name][i]), table[name].title if i == 0 else None)
C.save(fig, "11_family_shapes.png")

# %%
fig = C.figure(1.9 * (len(PHOTO) + 1), 2.3)
axes = fig.subplots(1, len(PHOTO) + 1)
C.im(axes[0], rgb, "input")
for ax, name in zip(axes[1:], PHOTO):
    C.im(ax, viz.overlay(rgb, photo_maps[name]), table[name].title)
C.save(fig, "11_family_photo.png")

# %%
best = np.argsort(-gain)[:3]
fig = C.figure(11, 4.6)
sub = fig.subfigures(1, 2, width_ratios=[1.2, 2])
ax = sub[0].subplots()
ax.scatter(ws["gradcam"], ws["gradcam++"], s=10, alpha=0.7)
ax.plot([0, 1], [0, 1], "k--", lw=1)
ax.set(xlabel="Grad-CAM", ylabel="Grad-CAM++", xlim=(0, 1), ylim=(0, 1), aspect="equal")
ax.set_title("weaker instance's share, per scene", fontsize=10)
axes = sub[1].subplots(2, len(best), squeeze=False)
weak = weaker_instance(twins.masks)
for j, i in enumerate(best):
    img = viz.chw_to_rgb(twins.images[i])
    for row, name in enumerate(("gradcam", "gradcam++")):
        ax = axes[row, j]
        C.im(ax, viz.overlay(img, t_maps[name][i]), f"{table[name].title}: {ws[name][i]:.2f}")
        ax.contour(twins.masks[i, weak[i]], levels=[0.5], colors="white", linewidths=0.8)
C.save(fig, "11_twins.png")

# %% [markdown]
# **What you should see.** In `11_family_shapes.png` every method is hottest on object A in
# these four scenes. HiResCAM and LayerCAM, weighted per position, are sharper and spotty,
# with specks on the other object (row 3); Grad-CAM++ also warms the square in row 3;
# Score-CAM is smoother and warms the other object in rows 2-4; Eigen-CAM, blind to the
# class, is as hot on the cross in row 2 and the square in row 3 as on the triangle it
# should explain. In `11_family_photo.png` Grad-CAM, XGrad-CAM and HiResCAM are the same
# picture (the cap, warm over the jacket); Grad-CAM++ and LayerCAM, without the negative
# channels, spread further over the flag and the left shoulder. In `11_twins.png` the dots
# hug the diagonal, a few clearly above it; in the three scenes shown Grad-CAM++ adds heat
# on the outlined smaller instance (0.07 -> 0.28, 0.18 -> 0.36, 0.36 -> 0.48).
#
# **Questions.**
# 1. At a layer that feeds global average pooling, why are Grad-CAM, XGrad-CAM and HiResCAM
#    the same map, and why are they not at `relu4` of `shapes_cnn`?
# 2. Grad-CAM++'s (11.1) drops the factor exp(y^c) of the paper's Eq. (5). Why does that
#    leave the heatmap unchanged, and why does the library leave it out?
# 3. Eigen-CAM scores lowest on class discrimination. Name a use for which a class-blind
#    map is still useful, and a question it cannot answer.
#
# **Next:** lesson 12 asks whether a map can be trusted (sanity checks, deletion and insertion,
# occlusion); lesson 13 uses Grad-CAM for what the paper calls identifying bias in a dataset.
