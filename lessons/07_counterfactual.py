# %% [markdown]
# # Lesson 07: counterfactual explanations
#
# **Goal.** Negate the gradient to ask the opposite question: which regions, if removed,
# would make the network MORE sure of class c? Then test the answer by removing them.
#
# Run it: `python lessons/07_counterfactual.py` (about 2 s; `SMOKE=1` about 1 s). Figures:
# `07_counterfactual.png`, `07_intervention.png`.
#
# Paper: Grad-CAM, arXiv:1610.02391v4, Sec. "Counterfactual Explanations" (and Fig. 1).
# Code: `gradcam/weights.py` (`counterfactual_weights`), `gradcam/targets.py` (`negated`),
# `gradcam/core.py` (`grad_cam(..., counterfactual=True)`).

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
from gradcam.evaluate import object_share
from gradcam.resize import resize
from gradcam.targets import class_score, negated
from minicnn import zoo
from minicnn.data import make_scenes

# %% [markdown]
# ## 1. The equation
#
# Grad-CAM's weights with the gradient negated:
#
#     alpha_k^c = (1/Z) sum_i sum_j  -dy^c / dA^k_ij                                      (7.1)
#     L^c_counterfactual = ReLU( sum_k alpha_k^c A^k )                                    (7.2)
#
# (the paper's counterfactual weights, Sec. "Counterfactual Explanations"). The map shows
# the regions whose features *lower* y^c: distractors. Removing them should raise y^c.
#
# Two equivalent ways to compute it: negate the weights of Eq. (1), or seed the backward
# with -e_c instead of e_c (the backward is linear in its seed).

# %%
C.show(gradcam.counterfactual_weights)
C.show(negated)

model = zoo.shapes_cnn(pretrained=True)
N = C.pick(100, 8)
scenes = C.first(make_scenes(100, seed=21), N)  # SMOKE: the first 8 of the same 100
x, ca, cb = scenes.images, scenes.labels[:, 0], scenes.labels[:, 1]
r = gradcam.grad_cam(model, x, ca)
cf = gradcam.grad_cam(model, x, ca, counterfactual=True)
_, A, dA_neg = gradcam.capture(model, x, cf.layer, negated(class_score(ca)))
C.check("weights from -dA vs weights from the seed -e_c, max |difference|",
        float(np.abs(cf.weights - dA_neg.mean(axis=(2, 3))).max()), about=1e-16, below=1e-12)
# prints: 0.0e+00

# %% [markdown]
# Since (7.1) is minus Eq. (1), the signed map is minus Grad-CAM's signed map, and the
# two ReLUs split it: Grad-CAM is its positive part, the counterfactual its negative part.
# So the two coarse maps never overlap, and their difference is the signed map before the ReLU, `linear_map`:

# %%
C.check("Grad-CAM - counterfactual vs linear_map, max |difference|",
        float(np.abs((r.coarse - cf.coarse) - r.linear_map).max()), about=1e-16, below=1e-5)
C.expect("the two coarse maps are never both positive", float((r.coarse * cf.coarse).max()) == 0.0)
# prints: 0.0e+00

# %% [markdown]
# ## 2. Where does it point?
#
# On a scene with objects of classes A and B, the counterfactual map for A should land on
# B: B's features are evidence *against* A. `object_share` is the share, of the map's mass
# on either object, that lies on the given one (lesson 08).

# %%
own = object_share(r.heatmap, scenes.masks[:, 0], scenes.masks[:, 1]).mean()
other = object_share(cf.heatmap, scenes.masks[:, 1], scenes.masks[:, 0]).mean()
print(f"Grad-CAM for A: {own:.1%} of its object mass on A;  counterfactual for A: {other:.1%} on B")
# prints (full mode): Grad-CAM for A: 86.9% of its object mass on A;
# counterfactual for A: 95.2% on B

# %% [markdown]
# ## 3. Testing it: remove the region and watch y^c
#
# "Removing" a region means painting background over it. The background of these scenes is
# smooth, so we estimate it by averaging the image over 8 x 8 blocks *without* the objects
# (a masked block mean) and upsampling that bilinearly (`gradcam.resize`). Then, for each
# scene, we threshold a heatmap at half its maximum and repaint that region:
#
# - the counterfactual region: y^A should go UP;
# - the Grad-CAM region: y^A should go DOWN;
# - control: the counterfactual region of *another* scene (same size and shape, an
#   unrelated place): y^A should barely move.

# %%
def smooth(a):
    """(N, C, 64, 64) -> block means over 8 x 8 pixels, upsampled back bilinearly."""
    n, ch, H, W = a.shape
    blocks = a.reshape(n, ch, 8, H // 8, 8, W // 8).mean(axis=(3, 5))  # (N, C, 8, 8)
    return np.stack([resize(blocks[:, k], (H, W)) for k in range(ch)], axis=1)


keep = (~scenes.masks.any(axis=1)).astype(x.dtype)[:, None]  # 1 on background pixels
background = smooth(x * keep) / np.maximum(smooth(keep), 1e-3)


def repaint(region):
    """The scenes with ``region`` (N, H, W) bool painted over with the background estimate."""
    R = region[:, None].astype(x.dtype)
    return x * (1 - R) + background * R


rows = np.arange(N)
y0 = r.logits[rows, ca]
regions = {"counterfactual region": cf.heatmap > 0.5, "Grad-CAM region": r.heatmap > 0.5,
           "control (another scene's region)": np.roll(cf.heatmap > 0.5, 1, axis=0)}
delta = {}
for name, reg in regions.items():
    delta[name] = model(repaint(reg))[rows, ca] - y0
    print(f"remove {name:33s} y^A changes by {delta[name].mean():+.2f} on average; "
          f"up in {np.mean(delta[name] > 0):.0%} (area {reg.mean():.1%})")
# prints (full mode, 100 scenes):
# remove counterfactual region             y^A changes by +2.42 on average; up in 65% (area 3.7%)
# remove Grad-CAM region                   y^A changes by -6.06 on average; up in 8% (area 3.3%)
# remove control (another scene's region)  y^A changes by -0.37 on average; up in 48% (area 3.7%)
C.expect("removing the counterfactual region raises y^c more than removing Grad-CAM's region",
         delta["counterfactual region"].mean() > delta["Grad-CAM region"].mean())
A_mask = scenes.masks[:, 0]  # object A's pixels
erased = (regions["Grad-CAM region"] & A_mask).sum(axis=(1, 2)) / A_mask.sum(axis=(1, 2))
print(f"share of object A inside the Grad-CAM region: median {np.median(erased):.0%}, "
      f"first four scenes {np.round(erased[:4], 2)}")
# prints (full mode): share of object A inside the Grad-CAM region: median 47%, first four
# scenes [0.15 0.49 0.4  0.81]

# %% [markdown]
# ## 4. Pictures
#
# `07_counterfactual.png`: four scenes; columns: the image with the two classes, Grad-CAM
# for A, the counterfactual for A, the image with the counterfactual region repainted
# (with y^A before and after), and with the Grad-CAM region repainted.
#
# `07_intervention.png`: the change of y^A for every scene under the three removals.

# %%
show = min(4, N)
fig = C.figure(11, 2.4 * show)
axes = fig.subplots(show, 5, squeeze=False)
titles = ["scene", "Grad-CAM for A", "counterfactual for A", "counterfactual region removed",
          "Grad-CAM region removed"]
cf_removed = repaint(regions["counterfactual region"])
gc_removed = repaint(regions["Grad-CAM region"])
for i in range(show):
    img = viz.chw_to_rgb(x[i])
    na, nb = model.class_names[ca[i]], model.class_names[cb[i]]
    cells = [img, viz.overlay(img, r.heatmap[i]), viz.overlay(img, cf.heatmap[i]),
             viz.chw_to_rgb(cf_removed[i]), viz.chw_to_rgb(gc_removed[i])]
    for j, cell in enumerate(cells):
        C.im(axes[i, j], cell, titles[j] if i == 0 else None)
    axes[i, 0].set_ylabel(f"A = {na}\nB = {nb}", fontsize=9)
    d_cf, d_gc = delta["counterfactual region"][i], delta["Grad-CAM region"][i]
    axes[i, 3].set_xlabel(f"y^A {y0[i]:.1f} -> {y0[i] + d_cf:.1f}", fontsize=9)
    axes[i, 4].set_xlabel(f"y^A {y0[i]:.1f} -> {y0[i] + d_gc:.1f}", fontsize=9)
C.save(fig, "07_counterfactual.png")

# %%
fig = C.figure(7, 3.6)
ax = fig.subplots()
for k, (name, d) in enumerate(delta.items()):
    jitter = C.rng(k).uniform(-0.15, 0.15, len(d))
    ax.scatter(np.full(len(d), k) + jitter, d, s=10, alpha=0.6)
    ax.plot([k - 0.3, k + 0.3], [d.mean(), d.mean()], "k-", lw=2)
ax.axhline(0, color="gray", lw=1)
ax.set_xticks(range(len(delta)), [n.replace(" (", "\n(") for n in delta], fontsize=8)
ax.set_ylabel("change of y^A (logit)")
ax.set_title(f"repainting a region, {N} scenes (bar: mean)")
C.save(fig, "07_intervention.png")

# %% [markdown]
# **What you should see.** In `07_counterfactual.png` the counterfactual maps sit on or
# next to the *other* object. Repainting the counterfactual region erases most of the
# cross in row 3, and in rows 1, 2 and 4 the background right around object B; y^A rises
# in rows 1, 2 and 4 (0.3 -> 3.7, 20.1 -> 23.8, 4.8 -> 6.2) and dips a little in row 3
# (7.1 -> 6.5). Repainting the Grad-CAM region removes only the hottest part of object A,
# not the whole object: a bite from the square's left side and a hole near its right edge in
# row 1 (15% of its pixels), the centre of the cross in row 2 (49%, four arm stubs remain),
# the middle of the square in row 3 (40%, an hourglass remains), most of the triangle in
# row 4 (81%); the median over the 100 scenes is 47%. Even so y^A falls (row 1: 0.3 -> -6.1,
# row 3: 7.1 -> -8.9, row 4: 4.8 -> 2.6), except in row 2, where the cut-off arms of the
# cross still read as a cross (20.1 -> 20.5). In `07_intervention.png` the counterfactual
# removals scatter upwards (mean +2.4), the Grad-CAM removals downwards (mean -6.1, only 8
# of 100 up), and the control sits near zero (mean -0.37, up in about half the scenes, with
# a tail down where another scene's region happens to cover object A).
#
# **Questions.**
# 1. The counterfactual map is Grad-CAM with the gradient negated. Why is it not simply
#    "1 minus the Grad-CAM map"?
# 2. Repainting the Grad-CAM region lowers y^A although it removes only about half of
#    object A. What does that say about which parts of the object the network uses?
# 3. Why is the control (another scene's region) needed to read the other two results?
#
# **Next:** lesson 08 turns such checks into the paper's evaluation protocols.
