"""Evaluate explanation maps where the truth is known: generated shapes with masks and boxes.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4: Sec. 4.1 "Weakly-supervised Localization", the sections
"Evaluating Class Discrimination" (and Fig. 1) and "Counterfactual Explanations". Pointing
game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", arXiv:1608.00507.
Run: ``gradcam evaluate [--models NAME ...] [--n 200] [--seed 4000] [--markdown]``
(``gradcam/cli/evaluate.py``), or ``print(format_table(evaluate(model)))``.

Metrics are pure, vectorised functions of (N, H, W) maps and ``minicnn.data``'s ground truth,
invariant to a positive per-image scale (the heatmap's max-normalisation changes nothing). NOTE:

- CAM-family maps are scored as the upsampled ``heatmap``, the map the paper shows and
  thresholds, so all methods meet the same pixel masks. Pixel-space maps (N, C, H, W) become
  ``max_c |g|`` (``pixel_saliency``): the paper shows them as images, localisation needs only
  the magnitude, and max over channels is Simonyan et al.'s reduction (arXiv:1312.6034).
- Pointing game: exact, and with Zhang et al.'s 15 px at 224 scaled to the image (4.3 px at 64);
  a 16 x 16 map's 4 px cell is about the width of a cross's arm.
- ``mass_inside`` is the share of *all* map mass in a mask. An upsampled u x v map cannot put
  it all on a 12-22 px object: the mask's own cell coverage, upsampled (the best any such map
  can do, ``mass_ceiling``) keeps ~72 % at 16 x 16. Class discrimination (which object does the
  map for class c point at?) is ``object_share``, the explained object's share of the
  mass on either object.
- Single images explain the true class (localisation given the class: it scores the map, not
  the classifier); a scene explains both of its objects' classes.
"""

from __future__ import annotations

import time

import numpy as np

from minicnn.backend import to_numpy
from minicnn.data import make_scenes, make_shapes

from .core import cam, cam_head, grad_cam
from .registry import methods
from .guided import guided_backprop
from .resize import resize

# the registered methods this evaluation scores (``explain_maps`` computes them from shared
# passes), in the table's order: method name -> its title in the registry (the row title)
SCORED = {name: methods()[name].title
          for name in ("gradcam", "guided-backprop", "guided-gradcam", "counterfactual", "cam")}
METHOD_NAMES = tuple(SCORED.values())  # the row titles
METRICS = {  # key -> column title; all are means over images (scenes: over both targets)
    "pointing": "pointing game", "pointing_tol": "pointing +-tol",
    "loc_acc": "loc. acc. (IoU>=0.5)", "loc_iou": "mean IoU",
    "mass_target": "mass in target", "mass_other": "mass in other",
    "share_target": "target share", "share_other": "other share", "similarity": "A/B corr.",
}
BATCH = 50  # images per explanation call: bounds the (B, C, H, W) backward temporaries
ZHANG_TOLERANCE = 15 / 224  # Zhang et al.'s pointing tolerance, as a share of the image side


def pixel_saliency(g):
    """(N, C, H, W) Guided Backprop / Guided Grad-CAM map -> (N, H, W) NumPy saliency >= 0.

    S[n, h, w] = max_c |g[n, c, h, w]|
    """
    return np.abs(to_numpy(g)).max(axis=1)


# --------------------------------------------------------------------------- metrics
def pointing_game(maps, masks, tolerance=0.0):
    """Pointing game (Zhang et al., arXiv:1608.00507): is the map's peak on the object?

    p[n] = argmax_{h,w} maps[n]      (ties: the first maximum in row-major order)
    hit[n] = min_{q in masks[n]} ||p[n] - q||_2 <= tolerance

    A constant map (e.g. all zero) points nowhere: a miss. Zhang et al. allow 15 px at 224
    (``ZHANG_TOLERANCE``); the default 0 asks for the peak pixel itself to be on the object.

    Parameters
    ----------
    maps : (N, H, W) real; masks : (N, H, W) bool; tolerance : pixels, >= 0
    Returns
    -------
    hit : (N,) bool
    """
    maps, masks = np.asarray(maps), np.asarray(masks, dtype=bool)
    N, H, W = _check(maps, masks)
    flat = maps.reshape(N, -1)
    py, px = np.divmod(flat.argmax(axis=1), W)  # NumPy's argmax returns the first maximum
    Y, X = np.mgrid[0:H, 0:W]
    near = (Y - py[:, None, None]) ** 2 + (X - px[:, None, None]) ** 2 <= tolerance**2
    return (near & masks).any(axis=(1, 2)) & (flat.max(axis=1) > flat.min(axis=1))


def connected_components(binary, connectivity=8):
    """Label connected components of binary images (NumPy only): min-label propagation.

    lab(p) <- min(lab(q) : q = p or a neighbour of p in the set);  lab(p) <- lab(lab(p))

    until nothing changes (the second step, pointer jumping, cuts the number of sweeps). Labels
    are flat pixel indices, so at the fixed point each pixel holds the smallest index of its
    component; components are then numbered 1..k per image in row-major order of their first
    pixel (the order of a raster-scan flood fill).

    Parameters
    ----------
    binary : (N, H, W) bool
    connectivity : 4 (edge neighbours) or 8 (edges and corners; MATLAB bwlabel's default)
    Returns
    -------
    labels : (N, H, W) int64, 0 = background
    """
    b = np.asarray(binary, dtype=bool)
    if b.ndim != 3 or connectivity not in (4, 8):
        raise ValueError(f"need (N, H, W) images, connectivity 4 or 8; got {b.shape}, "
                         f"{connectivity}")
    N, H, W = b.shape
    big = N * H * W  # larger than any index: the background never wins a minimum
    idx = np.arange(big).reshape(N, H, W)
    lab = np.where(b, idx, big)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else []
    while True:
        # NOTE: padding each image with `big` keeps neighbours from crossing image borders
        pad = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        new = lab.copy()
        for dy, dx in steps:
            np.minimum(new, pad[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W], out=new)
        new = np.where(b, new, big).ravel()
        fg = new < big
        new[fg] = new[new[fg]]  # a label is a pixel of the same component: take ITS label
        new = new.reshape(N, H, W)
        if np.array_equal(new, lab):
            break
        lab = new
    number = np.cumsum((b & (lab == idx)).reshape(N, -1), axis=1).ravel()  # roots, per image
    return np.where(b, number[np.minimum(lab, big - 1)], 0)


def box_iou(a, b):
    """IoU of boxes (x0, y0, x1, y1) with exclusive ends (pixel counts): |a & b| / |a | b|.

    Parameters
    ----------
    a, b : (N, 4)
    Returns
    -------
    iou : (N,) float64 in [0, 1] (0 when both boxes are empty)
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = np.prod(a[:, 2:] - a[:, :2], axis=1) + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def localisation(maps, boxes, threshold=0.15, connectivity=8, min_iou=0.5):
    """Weakly-supervised localisation (Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1).

    segment[n] = largest connected component of {maps[n] >= threshold * max maps[n]}
    iou[n] = IoU(box(segment[n]), boxes[n]);   hit[n] = iou[n] >= min_iou

    ("binarize with a threshold of 15% of the max intensity ... draw a bounding box around the
    single largest segment".) Ties between equally large segments go to the first in row-major
    order; a map whose max is not positive has no segment (empty box, IoU 0).

    Parameters
    ----------
    maps : (N, H, W) >= 0; boxes : (N, 4) ground truth (x0, y0, x1, y1), exclusive ends
    threshold : share of each map's max; connectivity : 4 or 8; min_iou : hit criterion
    Returns
    -------
    iou : (N,) float64; hit : (N,) bool; pred : (N, 4) predicted boxes (zeros when empty)
    """
    maps = np.asarray(maps, dtype=np.float64)
    N, H, W = _check(maps)
    peak = maps.max(axis=(1, 2), keepdims=True)
    lab = connected_components((maps >= threshold * peak) & (peak > 0), connectivity)
    # size of every (image, component): one bincount over labels offset per image
    sizes = np.bincount((lab + np.arange(N)[:, None, None] * (H * W + 1)).ravel(),
                        minlength=N * (H * W + 1)).reshape(N, H * W + 1)
    sizes[:, 0] = 0  # background
    best = sizes.argmax(axis=1)  # first largest; 0 (no segment) when the set is empty
    seg = (lab == best[:, None, None]) & (best > 0)[:, None, None]
    rows, cols = seg.any(axis=2), seg.any(axis=1)
    pred = np.stack([cols.argmax(1), rows.argmax(1), W - cols[:, ::-1].argmax(1),
                     H - rows[:, ::-1].argmax(1)], axis=1) * (best > 0)[:, None]
    iou = box_iou(pred, boxes)
    return iou, iou >= min_iou, pred


def mass_inside(maps, masks):
    """Share of a non-negative map's mass inside a mask: sum(map * mask) / sum(map).

    0 (not NaN) for an all-zero map; a negative value is a ValueError (rectify first).

    Parameters
    ----------
    maps : (N, H, W) >= 0; masks : bool, broadcastable to maps
    Returns
    -------
    share : (N,) float64 in [0, 1]
    """
    maps = np.asarray(maps, dtype=np.float64)
    if (maps < 0).any():
        raise ValueError("mass_inside needs non-negative maps (take ReLU or |.| first)")
    total = maps.sum(axis=(-2, -1))
    inside = (maps * np.asarray(masks, dtype=bool)).sum(axis=(-2, -1))
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0)


def object_share(maps, mask_a, mask_b):
    """Share on object A of the mass on either object: m_A / (m_A + m_B), m = mass_inside.

    Class discrimination: 1 = all of the map's object mass is on A. 0 where the map has no
    mass on either object (conservative: such a map points at neither).

    Parameters
    ----------
    maps : (N, H, W) >= 0; mask_a, mask_b : (N, H, W) bool, disjoint
    Returns
    -------
    share : (N,) float64 in [0, 1]
    """
    a, b = mass_inside(maps, mask_a), mass_inside(maps, mask_b)
    return np.where(a + b > 0, a / np.where(a + b > 0, a + b, 1), 0.0)


def map_correlation(maps_a, maps_b):
    """Pearson correlation, per image, of the maps for two classes (near 1: not discriminative).

    r[n] = sum_p (a[n,p] - mean a[n]) (b[n,p] - mean b[n]) / (||a[n] - mean|| ||b[n] - mean||)

    A constant map has no correlation: r = 1 if both maps are constant (the same flat picture),
    0 if only one is.

    Parameters
    ----------
    maps_a, maps_b : (N, H, W)
    Returns
    -------
    r : (N,) float64 in [-1, 1]
    """
    a = np.asarray(maps_a, dtype=np.float64).reshape(len(maps_a), -1)
    b = np.asarray(maps_b, dtype=np.float64).reshape(len(maps_b), -1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    same = np.all(a == b, axis=1).astype(np.float64)  # after centring: both constant
    return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1), same)


def _check(maps, masks=None):
    if maps.ndim != 3 or (masks is not None and masks.shape != maps.shape):
        extra = "" if masks is None else f" and masks {masks.shape}"
        raise ValueError(f"need (N, H, W) maps and masks of that shape, got {maps.shape}{extra}")
    return maps.shape


# --------------------------------------------------------------------------- evaluation
def _titles(methods):
    """Method names (None: all of ``SCORED``) -> their row titles, in the table's order."""
    if methods is None:
        return METHOD_NAMES
    unknown = [m for m in methods if m not in SCORED]
    if unknown:
        raise ValueError(f"cannot score {', '.join(map(repr, unknown))}; the evaluation scores "
                         f"{', '.join(SCORED)}")
    return tuple(t for m, t in SCORED.items() if m in methods)


def explain_maps(model, x, target, layer=None, methods=None):
    """maps {title: (N, H, W) NumPy} in METHOD_NAMES order, and logits (N, classes), for
    images ``x`` and classes ``target``; ``methods``: names in ``SCORED`` (None: all). Guided
    Grad-CAM is composed as in ``gradcam.guided_grad_cam`` (guided backprop times the heatmap)
    from the same two passes."""
    want = _titles(methods)
    r = grad_cam(model, x, target, layer)
    out = {"Grad-CAM": to_numpy(r.heatmap)}
    if {"Guided Backprop", "Guided Grad-CAM"} & set(want):
        gb = guided_backprop(model, x, r.target)
        out["Guided Backprop"] = pixel_saliency(gb)
        out["Guided Grad-CAM"] = pixel_saliency(gb * r.heatmap[:, None])
    if "Counterfactual" in want:
        out["Counterfactual"] = to_numpy(grad_cam(model, x, r.target, layer, True).heatmap)
    if "CAM" in want:
        out["CAM"] = to_numpy(cam(model, x, r.target).heatmap)
    return {t: out[t] for t in want}, to_numpy(r.logits)


def mass_ceiling(masks, u, v):
    """The best mass share a u x v map can reach (see the module docstring): mean over images of
    mass_inside(resize(coverage), masks), coverage = the share of each cell inside the mask.
    None unless the cells tile the image (u divides H, v divides W)."""
    N, H, W = masks.shape
    if H % u or W % v:
        return None
    cover = masks.reshape(N, u, H // u, v, W // v).mean(axis=(2, 4))
    return float(mass_inside(resize(cover, (H, W)), masks).mean())


def evaluate(model, n_single=200, n_scenes=200, seed=4000, layer=None, batch=BATCH,
             methods=None, name=None):
    """Every metric (``METRICS``) for every method, on fresh single shapes and scenes.

    Single images (``make_shapes(n_single, seed)``, target = true label): pointing game and
    localisation (Sec. 4.1). Scenes (``make_scenes(n_scenes, seed)``, both labels explained):
    mass on either object, object shares, correlation of the two classes' maps (class
    discrimination); the counterfactual should put its mass on the *other* object. CAM needs
    a GAP head.

    Parameters
    ----------
    model : minicnn.Sequential; layer : Grad-CAM's (None: last)
    methods : names in ``SCORED`` to score (None: all); name : the model's name in the report
    (None: its class name)
    Returns
    -------
    dict: model (``name``), layer, map_size (u, v), tolerance (px), n_single, n_scenes, seed,
    accuracy (top-1, single images), ceiling (``mass_ceiling``, scene objects), seconds,
    methods {title: {metric: mean} or None where n/a}, notes {title: why n/a}
    """
    if isinstance(model, str):
        raise TypeError(f"evaluate takes a model, not {model!r} (e.g. "
                        "minicnn.zoo.shapes_cnn(pretrained=True))")
    start, notes, rows = time.perf_counter(), {}, _titles(methods)
    name = type(model).__name__ if name is None else name
    if "CAM" in rows:
        try:
            cam_head(model)
        except ValueError as e:
            notes["CAM"] = str(e)
    run = [k for k, t in SCORED.items() if t in rows and t not in notes]  # names
    acc = {SCORED[m]: {k: [] for k in METRICS} for m in run}
    single, correct = make_shapes(n_single, seed=seed), []
    tol = ZHANG_TOLERANCE * max(single.masks.shape[1:])  # 15 px at 224 -> 4.3 px at 64
    for i in range(0, n_single, batch):
        sl = slice(i, i + batch)
        maps, logits = explain_maps(model, single.images[sl], single.labels[sl], layer, run)
        correct.append(logits.argmax(axis=1) == single.labels[sl])
        for m, s in maps.items():
            iou, hit, _ = localisation(s, single.boxes[sl])
            for k, val in zip(("pointing", "pointing_tol", "loc_iou", "loc_acc"),
                              (pointing_game(s, single.masks[sl]),
                               pointing_game(s, single.masks[sl], tol), iou, hit)):
                acc[m][k].append(val)
    scenes = make_scenes(n_scenes, seed=seed)
    for i in range(0, n_scenes, batch):
        sl = slice(i, i + batch)
        per = [explain_maps(model, scenes.images[sl], scenes.labels[sl, j], layer, run)[0]
               for j in (0, 1)]
        for j in (0, 1):
            own, other = scenes.masks[sl, j], scenes.masks[sl, 1 - j]
            for m, s in per[j].items():
                for k, val in zip(("mass_target", "mass_other", "share_target", "share_other"),
                                  (mass_inside(s, own), mass_inside(s, other),
                                   object_share(s, own, other), object_share(s, other, own))):
                    acc[m][k].append(val)
        for m in acc:
            acc[m]["similarity"].append(map_correlation(per[0][m], per[1][m]))
    res = {m: {k: float(np.concatenate(v).mean()) for k, v in acc[m].items()} for m in acc}
    r = grad_cam(model, scenes.images[:1], int(scenes.labels[0, 0]), layer)  # layer and (u, v)
    u, v = r.coarse.shape[1:]
    return {"model": name, "layer": r.layer, "map_size": (u, v), "tolerance": tol,
            "n_single": n_single, "n_scenes": n_scenes, "seed": seed,
            "accuracy": float(np.concatenate(correct).mean()),
            "ceiling": mass_ceiling(scenes.masks.reshape(-1, *scenes.masks.shape[2:]), u, v),
            "seconds": time.perf_counter() - start,
            "methods": {m: res.get(m) for m in rows}, "notes": notes}


# --------------------------------------------------------------------------- report
def format_table(results, markdown=True):
    """One table per model (methods as rows, ``METRICS`` as columns, "n/a" where a method does
    not apply), under a line giving the setup. ``results``: one ``evaluate`` dict or a list."""
    out = []
    for res in [results] if isinstance(results, dict) else results:
        head = ["method"] + list(METRICS.values())
        rows = [[m] + (["n/a"] * len(METRICS) if res["methods"][m] is None else
                       [f"{res['methods'][m][k]:+.2f}" if k == "similarity" else
                        f"{100 * res['methods'][m][k]:.1f}%" for k in METRICS])
                for m in res["methods"]]
        u, v = res["map_size"]
        ceil = "n/a" if res["ceiling"] is None else f"{100 * res['ceiling']:.1f}%"
        title = (f"{res['model']}: Grad-CAM at {res['layer']} ({u}x{v}); top-1 accuracy "
                 f"{100 * res['accuracy']:.1f}% on {res['n_single']} single shapes; "
                 f"{res['n_scenes']} scenes; seed {res['seed']}; pointing tolerance "
                 f"{res['tolerance']:.1f} px; best possible mass in target at {u}x{v}: "
                 f"{ceil}; {res['seconds']:.1f} s")
        if markdown:
            lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
                     "|" + "|".join(["---"] + ["---:"] * len(METRICS)) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
            lines = [title] + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                         for i, (c, w) in enumerate(zip(r, width)))
                               for r in [head] + rows]
        out.append("\n".join(lines))
    return "\n\n".join(out)
