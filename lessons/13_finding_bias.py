# %% [markdown]
# # Lesson 13: finding bias in a data set with Grad-CAM
#
# **Goal.** Train the shapes network on data where a spurious cue predicts the class, see
# that a test set drawn the same way cannot tell, see Grad-CAM point at the cue, then
# retrain on data without the bias and watch the map move back to the object.
#
# Run it: `python lessons/13_finding_bias.py` (about 35 s on 2 idle cores, 90 s on a busy
# machine: two trainings; `SMOKE=1` about 5 s). Figures: `13_biased_data.png`, `13_bias_maps.png`,
# `13_bias_numbers.png`.
#
# Paper: Selvaraju et al., "Grad-CAM", arXiv:1610.02391v4, Sec. 6.3 ("Identifying bias in
# dataset", Fig. 8). Code: `minicnn/data.py` (the shapes), `minicnn/train.py` (`fit`),
# `gradcam/core.py` (`grad_cam`), `gradcam/metrics/localisation.py` (lesson 08's metrics).

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
from gradcam.metrics import pointing_game
from minicnn import Sequential
from minicnn import layers as L
from minicnn import optim, train
from minicnn.data import CLASSES, make_shapes

# %% [markdown]
# ## 1. The paper's experiment, in miniature
#
# The paper fine-tunes VGG-16 to tell "doctor" from "nurse" on 250 images per class from an
# image search. The model reaches good validation accuracy but only 82% on a test set
# balanced for gender. Grad-CAM shows it looking at faces and hairstyles: 78% of the
# doctor images showed men and 93% of the nurse images women, and the model had learned
# the stereotype. Retrained on a set with male nurses and female doctors added (same size
# per class), it reaches 90%, and its maps move to what the paper calls the right regions
# (Fig. 8, last column).
#
# Here the spurious cue is a 4 x 4 mark in the background, away from the object, whose
# colour names the class: red for a circle, green for a square, blue for a triangle,
# yellow for a cross. The shape is still there and still decides the true label; the mark
# is simply the easier rule. Three test sets of the same fresh shapes:
#
#     "as trained"  the mark's colour is the class's, as in the biased training set
#     "swapped"     the mark's colour is another class's: who wins, shape or mark?
#     "no mark"     the plain shapes
#
# A model that reads the mark is right on "as trained" and follows the mark on "swapped".

# %%
SIZE, SIDE = 32, 4  # lesson 03's image size; the mark's side in pixels
PALETTE = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)


def add_mark(data, colour, seed):
    """``data.images`` with a SIDE x SIDE mark of PALETTE[colour[n]] in image n, placed at
    random at least 2 pixels from the object; returns (images, mark masks (N, H, W))."""
    rng = C.rng(seed)
    marks = np.zeros((len(data.images), SIZE, SIZE), dtype=bool)
    for n, obj in enumerate(data.masks):
        while True:  # rejection sampling: the objects cover well under half the image
            r, c = rng.integers(0, SIZE - SIDE + 1, 2)
            if not obj[max(r - 2, 0):r + SIDE + 2, max(c - 2, 0):c + SIDE + 2].any():
                break
        marks[n, r:r + SIDE, c:c + SIDE] = True
    images = np.where(marks[:, None], PALETTE[colour][:, :, None, None], data.images)
    return images.astype(np.float32), marks


n_train, n_test = C.pick(4000, 512), C.pick(400, 64)
train_set = make_shapes(n_train, seed=1, size=SIZE)
test = make_shapes(n_test, seed=2, size=SIZE)  # fresh shapes
other = (test.labels + C.rng(3).integers(1, 4, n_test)) % 4  # a different class, at random
x_biased, _ = add_mark(train_set, train_set.labels, seed=4)  # colour = class: 100% biased
x_fair, _ = add_mark(train_set, C.rng(5).integers(0, 4, n_train), seed=4)  # colour at random
tests = {"as trained": add_mark(test, test.labels, seed=6),
         "swapped": add_mark(test, other, seed=6),
         "no mark": (test.images, np.zeros_like(test.masks))}
print("train", x_biased.shape, " test", tests["swapped"][0].shape)
# prints: train (4000, 3, 32, 32)  test (400, 3, 32, 32)

# %% [markdown]
# ## 2. Train on the biased set
#
# Lesson 03's GAP network (three conv blocks, 32 x 32 input, `relu3` is 8 x 8), Adam, two
# epochs: enough for the mark, not for the shapes.

# %%
def shapes_net(seed=0):
    """Lesson 03's network: 3 x (conv 3x3, batch norm, ReLU), two max-pools, GAP, linear."""
    rng = np.random.default_rng(seed)

    def block(i, c_in, c_out):
        return [(f"conv{i}", L.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng)),
                (f"bn{i}", L.BatchNorm2d(c_out)), (f"relu{i}", L.ReLU())]

    return Sequential(block(1, 3, 16) + [("pool1", L.MaxPool2d(2))] + block(2, 16, 32)
                      + [("pool2", L.MaxPool2d(2))] + block(3, 32, 32)
                      + [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(32, 4, rng=rng))],
                      class_names=CLASSES)


def fit(x, epochs):
    """A fresh network trained on (x, the true labels); batch norm statistics refreshed."""
    model = shapes_net()
    train.fit(model, optim.Adam(model, lr=3e-3), x, train_set.labels, epochs=epochs,
              batch_size=32, seed=0, progress=False)
    train.update_bn(model, x)
    return model.eval()


def report(model, name):
    """Accuracy on each test set, and how often 'swapped' predictions follow the mark."""
    pred = {k: model(xk).argmax(axis=1) for k, (xk, _) in tests.items()}
    acc = {k: float(np.mean(p == test.labels)) for k, p in pred.items()}
    follows = float(np.mean(pred["swapped"] == other))
    print(f"{name:14s} accuracy: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items())
          + f"; follows the mark when swapped: {follows:.2f}")
    return acc, follows


biased = fit(x_biased, epochs=C.pick(2, 1))
acc_b, follows_b = report(biased, "biased model")
# prints (full mode): biased model   accuracy: as trained 0.97, swapped 0.12, no mark 0.46;
# follows the mark when swapped: 0.81

# %% [markdown]
# On a test set drawn like its training data the biased model looks excellent (0.97). Only a
# test set that breaks the correlation shows the problem, and only if you think of building
# it: you must already suspect the cue. Grad-CAM needs no such test set.
#
# ## 3. Ask Grad-CAM where it looks
#
# Grad-CAM for the predicted class at `relu3` (the last conv layer), on the "as trained"
# test images, where every prediction looks right. Lesson 08's pointing game counts an
# image when the map's maximum lies on a region (within 1 pixel): on the mark, or on the
# object.

# %%
def pointing(model, key):
    """Pointing game of Grad-CAM (predicted class) at the mark and at the object."""
    xk, marks = tests[key]
    r = gradcam.grad_cam(model, xk, model(xk).argmax(axis=1))
    return (float(pointing_game(r.heatmap, marks, 1.0).mean()),
            float(pointing_game(r.heatmap, test.masks, 1.0).mean()), r)


at_mark_b, at_object_b, maps_b = pointing(biased, "as trained")
print(f"biased model, 'as trained' images: the map's peak is on the mark in {at_mark_b:.0%}, "
      f"on the object in {at_object_b:.0%}")
# prints (full mode): biased model, 'as trained' images: the map's peak is on the mark in
# 73%, on the object in 4%
if not C.SMOKE:  # two short epochs on 512 images need not learn the mark
    C.expect("the biased model follows the mark", follows_b > 0.5)
    C.expect("Grad-CAM points at the mark more often than at the object",
             at_mark_b > at_object_b + 0.3)

# %% [markdown]
# The map points at a 16-pixel mark, not at the object. That is the paper's finding in
# miniature: the explanation of a correct prediction exposes a wrong reason.
#
# ## 4. Remove the bias and retrain
#
# The paper rebalanced its training set. Here the marks stay, but their colours are drawn at
# random, so they carry no information about the class. The same images otherwise, the same
# network; six epochs, because shapes are harder to learn than a colour.

# %%
fair = fit(x_fair, epochs=C.pick(6, 1))
acc_f, follows_f = report(fair, "unbiased model")
at_mark_f, at_object_f, maps_f = pointing(fair, "as trained")
print(f"unbiased model, 'as trained' images: the map's peak is on the mark in {at_mark_f:.0%}, "
      f"on the object in {at_object_f:.0%}")
# prints (full mode): unbiased model accuracy: as trained 0.89, swapped 0.92, no mark 0.93;
# follows the mark when swapped: 0.01. The map's peak is on the mark in 0%, on the object
# in 69%.
if not C.SMOKE:
    C.expect("the unbiased model ignores the mark", follows_f < 0.15 and acc_f["swapped"] > 0.8)
    C.expect("the map moved from the mark to the object",
             at_mark_f < 0.1 and at_object_f > at_object_b + 0.3)

# %% [markdown]
# ## 5. Pictures
#
# `13_biased_data.png`: eight biased training images, two per class; the mark's colour
# names the class.
#
# `13_bias_maps.png`: test images (the first two "as trained", then the first two "swapped"
# ones where the biased model follows the mark, as it does in 81% of them), Grad-CAM of the
# biased and of the unbiased model for the class each predicts; the mark outlined in white.
#
# `13_bias_numbers.png`: accuracy on the three test sets, and where the map's peak falls,
# for both models.

# %%
fig = C.figure(10, 2.8)
axes = fig.subplots(2, 4)
for j, ax in enumerate(axes.flat):
    k = int(np.flatnonzero(train_set.labels == j % 4)[j // 4])
    C.im(ax, x_biased[k], CLASSES[train_set.labels[k]])
C.save(fig, "13_biased_data.png")

# %%
fooled = np.flatnonzero(biased(tests["swapped"][0]).argmax(axis=1) == other)
picks = [("as trained", 0), ("as trained", 1)] + [("swapped", int(n)) for n in fooled[:2]]
maps_swapped = {m: gradcam.grad_cam(mod, tests["swapped"][0],
                                    mod(tests["swapped"][0]).argmax(axis=1)).heatmap
                for m, mod in (("biased", biased), ("unbiased", fair))}
fig = C.figure(7.2, 2.3 * len(picks))
axes = fig.subplots(len(picks), 3)
for row, (key, n) in enumerate(picks):
    xk, marks = tests[key]
    img = viz.chw_to_rgb(xk[n])
    mark_class = test.labels[n] if key == "as trained" else other[n]
    C.im(axes[row, 0], img, "test image" if row == 0 else None)
    axes[row, 0].set_ylabel(f"{key}\n{CLASSES[test.labels[n]]}, mark says "
                            f"{CLASSES[mark_class]}", fontsize=8)
    for col, (name, model) in enumerate((("biased", biased), ("unbiased", fair)), start=1):
        heat = (maps_b if name == "biased" else maps_f).heatmap if key == "as trained" \
            else maps_swapped[name]
        pred = CLASSES[int(model(xk[n:n + 1]).argmax())]
        ax = C.im(axes[row, col], viz.overlay(img, heat[n]), f"{name} model: '{pred}'")
        ax.contour(marks[n], levels=[0.5], colors="white", linewidths=0.8)
C.save(fig, "13_bias_maps.png")

# %%
fig = C.figure(10, 3.3)
ax1, ax2 = fig.subplots(1, 2)
keys = list(tests)
for i, (name, acc) in enumerate((("biased", acc_b), ("unbiased", acc_f))):
    ax1.bar(np.arange(3) + 0.38 * i, [acc[k] for k in keys], width=0.38, label=name)
ax1.set_xticks(np.arange(3) + 0.19, keys)
ax1.axhline(0.25, color="gray", ls="--", lw=1, label="chance")
ax1.set(ylim=(0, 1.2), ylabel="accuracy", title="accuracy on the three test sets")
ax1.legend(fontsize=8, ncol=3, loc="upper center")
for i, vals in enumerate(((at_mark_b, at_object_b), (at_mark_f, at_object_f))):
    ax2.bar(np.arange(2) + 0.38 * i, vals, width=0.38, label=("biased", "unbiased")[i])
ax2.set_xticks(np.arange(2) + 0.19, ["on the mark", "on the object"])
ax2.set(ylim=(0, 1.2), ylabel="share of images", title="Grad-CAM's peak ('as trained' images)")
ax2.legend(fontsize=8, ncol=2, loc="upper center")
C.save(fig, "13_bias_numbers.png")

# %% [markdown]
# **What you should see.** In `13_biased_data.png` each class carries its mark: red dots with
# circles, green with squares, blue with triangles, yellow with crosses. In
# `13_bias_maps.png` the biased model's maps sit on the outlined mark in every row, also in
# the first two, where its prediction is right; on the swapped images it names the mark's
# class (a cross for a triangle with a yellow mark, a circle for a cross with a red one).
# The unbiased model ignores the marks: its maps sit on the shape or hug it (for the
# triangle, along its left side and the background beyond), and its predictions follow the
# shape. In `13_bias_numbers.png` the biased model is near perfect "as trained", far below
# chance "swapped" and poor on "no mark"; the unbiased model is about as good on all three,
# and its peaks moved from the mark to the object.
#
# **Questions.**
# 1. The biased model scores 0.96 on a held-out test set. Why does that test set not reveal
#    the bias, and what kind of test set would have?
# 2. Why did the mark win over the shape in training, although both predict the label
#    perfectly? What would you expect if only 80% of the marks matched the class?
# 3. The unbiased training set still has marks, with random colours. Why is that a better
#    control than removing the marks altogether?
