# %% [markdown]
# # Lesson 12, part 2: a network that learned nothing, and a fairer deletion
#
# **Goal.** Two more tests from lesson 12's papers. Adebayo et al.'s second sanity check
# retrains the network on labels shuffled at random: it can only memorise them, so an
# explanation of what it learned must look different from the trained network's. And Rong
# et al.'s ROAD answers part 1's worry about deletion (black pixels make inputs unlike the
# training data): it fills the removed pixels from their neighbours instead.
#
# Run it: `python lessons/12_trust_more.py` (6 s once the permuted-label network is cached;
# the first run trains it, 50 s in all on 2 cores at load 2.3; `SMOKE=1` trains a tiny one,
# 32 shapes for 20 epochs, and runs in 5 s). Figures: `12_data.png`, `12_road.png`.
# Run part 1 (`12_trust.py`) first: this part uses its words (rho, SSIM, deletion, baseline).
#
# Papers: Adebayo et al., "Sanity Checks for Saliency Maps", arXiv:1810.03292v3, Sec. 3.2
# (data randomisation); Zhang et al., "Understanding deep learning requires rethinking
# generalization", ICLR 2017, arXiv:1611.03530 (networks memorise random labels); Rong et
# al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods" (ROAD),
# arXiv:2202.00449v2. Code: `gradcam/permuted.py`, `gradcam/sanity.py`,
# `gradcam/metrics/imputation.py` (the reference solver), `gradcam/metrics/road.py`.

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
from gradcam import metrics, permuted, sanity, viz
from gradcam.engine import eval_mode
from gradcam.metrics import imputation
from minicnn import zoo
from minicnn.data import make_shapes

model = zoo.shapes_cnn(pretrained=True)

# %% [markdown]
# ## 5. Data randomisation: a network trained on permuted labels
#
# Keep the images, permute their labels at random, and train the same architecture until
# it fits them (Zhang et al. showed that networks can). Nothing in an image predicts its new
# label, so the network memorises each image (call it the memoriser), and on fresh shapes it
# is right at chance, 1/4. Adebayo et al. compare each method's map on the trained network
# with its map on the memoriser, with the similarity measures of part 1 plus the correlation
# of HOG features (edge histograms, `metrics.hog_correlation`):
#
#     sim = similarity( M(trained, x), M(trained on permuted labels, x) )              (12.6)
#
# A method whose maps stay similar cannot be telling you what the network learned from the
# labels: it fails the check. `permuted.permuted_label_model` trains (and caches) the
# network; its recipe `permuted.RECIPES` is 512 shapes for 30 epochs, few images and many
# passes, because with the zoo's recipe (8000 images, 5 epochs) the network ends at 26%
# training accuracy: it neither memorised nor learned, which is not the paper's test. SMOKE
# mode trains on 32 shapes for 20 epochs, which memorises them too.

# %%
print(permuted.RECIPES)
# prints: {'shapes_cnn': (512, 30, 0.001), 'shapes_gap': (256, 60, 0.003)}
n_train, epochs = C.pick((None, None), (32, 20))  # None: the recipe's
memoriser = permuted.permuted_label_model("shapes_cnn", n_train=n_train, epochs=epochs,
                                          cache=not C.SMOKE)  # SMOKE: no file in ~/.cache
facts = memoriser.permuted
print(permuted.describe(facts))
# prints (full mode): permuted-label model: 512 images, 30 epochs, lr 0.001; train accuracy
# on the permuted labels 1.000, test accuracy on the true labels 0.244 (chance 0.25)
C.expect("it memorised its permuted labels", facts["train_accuracy_permuted"] > 0.95)
C.expect("it learned no shape: test accuracy near chance",
         abs(facts["test_accuracy_true"] - facts["chance"]) < 0.1)

# %% [markdown]
# Now the maps of both networks on the same shapes, explaining the true class, for
# Grad-CAM, guided backprop and the vanilla gradient ("saliency"). `sanity.data_randomisation`
# computes (12.6) for every method and image; `sanity.format_table` prints the means.

# %%
shapes = C.first(make_shapes(32, seed=12), C.pick(32, 4))  # SMOKE: the first 4 of the 32
x, c = shapes.images, shapes.labels
res = sanity.data_randomisation(model, memoriser, x, c,
                                methods=["gradcam", "guided-backprop", "saliency"])
print(sanity.format_table(res))
step = res.steps.index("permuted labels")
rho = res.spearman[:, step]  # (methods, N)
best = np.argmax(rho, axis=0)
for i, method in enumerate(res.methods):
    print(f"{method:16s} has the highest rho of the three on {(best == i).sum()} of {len(x)}"
          f" shapes (its rho: {rho[i].min():+.2f} to {rho[i].max():+.2f})")
# prints (full mode, 32 shapes; the "trained" rows, 1.000 by definition, left out here):
# method           step             Spearman  Spearman abs   SSIM    HOG
# gradcam          permuted labels     0.029         0.107  0.182  0.139
# guided-backprop  permuted labels     0.392         0.281  0.146  0.278
# saliency         permuted labels    -0.006         0.183  0.061  0.177
# gradcam          has the highest rho of the three on 1 of 32 shapes (its rho: -0.30 to +0.63)
# guided-backprop  has the highest rho of the three on 31 of 32 shapes (its rho: +0.29 to +0.45)
# saliency         has the highest rho of the three on 0 of 32 shapes (its rho: -0.05 to +0.05)
C.expect("a map of the trained network is not a map of the memoriser (SSIM well below 1)",
         (res.ssim[:, step].mean(axis=1) < 0.9).all())

# %% [markdown]
# Read the table as part 1's: the "trained" rows compare each map with itself (1), the
# "permuted labels" rows are (12.6). Look for the method whose maps keep the most in common
# with the trained network's. In our runs that was guided backprop, by rank correlation and
# by HOG, as Adebayo et al. found for it; SSIM, which compares the maps as drawn pixel by
# pixel, did not single it out: the grain the memoriser's map adds over the background
# costs it about as much as the kept outline gains. The numbers above are your run's: if a different
# seed ranks the methods differently, that is worth knowing too (how many shapes would you
# want before you believed a ranking?).
#
# `12_data.png`: `sanity.cascade_figure` for one shape, as `12_cascade.png` in part 1: a row
# per method; the image, the trained network's map, the memoriser's map (grey scale in
# [0, 1], as SSIM compares them).

# %%
fig = sanity.cascade_figure(res, viz.chw_to_rgb(x[0]), n=0,
                            title="data randomisation, shapes_cnn, one shape")
C.colorbar(fig.axes[-1], ticks=[0, 0.5, 1], label="map as drawn")
C.save(fig, "12_data.png")

# %% [markdown]
# **What you should see.** (Full mode: a blue square.) Grad-CAM's trained map is a blob on
# the square; the memoriser's brightest spot sits on the square's upper edge, with a streak
# of patches running from it to the top of the image and specks elsewhere. Guided
# backprop's trained map draws the square's outline, and the memoriser's map still draws
# that outline, speckled and with gaps, under grain over the whole background. Saliency's
# trained map is a speckled blob on the square; the memoriser's is grain everywhere, the
# square does not stand out. The outline that survives in guided backprop's map is the
# method failing the check: it comes from the image and the lower layers' ReLU pattern,
# which a network trained on nonsense labels has too.
#
# ## 6. ROAD: deletion without out-of-distribution holes
#
# Part 1 found that deleting pixels to black makes images the network never saw, and that
# a large hole becomes a shape of its own. Rong et al. add that the hole's shape leaks where
# the map pointed, whatever value fills it. They fill each removed
# pixel i with the weighted mean of its 8 neighbours j, weight 1/6 for the 4 direct ones and
# 1/12 for the 4 diagonal ones; neighbours that are removed too are unknowns as well, so the
# values v of one image and channel solve one sparse linear system:
#
#     S_i v_i - sum_{j removed} w_ij v_j = sum_{j kept} w_ij x_j      for each removed i   (12.7)
#     S_i = sum_j w_ij over the neighbours inside the image (1 away from the border)
#
# then add a little noise (N(0, 0.01^2) per pixel) to the imputed pixels. ROAD removes the
# 10%, 20%, ..., 90% most relevant pixels (MoRF) and reads p^c of the imputed image.
# `gradcam/metrics/imputation.py` is the reference tier: plain conjugate gradients on (12.7),
# matrix-free, the stencil applied to the whole image (`neighbour_sum`), started from the
# same problem on a coarser grid. (`metrics.road` runs the fast tier,
# `metrics.linear_imputation_multigrid`: the same system, preconditioned; the check below
# compares them.)

# %%
print([(dy, dx, f"1/{round(1 / w)}") for dy, dx, w in imputation.NEIGHBOURS])  # offset, w_ij
C.show(imputation.neighbour_sum)
C.show(imputation.linear_imputation)
C.show(imputation._cg)
# prints first: [(-1, -1, '1/12'), (-1, 0, '1/6'), (-1, 1, '1/12'), (0, -1, '1/6'), ...]

# %% [markdown]
# Impute one shape whose most relevant 30% of pixels, in Grad-CAM's order, are removed
# (ROAD's MoRF at p = 30; `metrics.removal_masks` ranks them). Then check (12.7) by hand,
# with the weights typed in from the paper: each removed pixel must be the weighted mean of
# its neighbours. The negative control: equal weights 1/8 must fail the same check.

# %%
x1, c1 = x[:1], c[:1]
cam1 = gradcam.explain(model, x1, c1, method="gradcam").heatmap  # (1, H, W)
hole = metrics.removal_masks(cam1, [30], "morf")[:, 0]  # (1, H, W) bool
filled = imputation.linear_imputation(x1, hole)  # no noise: the solution of (12.7)
noisy = imputation.linear_imputation(x1, hole, noise=C.rng(0).normal(0, 0.01, x1.shape))


def neighbour_mean(u, w):
    """sum_j w_ij u_j / S_i over the 8 neighbours inside the image, (C, H, W); w[dy, dx]."""
    H, W = u.shape[1:]
    up, ones = np.pad(u, ((0, 0), (1, 1), (1, 1))), np.pad(np.ones((H, W)), 1)
    total, S = 0.0, 0.0
    for (dy, dx), wij in w.items():
        total = total + wij * up[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
        S = S + wij * ones[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    return total / S


paper = {(dy, dx): 1 / 6 if dy * dx == 0 else 1 / 12
         for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}
flat = dict.fromkeys(paper, 1 / 8)
u = filled[0].astype(np.float64)
gap = {name: float(np.abs(neighbour_mean(u, w) - u)[:, hole[0]].max())
       for name, w in (("paper", paper), ("1/8", flat))}
C.check("removed pixel - weighted mean of its neighbours (paper's weights)", gap["paper"],
        about=1e-7, below=1e-5)  # float32 output of a float64 solve
print(f"negative control, equal weights 1/8: {gap['1/8']:.1e}   (must be far above 1e-5)")
C.expect("the check tells the paper's weights from equal ones", gap["1/8"] > 1e-3)
fast = metrics.linear_imputation_multigrid(x1, hole)
C.check("reference solver vs the fast one (metrics.road's)", float(np.abs(filled - fast).max()),
        about=1e-7, below=1e-5)

# %% [markdown]
# ROAD's MoRF curves of Grad-CAM and of part 1's negative control, a random map, on the
# shapes: `metrics.road` removes each percentile, imputes with noise, and reads p^c.

# %%
cams = gradcam.explain(model, x, c, method="gradcam").heatmap
noise_map = C.rng(0).random(cams.shape).astype(np.float32)
curves = {name: metrics.road(model, x, m, c, order="morf")
          for name, m in (("Grad-CAM", cams), ("random", noise_map))}
print("percent removed " + "".join(f"{p:6d}" for p in curves["Grad-CAM"].percentiles))
for name, r in curves.items():
    print(f"{name:15s} " + "".join(f"{v:6.2f}" for v in r.curve.mean(axis=0)))
# prints (full mode, 32 shapes):
# percent removed     10    20    30    40    50    60    70    80    90
# Grad-CAM          0.33  0.20  0.20  0.22  0.21  0.22  0.22  0.24  0.27
# random            0.95  0.96  0.94  0.91  0.88  0.83  0.69  0.50  0.32
C.expect("ROAD's negative control: the random map's MoRF curve stays higher than Grad-CAM's",
         curves["random"].curve.mean() > curves["Grad-CAM"].curve.mean())

# %% [markdown]
# `12_road.png`, top: the shape, the hole (Grad-CAM's most relevant 30%, black), the hole
# filled by (12.7), filled with the noise added (what ROAD feeds the network), each with
# p^c; bottom: ROAD's mean MoRF curves, Grad-CAM against the random map.

# %%
with eval_mode(model):
    inputs = np.concatenate([x1, np.where(hole[:, None], 0, x1), filled, noisy]).astype(np.float32)
    logits = model.forward(inputs).astype(np.float64)
p = np.exp(logits - logits.max(axis=1, keepdims=True))
p = (p / p.sum(axis=1, keepdims=True))[:, c1[0]]
fig = C.figure(10, 5.2)
grid = fig.add_gridspec(2, 4, height_ratios=[1, 0.9])
titles = ("image", "30% removed (black)", "imputed (12.7)", "imputed + noise (ROAD)")
for j, (img, title) in enumerate(zip(inputs, titles)):
    C.im(fig.add_subplot(grid[0, j]), viz.chw_to_rgb(img), f"{title}\np^c {p[j]:.2f}")
ax = fig.add_subplot(grid[1, :])
for name, r in curves.items():
    ax.plot(r.percentiles, r.curve.mean(axis=0), marker="o", label=f"{name} (mean of {len(x)})")
ax.set_xlabel("% of pixels removed, most relevant first (MoRF)")
ax.set_ylabel("p^c after imputation")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=8)
C.save(fig, "12_road.png")

# %% [markdown]
# **What you should see.** (Full mode, the same square.) Grad-CAM's most relevant 30% is a
# blob over the square and around it, plus two small patches at the image's edges. Drawn
# black, the hole is a large dark shape and p^c falls from 0.94 to 0.08. Imputed, the hole
# is a smooth brownish-pink wash that continues the background's colours inward, with no
# sharp edge to trace; p^c is 0.21, near chance (1/4): the square is gone, and nothing
# shaped like another class was drawn in its place. The noise (0.01 on pixels in [0, 1])
# is too faint to see. Bottom: Grad-CAM's curve drops to 0.20 once 20% is removed and stays
# near chance (0.20-0.27); the random map's stays above 0.9 up to 40% removed and falls
# only from 60%, to 0.32 at 90%, when too little of the shape is left untouched. Unlike
# with part 1's black baseline, the map that knows nothing scores worse than Grad-CAM, as a
# negative control should.
#
# **Questions.**
# 1. The memoriser fits every permuted label, yet a map of it can look like a map of the
#    trained network. What would such a map be showing you, and why does it fail the test
#    even though it looks "right"?
# 2. (12.7) sets each removed pixel to a mean of its neighbours. Why does that leak less of
#    the map than black pixels, and why does ROAD add noise on top?
#
# **Exercises.**
# 1. Train a network that did *not* memorise: `permuted.permuted_label_model("shapes_cnn",
#    n_train=32, epochs=1, cache=False)`. Print `describe` and rerun the comparison. Which
#    maps change, and why is this a weaker test than the memoriser?
# 2. Rerun ROAD with `order="lerf"` (least relevant first). Which curve should now stay
#    higher, Grad-CAM's or the random map's, and does it?
#
# **Next:** lesson 13 uses Grad-CAM to find a bias in a data set.
