# %% [markdown]
# # Lesson 03: training the mini CNN on shapes
#
# **Goal.** Put lessons 01-02 to work: generate the synthetic shapes data, train a small CNN
# with global average pooling from scratch, and look at what it learned.
#
# Run it: `python lessons/03_training.py` (about 25 s on 2 idle cores, 2-3 minutes on a
# busy machine; `SMOKE=1` about 3 s, which trains on too few images to learn anything).
# Figures: `03_shapes_data.png`, `03_training.png`, `03_learned.png`.
#
# Code used: `minicnn/data.py` (`make_shapes`), `minicnn/train.py` (`fit`, `model_accuracy`),
# `minicnn/optim.py` (`Adam`), `minicnn/zoo/__init__.py` (the shipped models).

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
import minicnn
from minicnn import Sequential, zoo
from minicnn import layers as L
from minicnn import losses, optim, train
from minicnn.data import CLASSES, make_shapes

# %% [markdown]
# ## 1. The data
#
# `make_shapes` draws one coloured object per image (circle, square, triangle or cross) on a
# textured, noisy background, with its pixel mask and bounding box (the ground truth for
# lesson 08). The colour is random and independent of the class, so a model has to look at
# the outline. No download: a seed gives bit-identical images. We train at 32 x 32 pixels
# (the shipped models use 64 x 64) so that training takes well under a minute.

# %%
SIZE = 32
n_train, epochs = C.pick(4000, 256), C.pick(8, 1)
data = make_shapes(n_train, seed=1, size=SIZE)
val = make_shapes(C.pick(1000, 128), seed=2, size=SIZE)  # a different seed: fresh images
print("train:", data.images.shape, data.images.dtype, " per class:", np.bincount(data.labels))
# prints: train: (4000, 3, 32, 32) float32  per class: [1000 1000 1000 1000]

fig = C.figure(10, 3.2)
axes = fig.subplots(2, 8)
for j in range(8):
    k = int(np.flatnonzero(data.labels == j % 4)[j // 4])  # two of each class
    C.im(axes[0, j], data.images[k], CLASSES[data.labels[k]])
    C.im(axes[1, j], data.masks[k], "mask", cmap="gray")
C.save(fig, "03_shapes_data.png")

# %% [markdown]
# ## 2. The model
#
# Three conv blocks (conv, batch norm, ReLU; max-pool after the first two), then global
# average pooling and one linear layer: the CAM architecture of lesson 04, a smaller
# version of `zoo.shapes_gap`. Batch norm (normalise each channel over the batch, then
# scale and shift) makes such a small net train in a few epochs; in eval mode it is a fixed
# per-channel affine map.
#
# Before training, the logits are small and nearly equal, so the loss should be close to
# ln 4 = 1.386 (lesson 02, Eq. 2.6). A clearly larger start means a bad initialisation.

# %%
rng = np.random.default_rng(0)


def block(i, c_in, c_out):
    return [(f"conv{i}", L.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng)),
            (f"bn{i}", L.BatchNorm2d(c_out)), (f"relu{i}", L.ReLU())]


model = Sequential(block(1, 3, 16) + [("pool1", L.MaxPool2d(2))]
                   + block(2, 16, 32) + [("pool2", L.MaxPool2d(2))]
                   + block(3, 32, 32)
                   + [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(32, 4, rng=rng))],
                   class_names=CLASSES)
print(model)
loss0, _ = losses.softmax_cross_entropy(model.eval()(val.images), val.labels)
print(f"loss before training: {loss0:.3f}   (ln 4 = {np.log(4):.3f})")
# prints: loss before training: 1.433   (ln 4 = 1.386)
C.expect("the untrained loss is near ln 4", abs(loss0 - np.log(4)) < 0.1)

# %% [markdown]
# ## 3. Training
#
# One step is the chain of lesson 02 plus an optimiser update; `fit` runs it over shuffled
# mini-batches, epoch after epoch, seeded so that every run is the same:

# %%
print(train.__doc__.split("Reproducibility")[0].strip())
C.show(optim.Adam._update)

# %% [markdown]
# Adam (Kingma & Ba) keeps running means of each parameter's gradient and squared gradient
# and scales every step by their ratio, so every parameter moves by about `lr` per step
# whatever the size of its gradient.

# %%
opt = optim.Adam(model, lr=3e-3)
history = train.fit(model, opt, data.images, data.labels, epochs=epochs, batch_size=32, seed=0,
                    val=(val.images, val.labels))
acc = train.model_accuracy(model, val.images, val.labels)
print(f"validation accuracy after {epochs} epochs: {acc:.3f}")
# prints (full mode; the seconds vary):
# epoch 1/8  loss 1.3667  acc 0.3177  val_acc 0.2950
# epoch 2/8  loss 1.1563  acc 0.5075  val_acc 0.6220
# epoch 3/8  loss 0.6652  acc 0.7698  val_acc 0.8250
# epoch 4/8  loss 0.4157  acc 0.8630  val_acc 0.7840
# epoch 5/8  loss 0.3066  acc 0.9008  val_acc 0.7170
# epoch 6/8  loss 0.2404  acc 0.9273  val_acc 0.9050
# epoch 7/8  loss 0.1968  acc 0.9373  val_acc 0.9140
# epoch 8/8  loss 0.1545  acc 0.9520  val_acc 0.9400
# validation accuracy after 8 epochs: 0.940
#
# The seeds fix the data, the initial weights and the batches, but not the last digits:
# float32 training amplifies round-off, and the order in which a convolution adds up its
# products depends on the machine's BLAS and on the conv algorithm. Another machine (or
# another version of the kernels in `minicnn/kernels/`) gives the same curve to within about a
# percent (we have seen 0.930, 0.932, 0.938 and 0.940 for the last line).
if not C.SMOKE:
    C.expect("the model learned the shapes (validation accuracy > 0.8)", acc > 0.8)

# %% [markdown]
# ## 4. Batch norm's running statistics
#
# Look at the two accuracy columns: the training accuracy climbs steadily, the validation
# accuracy jumps (down to 0.72 at epoch 5, then up again). Both come from the same weights;
# the difference is batch norm's mode. In training each BatchNorm2d normalises with the
# statistics of the current batch; in eval mode it uses running averages that it updated
# after every batch, running = 0.9 * running + 0.1 * batch statistic. So the running
# statistics mix the last ~10 batches, taken while the weights were still moving under a
# constant learning rate: they lag the final weights, and sometimes by enough to cost many
# points. `train.update_bn` ("precise BN") recomputes them for the final weights, over the
# whole training set, changing nothing else; `minicnn.zoo.train_shapes` does this as its
# last step.

# %%
C.show(train.update_bn)
train.update_bn(model, data.images)
acc_bn = train.model_accuracy(model, val.images, val.labels)
print(f"validation accuracy with running statistics {acc:.3f}, after update_bn {acc_bn:.3f}")
# prints: validation accuracy with running statistics 0.940, after update_bn 0.957
if not C.SMOKE:
    C.expect("update_bn did not lose accuracy", acc_bn >= acc - 0.01)

# %% [markdown]
# The shipped model `zoo.shapes_gap` was trained the same way (`python -m
# minicnn.zoo.train_shapes`: 8000 images of 64 x 64, 5 epochs, under 3 minutes). Lessons
# 04-08 use it and its twin `zoo.shapes_cnn`, so they need no training. Its accuracy on
# fresh 64 x 64 shapes:

# %%
shipped = zoo.shapes_gap(pretrained=True)
fresh = make_shapes(C.pick(1000, 64), seed=2)
acc_shipped = train.model_accuracy(shipped, fresh.images, fresh.labels)
print(f"zoo.shapes_gap accuracy on fresh 64x64 shapes: {acc_shipped:.3f}")
# prints: zoo.shapes_gap accuracy on fresh 64x64 shapes: 0.997

# %% [markdown]
# Weights are saved as `.npz` (no pickles) with the architecture beside them, so
# `minicnn.load` rebuilds the model; the reloaded model gives identical logits.

# %%
path = C.OUT / "03_model.npz"
model.save(path)
again = minicnn.load(path)
C.expect("the reloaded model computes the same logits",
         np.array_equal(again(val.images[:8]), model.eval()(val.images[:8])))
print("saved and reloaded", path.name)

# %% [markdown]
# ## 5. Pictures
#
# `03_training.png`: training loss, training accuracy and validation accuracy per epoch.
# `03_learned.png`: what the first layer computes (the 16 `relu1` maps of one validation
# image; a 3 x 3 filter itself is too small to read) and the confusion matrix on the
# validation images.

# %%
ep = np.arange(1, epochs + 1)
fig = C.figure(9, 3.2)
ax1, ax2 = fig.subplots(1, 2)
ax1.plot(ep, history.loss, "o-")
ax1.axhline(np.log(4), color="gray", ls="--", label="ln 4 (chance)")
ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
ax1.legend()
ax2.plot(ep, history.acc, "o-", label="train (during the epoch)")
ax2.plot(ep, history.val_acc, "s-", label="validation")
ax2.axhline(0.25, color="gray", ls="--", label="chance")
ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
ax2.legend()
C.save(fig, "03_training.png")

# %%
pred = model.eval()(val.images, keep=["relu1"]).argmax(axis=1)
relu1 = model.activations["relu1"]  # (N, 16, 32, 32)
k_img = int(np.flatnonzero(val.labels == 3)[0])  # a cross
confusion = np.zeros((4, 4), dtype=int)
np.add.at(confusion, (val.labels, pred), 1)
print("confusion (rows: true, columns: predicted):\n", confusion)

fig = C.figure(12, 4.2)
sub = fig.subfigures(1, 3, width_ratios=[0.8, 1.4, 1.1])
C.im(sub[0].subplots(), val.images[k_img], f"validation image {k_img}")
axes = sub[1].subplots(4, 4)
for f, ax in enumerate(axes.flat):
    C.im(ax, relu1[k_img, f], cmap="viridis")
    ax.set_title(f"ch {f}", fontsize=7)
sub[1].suptitle("its 16 relu1 maps (32x32)", fontsize=10)
ax = sub[2].subplots()
ax.imshow(confusion, cmap="Blues")
for (i, j), v in np.ndenumerate(confusion):
    colour = "white" if v > confusion.max() / 2 else "k"
    ax.text(j, i, str(v), ha="center", va="center", color=colour)
ax.set_xticks(range(4), CLASSES, rotation=30)
ax.set_yticks(range(4), CLASSES)
ax.set(xlabel="predicted", ylabel="true")
ax.set_title(f"validation after update_bn\naccuracy {acc_bn:.3f}", fontsize=10)  # fits its panel
C.save(fig, "03_learned.png")

# %% [markdown]
# **What you should see.** The loss falls from about ln 4 to about 0.15 in 8 epochs and the
# validation accuracy climbs to about 0.94 (its path is bumpy, with a dip to 0.72 at epoch
# 5: batch norm's running statistics lag behind the weights). The `relu1` maps are colour
# and edge detectors: some light up the whole cross, some only parts of its edges, some the
# background texture or the image border. The confusion matrix counts the predictions after
# `update_bn` (accuracy 0.957, in its title). It is mostly diagonal; triangles are missed most
# (called circles, squares or crosses), and a few crosses are called triangles (full mode:
# 242/250 circles, 243/250 squares, 229/250 triangles, 243/250 crosses right).
#
# **Questions.**
# 1. Validation accuracy dipped at epoch 5 while training accuracy kept rising. What did
#    `update_bn` change, and why did that fix the dip without any new training?
# 2. The classes are balanced and the colours random. What would the network learn if every
#    cross were red, and how would you find out? (Lesson 13.)
# 3. The untrained loss is near ln 4. Why is that the expected value, and what would a loss of
#    3 at the start tell you?
#
# **Next:** lesson 04 asks the trained GAP network *where* it looked: CAM.
