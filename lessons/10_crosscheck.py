# %% [markdown]
# # Lesson 10: cross-checking a PyTorch Grad-CAM against this reference
#
# **Goal.** Write Grad-CAM in PyTorch for the same network and weights and agree with the
# reference to round-off; then learn why published heatmaps differ, and let a tool name it.
#
# Run it: `python lessons/10_crosscheck.py` (about 3 s; `SMOKE=1` is the same run). Needs
# PyTorch (CPU is enough); uses Captum where it is installed. Figures:
# `10_torch_vs_minicnn.png`, `10_conventions.png`.
#
# Code: `gradcam/conventions.py` (one function per published pipeline), `gradcam/compare.py`
# (`compare`: which convention does a map follow?), `docs/crosscheck.md` (the full tables).

# %%
import copy

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
from gradcam import conventions, viz
from gradcam.compare import compare
from minicnn import zoo
from minicnn.data import make_scenes
from minicnn.gradcheck import rel_error

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    raise SystemExit("lesson 10 needs PyTorch: pip install torch (CPU is enough)") from None

# %% [markdown]
# ## 1. The same network in PyTorch
#
# `zoo.shapes_cnn` uses PyTorch's layouts and names, so a plain `nn.Sequential` with the
# same names takes its weights key for key, strictly (torch's BatchNorm also keeps a step
# counter, `num_batches_tracked`; it tolerates its absence). Everything runs in float64, so
# that any difference larger than about 1e-15 is a real one.

# %%
ours = zoo.shapes_cnn(pretrained=True).astype("float64")


def block(i, c_in, c_out):
    return [(f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(c_out)), (f"relu{i}", nn.ReLU())]


layers = (block(1, 3, 16) + [("pool1", nn.MaxPool2d(2))] + block(2, 16, 32)
          + [("pool2", nn.MaxPool2d(2))] + block(3, 32, 64) + block(4, 64, 64)
          + [("pool4", nn.MaxPool2d(8)), ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.3)),
             ("fc", nn.Linear(256, 4))])
net = nn.Sequential()
for name, module in layers:
    net.add_module(name, module)
net = net.double()
net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
net.eval()
print(f"{len(ours.state_dict())} arrays loaded into torch, e.g. bn4.running_var "
      f"{tuple(net.bn4.running_var.shape)}")
# prints: 22 arrays loaded into torch, e.g. bn4.running_var (64,)

scenes = make_scenes(4, seed=7)
x = scenes.images.astype(np.float64)
c = scenes.labels[:, 0]
xt = torch.from_numpy(x)
C.check("logits, torch vs minicnn, relative error", rel_error(net(xt).detach().numpy(), ours(x)),
        about=1e-16, below=1e-12)
# prints: 1.6e-16

# %% [markdown]
# ## 2. Grad-CAM in PyTorch, with a hook
#
# A forward hook keeps the output A of `relu4` and asks autograd to keep its gradient;
# one backward of sum_n y^{c_n} then fills A.grad with dy^c/dA for every image. The rest is
# Eqs. (1)-(2) and this project's post-processing (docs/design.md): bilinear with half-pixel centres
# (`align_corners=False`) and division by the per-image maximum.

# %%
def torch_grad_cam(net, x, c, layer="relu4", align_corners=False, norm="max", model_mode="eval"):
    """Grad-CAM in PyTorch: what a user typically writes. Returns A, dA, alpha, coarse, heatmap."""
    getattr(net, model_mode)()
    store = {}

    def hook(module, inputs, output):
        output.retain_grad()
        store["A"] = output

    handle = getattr(net, layer).register_forward_hook(hook)
    try:
        y = net(x)
        y[torch.arange(len(c)), torch.as_tensor(c)].sum().backward()
    finally:
        handle.remove()
        net.eval()
    A, dA = store["A"], store["A"].grad
    alpha = dA.mean(dim=(2, 3))  # Eq. (1)
    coarse = F.relu((alpha[:, :, None, None] * A).sum(dim=1))  # Eq. (2)
    heat = F.interpolate(coarse[:, None], size=x.shape[-2:], mode="bilinear",
                         align_corners=align_corners)[:, 0]
    if norm == "max":
        heat = heat / heat.amax(dim=(1, 2), keepdim=True).clamp_min(1e-300)
    else:  # min-max, as pytorch-grad-cam and tf-keras-vis do
        lo, hi = heat.amin(dim=(1, 2), keepdim=True), heat.amax(dim=(1, 2), keepdim=True)
        heat = (heat - lo) / (hi - lo + 1e-7)
    return [t.detach().numpy() for t in (A, dA, alpha, coarse, heat)]


tA, tdA, talpha, tcoarse, theat = torch_grad_cam(net, xt, c)
r = gradcam.grad_cam(ours, x, c)
for name, a, b in (("A", tA, r.activations), ("dy^c/dA", tdA, r.gradients),
                   ("alpha", talpha, r.weights), ("coarse", tcoarse, r.coarse),
                   ("heatmap", theat, r.heatmap)):
    print(f"  {name:8s} relative error {rel_error(a, b):.1e}")
C.check("worst, torch vs minicnn", max(rel_error(tA, r.activations), rel_error(tdA, r.gradients),
                                       rel_error(theat, r.heatmap)), about=1e-16, below=1e-12)
# prints: A 4.5e-16, dy^c/dA 0.0e+00, alpha 0.0e+00, coarse 3.0e-16, heatmap 3.9e-16
# (dy^c/dA is exactly equal: both sides route the same float64 numbers through the same
# max-pool choices and one dense layer)

# %% [markdown]
# ## 3. Why your heatmap differs from mine
#
# When a PyTorch Grad-CAM disagrees with this one, it is rarely the math. It is one of a
# handful of choices that Eqs. (1)-(2) leave open, or the model's mode:
#
# - **the model's mode.** Forgetting `eval()` runs batch norm on the batch's statistics and
#   drops 30% of the head's inputs at random: another function, another map. Worse, a
#   train-mode forward also *overwrites* batch norm's running statistics, so every later
#   map from that model is wrong too (we run it on a copy);
# - **upsampling.** bilinear with half-pixel centres (PyTorch's default, OpenCV, Pillow) or
#   corner-aligned (`align_corners=True`; scipy's `zoom`, Torch7), or nearest (Captum);
# - **normalisation.** / max, min-max (pytorch-grad-cam, tf-keras-vis) or none (Captum);
# - **the ReLU.** Captum's `LayerGradCam` returns the signed map unless asked;
# - **alpha.** the original Lua code SUMMED the gradients: Z = u*v times our alpha.
#
# Each is one argument of `torch_grad_cam` above; here is how far each moves the map:

# %%
torch.manual_seed(0)
variants = {
    "forgot eval() (train mode)": torch_grad_cam(copy.deepcopy(net), xt, c, model_mode="train")[4],
    "align_corners=True": torch_grad_cam(net, xt, c, align_corners=True)[4],
    "min-max normalisation": torch_grad_cam(net, xt, c, norm="minmax")[4],
}
for name, heat in variants.items():
    print(f"  {name:28s} max |difference| from ours {np.abs(heat - r.heatmap).max():.3f}")
# prints: forgot eval() 0.158, align_corners=True 0.228, min-max normalisation 0.000.
# Min-max and / max agree whenever a map's minimum is 0, which after the ReLU is common: so
# here all four maps (a tool cannot tell those two conventions apart on such a map)

# %% [markdown]
# `gradcam.conventions` writes each published pipeline as one function of our A and dA.
# Each states its choices (`describe`) and cites its source in its docstring:

# %%
C.show(conventions.pytorch_grad_cam)
for name, fn in conventions.PRESETS.items():
    print(f"  {name:17s} {conventions.describe(fn.spec)}")
tfkv = conventions.apply("tf-keras-vis", r.activations, r.gradients, size=(64, 64))
mine = torch_grad_cam(net, xt, c, align_corners=True, norm="minmax")[4]
C.check("torch (corner-aligned, min-max) vs the tf-keras-vis preset, max |difference|",
        float(np.abs(mine - tfkv).max()), about=1e-16, below=1e-9)
# prints: 6.7e-16: our torch variant IS the tf-keras-vis pipeline

# %% [markdown]
# Where Captum is installed, its `LayerGradCam` (defaults: no ReLU; its docs upsample with
# `LayerAttribution.interpolate`, nearest) is the `captum` preset:

# %%
try:
    from captum.attr import LayerAttribution, LayerGradCam
except ImportError:
    print("Captum is not installed; skipping (pip install captum)")
else:
    attr = LayerGradCam(net, net.relu4).attribute(xt, target=torch.as_tensor(c))
    captum_map = LayerAttribution.interpolate(attr, (64, 64))[:, 0].detach().numpy()
    preset = conventions.apply("captum", r.activations, r.gradients, size=(64, 64))
    C.check("Captum LayerGradCam vs the captum preset, relative error",
            rel_error(captum_map, preset), about=1e-16, below=1e-12)
    # prints: 3.0e-16

# %% [markdown]
# ## 4. Let a tool name the convention
#
# `gradcam.compare.compare(user_map, model, x, target, layer)` evaluates every preset on our
# A and dA, fits the user's map up to a * map + b over the structural choices (layer, ReLU,
# upsampling) and names the difference in one line. Status 0: the map is ours; 1: another
# convention, named; 2: nothing matches.

# %%
for label, user_map in (("our own heatmap", r.heatmap[0]),
                        ("torch, align_corners=True + min-max", mine[0]),
                        ("torch, forgot eval()", variants["forgot eval() (train mode)"][0])):
    result = compare(user_map, ours, x[:1], int(c[0]), "relu4")
    print(f"{label}: status {result.status}; closest: {result.closest}")
    print(f"    diagnosis: {result.diagnosis}")
C.expect("our own map is recognised", compare(r.heatmap[0], ours, x[:1], int(c[0])).status == 0)
# prints:
# our own heatmap: status 0; closest: minicnn (also pytorch-grad-cam: identical on this map)
#     diagnosis: matches minicnn's reference (alpha = mean of gradients, ReLU, half-pixel
#     bilinear, / max)
# torch, align_corners=True + min-max: status 1; closest: tf-keras-vis
#     diagnosis: follows tf-keras-vis (alpha = mean of gradients, ReLU, corner-aligned
#     bilinear, min-max normalised): matches minicnn except: corner-aligned bilinear
#     (align_corners=True)
# torch, forgot eval(): status 2; closest: minicnn
#     diagnosis: no convention matches (best correlation 0.995, with minicnn); check the
#     target, the layer, the input preprocessing and the weights
# A wrong model state is not a convention: the tool says so instead of guessing one.

# %% [markdown]
# ## 5. Pictures
#
# `10_torch_vs_minicnn.png`: for the four scenes, our heatmap, the PyTorch one, their
# difference (black: about 1e-16), and the PyTorch map with `eval()` forgotten.
#
# `10_conventions.png`: the first scene explained under every preset, each on its own
# colour scale (Captum's signed map on a red-blue scale).

# %%
forgot = variants["forgot eval() (train mode)"]
fig = C.figure(11.6, 2.4 * len(x))
axes = fig.subplots(len(x), 5, squeeze=False)
for i in range(len(x)):
    img = viz.chw_to_rgb(x[i])
    cells = [(img, "scene"), (viz.overlay(img, r.heatmap[i]), "minicnn"),
             (viz.overlay(img, theat[i]), "PyTorch (hooks)")]
    for j, (cell, title) in enumerate(cells):
        C.im(axes[i, j], cell, title if i == 0 else None)
    diff = np.abs(theat[i] - r.heatmap[i])
    C.colorbar(C.im(axes[i, 3], diff, "|difference|" if i == 0 else None, cmap="magma", vmin=0,
                    vmax=1), ticks=[0, 0.5, 1])
    axes[i, 3].set_xlabel(f"max {diff.max():.1e}", fontsize=8)
    C.im(axes[i, 4], viz.overlay(img, np.clip(forgot[i], 0, 1)),
         "PyTorch, forgot eval()" if i == 0 else None)
    axes[i, 0].set_ylabel(f"class '{ours.class_names[c[i]]}'", fontsize=9)
C.save(fig, "10_torch_vs_minicnn.png")

# %%
names = list(conventions.PRESETS)
fig = C.figure(2.8 * 4, 2.5 * 2)
axes = fig.subplots(2, 4)
for ax, name in zip(axes.flat, names):
    m = conventions.apply(name, r.activations[:1], r.gradients[:1], size=(64, 64))[0]
    if name == "captum":
        lim = np.abs(m).max()
        C.colorbar(C.im(ax, m, name, cmap="RdBu_r", vmin=-lim, vmax=lim))
    else:
        C.colorbar(C.im(ax, m, name, cmap="jet"))
    ax.set_xlabel(f"{m.shape[0]}x{m.shape[1]}, range {np.nanmin(m):.3g}..{np.nanmax(m):.3g}",
                  fontsize=7)
C.save(fig, "10_conventions.png")

# %% [markdown]
# **What you should see.** In `10_torch_vs_minicnn.png` the minicnn and PyTorch columns are
# the same picture and the difference is black (a few 1e-16 at most, in the titles). The last
# column, the same PyTorch code in train mode, looks similar at a glance: the same blobs, with
# changed shapes and a different tint over the background (up to 0.16 apart); similar
# enough to go unnoticed, which is what makes the mistake dangerous. In
# `10_conventions.png` the presets share one blob on the cross but differ in resolution
# (`minicnn-coarse` and `keras-tutorial`: the 16 x 16 map itself), blockiness (nearest
# upsampling in `captum` and `captum-relu`), sign (the signed `captum` map, range -0.023 to
# 0.282, pale blue where features lower the score) and scale (`grad-cam-lua` peaks at 67.4
# against the coarse map's 0.282: summed gradients, Z = 256 times ours, and corner-aligned
# upsampling moves the peak a little).
#
# **Questions.**
# 1. Forgetting `eval()` changed the map only a little here. Which layers behave differently
#    in train mode, and for which networks would the difference be large?
# 2. `grad-cam-lua` peaks at 67.4, the coarse map at 0.282. Which two conventions account for
#    the factor, and why do they not change where the map is hot?
# 3. Two libraries agree to 1e-16 on the coarse map but not on the heatmap. Where do you look
#    first?
