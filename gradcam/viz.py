"""Pictures of explanations: colour maps, overlays, pixel-space maps and the paper's Figure 1.

Selvaraju et al., "Grad-CAM", arXiv:1610.02391v4, Fig. 1: for one image and two classes, the
Grad-CAM heatmap over the image, Guided Backpropagation, Guided Grad-CAM (their product) and the
counterfactual map. Drawing uses matplotlib's object API on the Agg canvas (``Figure`` +
``FigureCanvasAgg``; no pyplot, no display, safe in CI and threads). Arrays in, uint8 RGB or PNG
files out; every file is written atomically (``minicnn.io.atomic_write``).

    rgb   = colorize(heatmap)                       # (H, W) in [0, 1] -> (H, W, 3) uint8
    over  = overlay(image, heatmap, alpha=0.5)      # (1 - alpha) * image + alpha * colour
    grey  = to_uint8_gradient(guided)               # (C, H, W) signed map -> (H, W, 3) uint8
    panels = explain_figure1(model, x, image, targets=("circle", "square"))
    figure1(image, panels["rows"], "figure1.png")
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from minicnn.backend import to_numpy
from minicnn.io import atomic_write

from .core import grad_cam
from .guided import guided_backprop, guided_grad_cam
from .resize import resize

FIGURE1_COLUMNS = ("Original image", "Grad-CAM", "Guided Backprop", "Guided Grad-CAM",
                   "Counterfactual")
GRADIENT_STDS = 3.0  # to_uint8_gradient: this many RMS units of the map reach black / white
DPI = 100


# --------------------------------------------------------------------------- arrays
def get_cmap(name):
    """A matplotlib colormap by name; ValueError (listing a few names) if unknown."""
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; e.g. jet, viridis, inferno, turbo, gray "
                         f"(see matplotlib.colormaps)") from None


def colorize(heatmap, cmap="jet"):
    """Colour a map with values in [0, 1]: (H, W) -> (H, W, 3) uint8.

    rgb = round(255 * cmap(clip(heatmap, 0, 1))[..., :3])     (NaN is drawn as 0)
    """
    h = np.nan_to_num(np.asarray(to_numpy(heatmap), dtype=np.float64), nan=0.0)
    if h.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {h.shape}")
    rgba = get_cmap(cmap)(np.clip(h, 0.0, 1.0))  # (H, W, 4) floats in [0, 1]
    return np.rint(rgba[..., :3] * 255.0).astype(np.uint8)


def as_rgb(image):
    """An image as (H, W, 3) uint8: accepts (H, W, 3) or (H, W), uint8 or float in [0, 1].

    For a model input (1, C, H, W) / (C, H, W) use ``chw_to_rgb`` first.
    """
    a = np.asarray(to_numpy(image))
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W, 3) or (H, W), got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f":
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {a.dtype}")
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def chw_to_rgb(x):
    """A model input (1, C, H, W) or (C, H, W), C in {1, 3}, float in [0, 1] -> (H, W, 3) uint8."""
    a = np.asarray(to_numpy(x))
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"expected (1, C, H, W) or (C, H, W) with C in (1, 3), got {a.shape}")
    return as_rgb(a.transpose(1, 2, 0))


def overlay(image, heatmap, alpha=0.5, cmap="jet"):
    """Blend a coloured heatmap over an image: (H, W, 3) uint8.

    out = round((1 - alpha) * image + alpha * colorize(heatmap))     (both in 0..255)

    Parameters
    ----------
    image : (H, W, 3) or (H, W), uint8 or float in [0, 1]
    heatmap : (h, w) in [0, 1]; resized bilinearly (half-pixel centres) to (H, W) if its size
        differs, e.g. a 64 x 64 map over the original photo
    alpha : weight of the colour, in [0, 1]
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = as_rgb(image)
    h = np.asarray(to_numpy(heatmap), dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {h.shape}")
    if h.shape != img.shape[:2]:
        h = resize(h, img.shape[:2])
    out = (1.0 - alpha) * img.astype(np.float64) + alpha * colorize(h, cmap).astype(np.float64)
    return np.rint(out).astype(np.uint8)


def to_uint8_gradient(g):
    """Show a signed pixel-space map (guided backprop, gradient, ...): (C, H, W) -> (H, W, 3) uint8.

    out = 0.5 + 0.5 * clip(g / (3 * rms(g)), -1, 1),   rms(g) = sqrt(mean(g^2)) over all C, H, W

    NOTE: no mean is subtracted, so mid-grey (128) means exactly "no gradient" and the sign
    shows as lighter / darker; scaling by the RMS (not max|g|) keeps sparse maps visible (a few
    large values would make everything else grey). An all-zero map is uniformly mid-grey, never
    NaN. A 1-channel map is repeated to grey RGB.
    """
    a = np.asarray(to_numpy(g), dtype=np.float64)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) map with C in (1, 3), got shape {a.shape}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    rms = float(np.sqrt(np.mean(a * a)))
    z = a / (GRADIENT_STDS * rms) if rms > 0 else np.zeros_like(a)
    out = 0.5 + 0.5 * np.clip(z, -1.0, 1.0)
    return as_rgb(out.transpose(1, 2, 0))


# --------------------------------------------------------------------------- files
def save_png(fig_or_array, path, dpi=DPI):
    """Write a matplotlib Figure or an image array to ``path`` as PNG, atomically.

    A temp file in the same directory is written and then renamed (``minicnn.io.atomic_write``),
    so a failed or interrupted write leaves no partial PNG. Parent directories are created.
    Returns the absolute path (str).
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(fig_or_array, Figure):
        fig = fig_or_array
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    else:
        img = Image.fromarray(as_rgb(fig_or_array))
        atomic_write(path, lambda f: img.save(f, format="PNG"))
    return path


def _grid(cells, col_titles, row_labels, title=None, cell_inches=2.2):
    """A Figure with one image per cell; cells[r][c] is (H, W, 3) uint8 or (array, imshow kw)."""
    rows, cols = len(cells), len(col_titles)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows + (0.5 if title else 0.2)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax, cell = axes[r, c], cells[r][c]
            arr, kw = cell if isinstance(cell, tuple) else (cell, {})
            ax.imshow(arr, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def heatmap_grid(image, rows, col_titles, row_labels, path=None, title=None, alpha=0.5,
                 cmap="jet"):
    """[image | overlay of map 1 | overlay of map 2 | ...], one row per entry of ``rows``.

    Parameters
    ----------
    image : the image under every overlay (heatmaps of any size are resized to it)
    rows : list of lists of (h, w) heatmaps in [0, 1], one inner list per row
    col_titles : titles of the map columns (the image column is titled "Image")
    row_labels : one label per row
    Returns
    -------
    the absolute path written, or the Figure if path is None
    """
    img = as_rgb(image)
    cells = [[img] + [overlay(img, m, alpha, cmap) for m in maps] for maps in rows]
    fig = _grid(cells, ["Image"] + list(col_titles), list(row_labels), title)
    return fig if path is None else save_png(fig, path)


def row_label(name, prob=None):
    """'circle\\np = 0.91' (the text at the left of a figure row)."""
    return str(name) if prob is None else f"{name}\np = {prob:.2f}"


def figure1(image, panels, path=None, title=None, alpha=0.5, cmap="jet"):
    """The paper's Figure 1 layout: one row per class, five columns.

    [original | Grad-CAM overlay | Guided Backprop | Guided Grad-CAM | Counterfactual overlay]

    Parameters
    ----------
    image : (H, W, 3) or (H, W) uint8 or float [0, 1], the image shown (any size: heatmaps are
        resized to it)
    panels : list of dicts, one per row, with "label" (str), "gradcam" and "counterfactual"
        ((h, w) heatmaps in [0, 1]), "guided_backprop" and "guided_gradcam" ((C, h, w) maps);
        e.g. ``explain_figure1(...)["rows"]``
    path : where to write the PNG (atomically); None returns the Figure instead
    title : optional title above the grid
    alpha, cmap : as for ``overlay``
    Returns
    -------
    the absolute path written (str), or the Figure if path is None
    """
    img = as_rgb(image)
    need = ("label", "gradcam", "guided_backprop", "guided_gradcam", "counterfactual")
    cells, labels = [], []
    for i, p in enumerate(panels):
        missing = [k for k in need if k not in p]
        if missing:
            raise ValueError(f"figure1: panel row {i} lacks {missing}")
        cells.append([img, overlay(img, p["gradcam"], alpha, cmap),
                      to_uint8_gradient(p["guided_backprop"]),
                      to_uint8_gradient(p["guided_gradcam"]),
                      overlay(img, p["counterfactual"], alpha, cmap)])
        labels.append(p["label"])
    if not cells:
        raise ValueError("figure1: no panel rows given")
    fig = _grid(cells, FIGURE1_COLUMNS, labels, title)
    return fig if path is None else save_png(fig, path)


def cam_vs_gradcam(image, rows, path=None, title=None, alpha=0.5, cmap="jet"):
    """CAM and Grad-CAM side by side on a GAP model, with their absolute difference.

    [image | CAM overlay | Grad-CAM overlay | |CAM - Grad-CAM| on a fixed 0..1 scale]

    On a GAP + Linear head the two normalised heatmaps coincide (Grad-CAM's weights are CAM's
    w^c divided by Z, Sec. 3.1): the last column is black, its title gives max |difference|.

    Parameters
    ----------
    image : (H, W, 3) image shown, or a list of them (one per row)
    rows : list of dicts with "label", "cam" and "gradcam" ((h, w) heatmaps in [0, 1])
    """
    cells, labels = [], []
    for i, r in enumerate(rows):
        img = as_rgb(image[i] if isinstance(image, (list, tuple)) else image)
        diff = np.abs(np.asarray(r["cam"], np.float64) - np.asarray(r["gradcam"], np.float64))
        big = diff if diff.shape == img.shape[:2] else resize(diff, img.shape[:2])
        cells.append([img, overlay(img, r["cam"], alpha, cmap), overlay(img, r["gradcam"], alpha,
                      cmap), (big, {"cmap": "magma", "vmin": 0.0, "vmax": 1.0})])
        labels.append(f"{r['label']}\nmax|diff| = {diff.max():.1e}")
    fig = _grid(cells, ("Image", "CAM", "Grad-CAM", "|CAM - Grad-CAM|"), labels, title)
    return fig if path is None else save_png(fig, path)


# --------------------------------------------------------------------------- computing
def softmax(logits):
    """Row-wise softmax in float64: p = exp(y - max y) / sum exp(y - max y)."""
    y = np.asarray(to_numpy(logits), dtype=np.float64)
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def explain_figure1(model, x, image_rgb=None, targets=None, layer=None):
    """Compute Figure 1's maps for one image and each target class (two in the paper).

    For each target c: Grad-CAM, counterfactual Grad-CAM (``grad_cam``), Guided Backprop and
    Guided Grad-CAM (``guided_backprop``, ``guided_grad_cam``), all at the same ``layer``.

    Parameters
    ----------
    model : minicnn.Sequential
    x : (1, C, H, W) input (or one (C, H, W) image)
    image_rgb : the image to draw under the maps; None = ``x`` itself
    targets : list of classes (ints or names); None = the top-2 classes
    layer : Grad-CAM's layer; None = the last spatial layer
    Returns
    -------
    dict with "image" (H, W, 3) uint8, "layer" (str), "probs" (classes,) softmax of the logits,
    "class_names" (list or None) and "rows": one dict per target with "target", "class_name",
    "prob", "logit", "label", the maps "gradcam", "counterfactual" ((H, W) heatmaps),
    "guided_backprop", "guided_gradcam" ((C, H, W)), and "results" (the two GradCAMResults).
    """
    x = np.asarray(x) if not hasattr(x, "shape") else x
    x = x[None] if x.ndim == 3 else x
    if x.shape[0] != 1:
        raise ValueError(f"explain_figure1 explains one image; got a batch of {x.shape[0]}")
    if targets is None:
        first = grad_cam(model, x, None, layer)
        targets = list(np.argsort(-to_numpy(first.logits)[0])[:2])
    rows, probs, out_layer, names = [], None, None, None
    for t in targets:
        r = grad_cam(model, x, [t], layer)
        cf = grad_cam(model, x, r.target, r.layer, counterfactual=True)
        probs = softmax(r.logits)[0]
        c = int(r.target[0])
        name = r.class_names[0] if r.class_names else f"class {c}"
        names = getattr(model, "class_names", None)
        rows.append({
            "target": c, "class_name": name, "prob": float(probs[c]),
            "logit": float(to_numpy(r.logits)[0, c]), "label": row_label(name, float(probs[c])),
            "gradcam": to_numpy(r.heatmap[0]), "counterfactual": to_numpy(cf.heatmap[0]),
            "guided_backprop": to_numpy(guided_backprop(model, x, r.target)[0]),
            "guided_gradcam": to_numpy(guided_grad_cam(model, x, r.target, r.layer)[0]),
            "results": {"gradcam": r, "counterfactual": cf},
        })
        out_layer = r.layer
    image = chw_to_rgb(x) if image_rgb is None else as_rgb(image_rgb)
    return {"image": image, "layer": out_layer, "probs": probs, "class_names": names,
            "rows": rows}
