# %% [markdown]
# # Lesson 12: can you trust a map?
#
# **Goal.** A heatmap that looks right can still be wrong. Put Grad-CAM and guided backprop
# through four tests that do not ask whether a map looks plausible but whether it depends on
# the model and agrees with what the model does: Adebayo et al.'s model randomisation, the
# deletion and insertion curves, the Grad-CAM paper's own occlusion correlation, and Grad-CAM
# with the ReLU of its Eq. (2) taken out, scored with lesson 08's metrics.
#
# Run it: `python lessons/12_trust.py` (17 s of CPU, 35 s while other jobs ran; `SMOKE=1`
# 8 s). Figures: `12_cascade.png`, `12_deletion_inputs.png`, `12_curves.png`, `12_occlusion.png`,
# `12_relu.png`.
#
# Papers: Adebayo et al., "Sanity Checks for Saliency Maps", arXiv:1810.03292v3, Sec. 3.1 and
# Fig. 2; Petsiuk et al., "RISE", arXiv:1806.07421 (deletion and insertion); Selvaraju et
# al., "Grad-CAM", arXiv:1610.02391v4, Eq. (2) and Sec. 5.3 ("Faithfulness vs.
# Interpretability"); Zeiler & Fergus, arXiv:1311.2901v3, Sec. 4.2 (occlusion). Code:
# `gradcam/sanity.py`, `gradcam/metrics/`, `gradcam/curves.py`, `gradcam/family/occlusion.py`.

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
from gradcam import metrics, sanity, viz
from gradcam.curves import plot_curves
from gradcam.engine import eval_mode
from gradcam.resize import normalize, resize
from minicnn import zoo
from minicnn.data import make_scenes, make_shapes

model = zoo.shapes_cnn(pretrained=True)


def probability(x, c):
    """p^c(x): the softmax probability of class c[n] for each image n, (N,)."""
    with eval_mode(model):
        e = np.exp(model.forward(x).astype(np.float64))  # logits of a few units: no overflow
    return (e / e.sum(axis=1, keepdims=True))[np.arange(len(x)), c]

# %% [markdown]
# ## 1. Does the map depend on the model? Cascading randomisation
#
# An explanation of a model must change when the model does. Adebayo et al. re-initialise
# the layers from the top (the classifier) down, one more at each step, recompute the map
# and measure how similar it stays to the trained model's map M:
#
#     sim_l = similarity( M(trained, x), M(layers top..l re-initialised, x) )       (12.1)
#
# with Spearman's rank correlation rho (of the signed maps, and of their absolute values)
# and SSIM of the maps as drawn (`gradcam.metrics.spearman`, `gradcam.metrics.ssim`). A map
# that stays similar while the weights that make the decision are random is not explaining
# those weights: the method fails the test. `sanity.randomisation` runs (12.1) on a copy of
# the model for each step (the layer groups of `shapes_cnn`: fc, then conv4 + bn4, ...),
# re-initialised as before training, explaining the trained model's class at every step.
#
# Assignment A6 (`lessons/assignments/06_sanity.py`) asks you to write Spearman's rho with
# average ranks, a layer's re-initialisation and the cascade yourself; this lesson calls the
# library, which is the answer key, so it does not print those functions.

# %%
scenes = C.first(make_scenes(60, seed=12), C.pick(60, 16))  # SMOKE: the first 16 of the 60
n_sanity = C.pick(20, 6)
x_s, c_s = scenes.images[:n_sanity], scenes.labels[:n_sanity, 0]
res = sanity.randomisation(model, x_s, c_s, methods=["gradcam", "guided-backprop"], seed=0)
print(f"{'mean over scenes':22s}" + "".join(f"{step:>8s}" for step in res.steps))
for i, method in enumerate(res.methods):
    for label, sim in (("rho", res.spearman), ("|rho|", res.spearman_abs), ("SSIM", res.ssim)):
        print(f"{method:16s} {label:5s}" + "".join(f"{v:+8.2f}" for v in sim[i].mean(axis=1)))
# prints (full mode, 20 scenes; sanity.format_table(res) prints the same with HOG):
# mean over scenes       trained      fc   conv4   conv3   conv2   conv1
# gradcam          rho     +1.00   -0.06   +0.08   +0.16   +0.13   +0.06
# gradcam          |rho|   +1.00   +0.47   +0.21   +0.38   +0.32   +0.17
# gradcam          SSIM    +1.00   +0.31   +0.11   +0.14   +0.08   +0.05
# guided-backprop  rho     +1.00   +0.77   +0.70   +0.60   +0.50   +0.17
# guided-backprop  |rho|   +1.00   +0.71   +0.66   +0.53   +0.41   +0.13
# guided-backprop  SSIM    +1.00   +0.72   +0.70   +0.46   +0.29   +0.11
gc, gb, fc = res.methods.index("gradcam"), res.methods.index("guided-backprop"), 1
rho_gc, rho_gb = res.spearman[gc, fc].mean(), res.spearman[gb, fc].mean()
C.expect("guided backprop survives a random classifier, Grad-CAM does not",
         rho_gb > 0.5 and abs(rho_gc) < 0.3)

# %% [markdown]
# The table reproduces the paper's finding on our network. With a random classifier (step
# "fc") Grad-CAM's signed map has nothing left in common with the trained one (rho -0.06:
# the new fc weights are as likely to favour a feature as to oppose it), and SSIM falls to
# 0.31. Guided backprop's map keeps rho +0.77 and SSIM 0.72 with a random classifier, and
# +0.70 with conv4 random too: it is made mostly of the image and the lower layers' ReLU
# pattern, not of what the top layers decided. It loses most of its similarity only as
# conv2 and conv1 go (SSIM 0.29, then 0.11). (A map that ignores the model, e.g. an edge
# detector, would score 1 at every step; Adebayo et al. liken guided backprop's maps to one.)
# Grad-CAM's |rho| stays at 0.17-0.47: its map still follows where A is large, on the
# objects, and the random weights mostly flip signs. That is the lenient comparison for a
# CAM method, and Grad-CAM stays well below guided backprop on it down to conv2.
#
# `12_cascade.png`: the paper's Fig. 2 for one scene. Rows: the methods; columns: the image,
# the trained model's map, then the maps with the layers re-initialised down to fc, conv4,
# ..., conv1. The maps are drawn as `sanity.randomisation` compares them by SSIM, in [0, 1]
# (grey scale: the colour bar).

# %%
fig = sanity.cascade_figure(res, viz.chw_to_rgb(x_s[0]), n=0,
                            title="cascading randomisation, shapes_cnn, one scene")
C.colorbar(fig.axes[-1], ticks=[0, 0.5, 1], label="map as drawn")
C.save(fig, "12_cascade.png")

# %% [markdown]
# **What you should see.** Grad-CAM's trained map is a blob on the triangle (object A). With
# fc random a weaker, smaller blob is left near it with patches elsewhere; from conv4 down
# the triangle goes dark and the background lights up. Guided backprop draws the outlines of
# both objects, the triangle and the square, with the trained model and unchanged with fc
# and conv4 random; they grow speckled as conv3 and conv2 go, and only with conv1 random do
# they dissolve (a bright patch on the triangle remains).
#
# ## 2. Deletion and insertion
#
# The second test asks the model itself. Petsiuk et al. remove pixels from the image in the
# map's order, most salient first, and follow the class probability p^c (softmax); or start
# from a canvas and insert the image's pixels in that order:
#
#     x_k = x where rank(pixel) >= n_k, else the baseline b;   n_k = floor(k P / S)
#     deletion(k) = p^c(x_k)      AUC low is good (the class dies fast)                 (12.2)
#     insertion(k) = p^c(x with only the n_k most salient pixels, b elsewhere)
#                                 AUC high is good (the class returns fast)              (12.3)
#
# `metrics.deletion` and `metrics.insertion` return the curves (N, S + 1) and the areas (N,).
# The negative control is a map that knows nothing, uniform noise: a test that cannot tell
# Grad-CAM from noise measures nothing. The paper deletes to zeros (black) and inserts onto
# a blurred copy of the image. Assignment A7 (`lessons/assignments/07_deletion.py`) asks you
# to write the deletion curve and its area; again the lesson calls the library.

# %%
single = C.first(make_shapes(32, seed=12), C.pick(32, 8))
x_d, c_d = single.images, single.labels
maps = {"Grad-CAM": gradcam.explain(model, x_d, c_d, method="gradcam").heatmap,
        "guided backprop": gradcam.explain(model, x_d, c_d, method="guided-backprop").heatmap,
        "random": C.rng(0).random(x_d[:, 0].shape).astype(np.float32)}
curves = {}
for name, m in maps.items():
    curves[name] = {"deletion": metrics.deletion(model, x_d, m, c_d, baseline="blur"),
                    "insertion": metrics.insertion(model, x_d, m, c_d)}
zeros = {name: metrics.deletion(model, x_d, maps[name], c_d) for name in ("Grad-CAM", "random")}
for name in maps:
    z = f"{zeros[name].auc.mean():.3f}" if name in zeros else "  -  "
    print(f"{name:16s} deletion AUC, zeros {z}  blur {curves[name]['deletion'].auc.mean():.3f}"
          f"   insertion AUC {curves[name]['insertion'].auc.mean():.3f}")
# prints (full mode, 32 single shapes):
# Grad-CAM         deletion AUC, zeros 0.352  blur 0.264   insertion AUC 0.924
# guided backprop  deletion AUC, zeros   -    blur 0.305   insertion AUC 0.936
# random           deletion AUC, zeros 0.279  blur 0.659   insertion AUC 0.656
auc = {name: c["deletion"].auc.mean() for name, c in curves.items()}
C.expect("negative control: a random map scores worse than Grad-CAM on deletion (blur)",
         auc["random"] > auc["Grad-CAM"] + 0.2)
C.expect("... and on insertion",
         curves["random"]["insertion"].auc.mean() < curves["Grad-CAM"]["insertion"].auc.mean())
C.expect("with the black baseline the random map looks better (the text below explains it)",
         zeros["random"].auc.mean() < zeros["Grad-CAM"].auc.mean())

# %% [markdown]
# With the paper's black baseline the negative control **fails**: the random map's deletion
# area (0.28) is *lower*, better, than Grad-CAM's (0.35). `12_deletion_inputs.png` and the
# bottom row of `12_curves.png` show why. Deleting 5-10% of the pixels at random sprinkles
# black dots over the whole image. No training image looked like that, and the network
# calls 31 of the 32 speckled shapes a cross, whatever they are: p^c drops to 0 for every
# shape but the crosses, whose p^c stays near 1, so the random curve sits flat at 8/32 =
# 0.25. Grad-CAM's order carves a solid black hole around the object; once it covers 40-60%
# of the image that hole is itself a large dark shape, the network finds the class in it
# again for some images, and the mean curve climbs back to 0.44. Either way the curve
# measures how the network reacts to inputs unlike its training data, not the map. With
# the blurred baseline a deleted pixel takes a plausible value: the random map's area is
# 0.66, Grad-CAM's 0.26, and the test tells the map from noise, as the check above asserts.
# (Rong et al.'s ROAD, `metrics.road`, is built on the same worry: part 2.)
#
# `12_deletion_inputs.png`: one shape, 10% and 30% of its pixels deleted in Grad-CAM's order
# (top) and at random (bottom), black and blurred baseline; each title gives p^c.

# %%
n0, P = 0, x_d.shape[2] * x_d.shape[3]
_, rank = metrics.salience_order(np.stack([maps["Grad-CAM"][n0], maps["random"][n0]]))
fig = C.figure(10, 4.6)
axes = fig.subplots(2, 5)
C.im(axes[0, 0], viz.chw_to_rgb(x_d[n0]), f"{model.class_names[c_d[n0]]}")
axes[1, 0].set_visible(False)
cols = [(b, f) for b in ("zeros", "blur") for f in (0.1, 0.3)]
for row, name in enumerate(("Grad-CAM", "random")):
    axes[row, 1].set_ylabel(f"{name} order", fontsize=9)
    for j, (b, f) in enumerate(cols, start=1):
        base = metrics.baseline_image(x_d[n0:n0 + 1], b)[0]
        kept = (rank[row] >= int(f * P)).reshape(x_d.shape[2:])
        xk = np.where(kept, x_d[n0], base).astype(np.float32)
        p = probability(xk[None], c_d[n0:n0 + 1])[0]
        C.im(axes[row, j], viz.chw_to_rgb(xk), f"{b}, {f:.0%} deleted: p {p:.2f}")
C.save(fig, "12_deletion_inputs.png")

# %% [markdown]
# `12_curves.png`: `gradcam.curves.plot_curves`, one panel per map; top row: the deletion
# curve with the blurred baseline (red) and the insertion curve (blue); bottom row: the
# deletion curves with the paper's black baseline. Bold: the mean over the images, faint:
# each image; the legend gives the mean areas.

# %%
panels = dict(curves)
panels.update({f"{name}, black baseline": {"deletion": z} for name, z in zeros.items()})
fig = plot_curves(panels, cols=3, title=f"shapes_cnn, {len(x_d)} single shapes")
C.save(fig, "12_curves.png")

# %% [markdown]
# **What you should see.** In `12_deletion_inputs.png` (a square) Grad-CAM's first 10% is
# a blob over the square: black, p^c 0.00; blurred, a smudge, p^c 0.17. The random 10%
# leaves the square whole: blurred, p^c stays 0.94, yet the black speckle alone sends it to
# 0.00. In `12_curves.png` (top) Grad-CAM's red curve falls to about 0.2 within 15% of the
# pixels and its blue curve passes 0.9 by 15%; guided backprop's red curve drops faster over
# the first 5%, then levels off near 0.3, and its blue curve passes 0.9 already at 5%. The
# random map's red curve falls slowly, its blue curve rises late. Bottom, the black
# baseline: Grad-CAM's curve rises again in the middle, the random map's is flat at 0.25,
# with a few faint lines (the crosses) at 1.
#
# ## 3. The Grad-CAM paper's test: correlation with occlusion
#
# Sec. 5.3 of the Grad-CAM paper asks whether a map ranks the pixels as occluding them
# changes the score: slide a grey square over the image, record the drop of the class
# score for each position (Zeiler & Fergus), and take the rank correlation with the map:
#
#     S^c(h, w) = mean over the windows p covering (h, w) of  p^c(x) - p^c(x with p hidden)
#     rho = spearman(map, S^c)                                                        (12.4)
#
# Occlusion sensitivity is itself a registered method, `occlusion` (kind "network": one
# forward per window position and image, no gradient); `metrics.occlusion_correlation` runs
# it and returns rho and S^c, so the other maps are compared with the same S^c. The window
# is grey, as Zeiler & Fergus's: 0.5 in our [0, 1] pixels. (The method's default, 0, is grey
# for an input centred on zero, as EfficientNet-Lite0's; here it is black, and a black
# square on the shapes is an object of its own: the worry of section 2 again.)

# %%
print(dict(gradcam.methods()["occlusion"].options))
# prints: {'window': 8, 'stride': 4, 'baseline': 0.0, 'score': 'probability', 'batch_size': 32}
n_occ = C.pick(8, 3)
x_o, c_o = x_d[:n_occ], c_d[:n_occ]
oc = metrics.occlusion_correlation(model, x_o, maps["Grad-CAM"][:n_occ], c_o, window=8,
                                   stride=4, baseline=0.5)  # a grey square: pixels are in [0, 1]
o_maps = {"Grad-CAM": maps["Grad-CAM"][:n_occ], "guided backprop": maps["guided backprop"][:n_occ],
          "Guided Grad-CAM": gradcam.explain(model, x_o, c_o, method="guided-gradcam").heatmap,
          "random": maps["random"][:n_occ]}
hidden = x_o.copy()
hidden[:, :, :8, :8] = 0.5  # the first window; it alone covers the pixels of rows 0-3, cols 0-3
by_hand = probability(x_o, c_o) - probability(hidden, c_o)
C.check("S^c at pixel (0, 0), by hand (one forward) vs the library", float(np.abs(
    by_hand - oc.occlusion[:, 0, 0]).max()), about=1e-7, below=1e-5)
# prints: S^c at pixel (0, 0), by hand (one forward) vs the library: 1.0e-07 (float32 round-off)
rho = {name: metrics.spearman(m, oc.occlusion) for name, m in o_maps.items()}  # Grad-CAM: = oc.rho
for name, r in rho.items():
    print(f"{name:16s} rho with occlusion {r.mean():+.2f}")
# prints (full mode, 8 shapes):
# Grad-CAM         rho with occlusion +0.35
# guided backprop  rho with occlusion +0.32
# Guided Grad-CAM  rho with occlusion +0.35
# random           rho with occlusion -0.00
C.expect("Grad-CAM agrees with occlusion far better than noise",
         rho["Grad-CAM"].mean() > rho["random"].mean() + 0.15)

# %% [markdown]
# The paper finds Guided Grad-CAM more faithful to occlusion than guided backprop. Here the
# order is the same, +0.35 against +0.32, but on 8 shapes 0.03 is no verdict; the gap that
# matters is the one to the random map. Why not higher: S^c, made of 8 x 8 windows, is flat
# over the background, where the maps still rank pixels by tiny differences, and rank
# correlation counts that in full. And where the network is so sure that no hidden window
# moves p^c from 1.0000, S^c is of order 1e-5 and its ranks are round-off (the cross in the
# figure; `score="logit"` would not saturate).
#
# `12_occlusion.png`: three shapes; the occlusion map S^c (signed: red where hiding the
# region lowers p^c, blue where it raises it; the colour bar), Grad-CAM and guided backprop,
# each with its rho below.

# %%
rows = min(3, n_occ)
fig = C.figure(9, 2.4 * rows)
axes = fig.subplots(rows, 4, squeeze=False)
for i in range(rows):
    img = viz.chw_to_rgb(x_o[i])
    C.im(axes[i, 0], img, "image" if i == 0 else None)
    lim = float(np.abs(oc.occlusion[i]).max())
    C.im(axes[i, 1], oc.occlusion[i], "occlusion S^c" if i == 0 else None, cmap="RdBu_r",
         vmin=-lim, vmax=lim)
    C.colorbar(axes[i, 1], label="drop of p^c")
    for j, name in enumerate(("Grad-CAM", "guided backprop"), start=2):
        C.im(axes[i, j], viz.overlay(img, o_maps[name][i]), name if i == 0 else None)
        axes[i, j].set_xlabel(f"rho {rho[name][i]:+.2f}", fontsize=9)
C.save(fig, "12_occlusion.png")

# %% [markdown]
# **What you should see.** For the square and the triangle S^c is a red blob on the
# object (hiding part of the shape costs up to 0.6-0.9 of p^c) on a near-white background
# (hiding empty background changes little); Grad-CAM's blob sits on it, guided backprop
# draws the outline. For the cross the colour bar reads 1e-5: the saturated case above,
# scattered specks, and guided backprop's rho there is 0.00.
#
# ## 4. Grad-CAM without its ReLU
#
# Eq. (2) ends in a ReLU: L^c = ReLU(sum_k alpha_k^c A^k). The paper's reason: only the
# features with a positive influence on the class are of interest; without it, the maps
# "sometimes highlight more than just the desired class". Measure it. The map before the
# ReLU is `GradCAMResult.linear_map` (N, u, v): its positive part is Grad-CAM, its negative
# part lesson 07's counterfactual. On lesson 08's scenes, explaining object A:
#
#     negative share on B = m_B / (m_A + m_B),  m = mass of ReLU(-L) inside each mask     (12.5)
#
# and two ways to draw the map without the ReLU, |L| (importance regardless of sign) and
# min-max scaling (L - min) / (max - min), scored with lesson 08's metrics.

# %%
x_r, mA, mB = scenes.images, scenes.masks[:, 0], scenes.masks[:, 1]
r = gradcam.explain(model, x_r, scenes.labels[:, 0], method="gradcam")
L = resize(r.linear_map, x_r.shape[2:])  # (N, H, W), signed
pos, neg = np.maximum(L, 0), np.maximum(-L, 0)
share_neg_B = metrics.object_share(neg, mB, mA)
print(f"negative evidence: {(neg.sum(axis=(1, 2)) / pos.sum(axis=(1, 2))).mean():.1f} x the "
      f"positive mass; its share on object B {share_neg_B.mean():.2f}")
# prints (full mode, 60 scenes): negative evidence: 1.9 x the positive mass; its share on
# object B 0.81
lo = L.min(axis=(1, 2), keepdims=True)
drawn = {"ReLU (Eq. 2)": r.heatmap, "|L|": normalize(np.abs(L)),
         "min-max": (L - lo) / (L.max(axis=(1, 2), keepdims=True) - lo)}
share = {}
for name, m in drawn.items():
    share[name] = metrics.object_share(m, mA, mB).mean()
    print(f"{name:13s} pointing A {metrics.pointing_game(m, mA).mean():.2f}  "
          f"B {metrics.pointing_game(m, mB).mean():.2f}   mass inside A "
          f"{metrics.mass_inside(m, mA).mean():.2f}   share on A {share[name]:.2f}")
# prints (full mode, 60 scenes):
# ReLU (Eq. 2)  pointing A 0.68  B 0.03   mass inside A 0.27   share on A 0.81
# |L|           pointing A 0.53  B 0.20   mass inside A 0.17   share on A 0.56
# min-max       pointing A 0.68  B 0.03   mass inside A 0.08   share on A 0.64
C.expect("the negative evidence lands on the other object", share_neg_B.mean() > 0.6)
C.expect("without the ReLU (|L|) the map loses class discrimination",
         share["|L|"] < share["ReLU (Eq. 2)"] - 0.15)

# %% [markdown]
# The linear map holds *more* negative than positive mass (1.9 x), and 81% of the negative
# mass on the two objects lies on object B: the other object is strong evidence *against*
# the class explained. Drawn as |L|, that evidence lights up object B: 20% of the peaks land
# on it, and the share on A falls from 0.81 to 0.56, barely better than a coin flip. Min-max
# scaling keeps the peak (the maximum of L is where it was), but it lifts every pixel where
# L = 0, the empty background, to a mid value, so the mass inside A falls from 0.27 to 0.08.
# The ReLU is what makes Grad-CAM class-discriminative.
#
# `12_relu.png`: the three scenes where dropping the ReLU costs most (share on A, ReLU minus
# |L|); the signed linear map L (red: for the class, blue: against; the colour bar), then
# Grad-CAM with the ReLU, |L| and the min-max map, each with its share on A, object A
# outlined in white and object B in black.

# %%
cost = metrics.object_share(r.heatmap, mA, mB) - metrics.object_share(drawn["|L|"], mA, mB)
print(f"|L| loses 0.2 or more of the share on A in {(cost >= 0.2).sum()} of {len(cost)} scenes")
# prints (full mode): |L| loses 0.2 or more of the share on A in 27 of 60 scenes
show = np.argsort(-cost)[:3]
fig = C.figure(11.5, 2.5 * len(show))
axes = fig.subplots(len(show), 5, squeeze=False)
for row, i in enumerate(show):
    img = viz.chw_to_rgb(x_r[i])
    C.im(axes[row, 0], img, "scene" if row == 0 else None)
    axes[row, 0].set_ylabel(f"A = {model.class_names[scenes.labels[i, 0]]}", fontsize=9)
    lim = float(np.abs(L[i]).max())
    C.im(axes[row, 1], L[i], "signed L (no ReLU)" if row == 0 else None, cmap="RdBu_r",
         vmin=-lim, vmax=lim)
    C.colorbar(axes[row, 1], label="sum_k alpha_k A^k")
    for j, (name, m) in enumerate(drawn.items(), start=2):
        C.im(axes[row, j], viz.overlay(img, m[i]), name if row == 0 else None)
        one = metrics.object_share(m[i:i + 1], mA[i:i + 1], mB[i:i + 1])[0]
        axes[row, j].set_xlabel(f"share on A {one:.2f}", fontsize=9)
    for ax in axes[row, 1:]:
        ax.contour(mA[i], levels=[0.5], colors="white", linewidths=0.8)
        ax.contour(mB[i], levels=[0.5], colors="black", linewidths=0.8)
C.save(fig, "12_relu.png")

# %% [markdown]
# **What you should see.** In all three scenes A is a circle and B a cross. L is deep blue
# on the cross and barely red on the circle. The ReLU map is on the circle (share 1.00 in
# each row); |L| is on the cross (0.04-0.08); the min-max map is a warm wash over the
# background, the cross's centre the coldest spot (0.64-0.74).
#
# **Questions.**
# 1. Guided backprop survives the randomisation of fc and conv4 with rho near +0.7. Does
#    that make its maps wrong? What does it tell you they are mostly made of?
# 2. With the black baseline a random map "beats" Grad-CAM on deletion. Which property of
#    the shapes images makes this so, and how would you argue that the blurred baseline is
#    fairer, not just more flattering to Grad-CAM?
# 3. Without the ReLU, |L| puts a fifth of its peaks on the *other* object. Explain from
#    Eq. (1) why a region that is evidence against class A gets large |L|, and what map you
#    would draw to show that evidence on purpose.
#
# **Next:** part 2, `12_trust_more.py`: data randomisation and ROAD. Then lesson 13.
