"""Evaluate explanation maps where the truth is known: generated shapes with masks and boxes.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4: Sec. 4.1 "Weakly-supervised Localization", the sections
"Evaluating Class Discrimination" (and Fig. 1) and "Counterfactual Explanations". Pointing
game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", arXiv:1608.00507.
Run: ``gradcam evaluate [--models NAME ...] [--n 200] [--seed 4000] [--faithfulness]
[--protocol fast|full] [--photos [FOLDER]] [--markdown]`` (``gradcam/cli/evaluate.py``), or
``print(format_table(evaluate(model)))``.

Cost and protocol: a whole-family run at n = 200 for every method does not finish in 26 min on
2 cores (SS-CAM and IS-CAM take 1.5-2 s per image on shapes_cnn, one forward per channel and
noisy copy; Occlusion 0.7 s; SmoothGrad and Integrated Gradients 0.3-0.4 s; the others 3-130
ms). The command line's default protocol, "fast" (``gradcam.evaluate_family``), scores those
methods on fewer images (``Method.fast_n``: 4-25, the table's "n" column) and the rest on --n;
``--protocol full`` scores every method on --n. The faithfulness columns
(``gradcam.evaluate_faithfulness``) use the first ``FAITH_N`` = 50 single shapes of a row.

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
- Every registered method is a row (``gradcam.methods()``, in the registry's order, titled by
  its ``title``); the CAM methods run at the evaluation's ``layer``, the pixel-space and
  whole-network methods at the input (``catalog.layer_for``). A method with a ``gap-input``
  layer rule (CAM) is "n/a" on a model without a GAP + Linear head.
- Two instances of one class (``make_scenes(same_class=True)``, Grad-CAM++'s motivating case,
  Chattopadhay et al., arXiv:1710.11063): ``weaker_share``, the share of the map's mass on the
  two instances that lies on the *weaker* one, defined as the smaller (fewer pixels,
  ``metrics.weaker_instance``): the same instance for every model and method. 0 means the map
  found only the stronger instance; the weaker one's share of the two instances' area
  (``area_share``, printed in the table's title) is what a map spread evenly over both gives.

The metric functions live in ``gradcam.metrics`` and are importable from here.
"""

from __future__ import annotations

import time

import numpy as np

from minicnn.backend import asarray, to_numpy
from minicnn.data import make_scenes, make_shapes

from .catalog import layer_for
from .core import cam_head, eval_mode, explain, grad_cam
from .evaluate_faithfulness import (FAITH_N, FAITHFULNESS, ROAD_KEYS, faithfulness_scores,
                                    occlusion_reference)
from .evaluate_faithfulness import cell as faith_cell
from .metrics import (area_share, box_iou, connected_components, localisation,  # noqa: F401
                      map_correlation, mass_ceiling, mass_inside, object_share, pixel_saliency,
                      pointing_game, weaker_instance, weaker_share)
from .registry import methods as registry

# the Grad-CAM paper's own methods (Selvaraju et al., arXiv:1610.02391v4, Fig. 1 and Sec. 4):
# the quality targets of the shipped models are stated for these
PAPER_METHODS = ("gradcam", "guided-backprop", "guided-gradcam", "counterfactual", "cam")
METRICS = {  # key -> column title; all are means over images (scenes: over both targets)
    "pointing": "pointing game", "pointing_tol": "pointing +-tol",
    "loc_acc": "loc. acc. (IoU>=0.5)", "loc_iou": "mean IoU",
    "mass_target": "mass in target", "mass_other": "mass in other",
    "share_target": "target share", "share_other": "other share", "similarity": "A/B corr.",
    "weak_share": "weaker twin share",
}
BATCH = 50  # images per explanation call: bounds the (B, C, H, W) backward temporaries
ZHANG_TOLERANCE = 15 / 224  # Zhang et al.'s pointing tolerance, as a share of the image side


# --------------------------------------------------------------------------- evaluation
def scored(methods=None):
    """{method name: row title} of the methods to score, in the registry's order: every
    registered method (``methods=None``) or the names in ``methods``."""
    table = registry()
    if methods is None:
        return {n: m.title for n, m in table.items()}
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise ValueError(f"cannot score {', '.join(map(repr, unknown))}; the evaluation scores "
                         f"the registered methods: {', '.join(table)}")
    return {n: m.title for n, m in table.items() if n in methods}


def explain_maps(model, x, target, layer=None, methods=None, options=None, errors=None,
                 keep=None):
    """maps {title: (N, H, W) NumPy >= 0} in the registry's order, and logits (N, classes), for
    images ``x`` and classes ``target``.

    map = result.heatmap for the CAM-family and whole-network methods; ``pixel_saliency`` of
    the (N, C, H, W) map for the pixel-space methods

    ``methods``: registered names (None: all); ``options``: {name: {option: value}}.
    ``errors``: None, a method's ValueError propagates; a dict, it is recorded there as
    {title: message} and the method is skipped, now and in later calls with the same dict.
    ``keep``: None, or a dict keyed by method names: each of those that runs leaves its
    ``explain`` result there (the Occlusion row's S^c is the occlusion reference's run).
    """
    table, options, maps = registry(), options or {}, {}
    x = asarray(x, model.device)  # NOTE: host images to a device model's device, once per batch
    with eval_mode(model):  # the logits once, whichever methods run (or fail)
        logits = to_numpy(model.forward(x))
    for name, title in scored(methods).items():
        if errors is not None and title in errors:
            continue
        m = table[name]
        try:
            r = explain(model, x, target, name, layer_for(m, layer), **options.get(name, {}))
        except ValueError as e:  # e.g. Grad-CAM++'s exp(y^c) overflowing float32
            if errors is None:
                raise
            errors[title] = " ".join(str(e).split())
            continue
        maps[title] = pixel_saliency(r.pixels) if m.kind == "pixel" else to_numpy(r.heatmap)
        if keep is not None and name in keep:
            keep[name] = r
    return maps, logits


def _accumulate(acc, maps, metrics):
    """Append each metric's (N,) values for each method's maps: metrics {key: fn(map)}."""
    for title, s in maps.items():
        for k, fn in metrics.items():
            acc[title][k].append(fn(s))


def evaluate(model, n_single=200, n_scenes=200, seed=4000, layer=None, batch=BATCH,
             methods=None, name=None, options=None, faithfulness=False, road=False,
             occlusion=None):
    """Every metric (``METRICS``) for every method, on fresh single shapes and scenes.

    Single images (``make_shapes(n_single, seed)``, target = true label): pointing game and
    localisation (Sec. 4.1). Scenes (``make_scenes(n_scenes, seed)``, both labels explained):
    mass on either object, object shares, correlation of the two classes' maps (class
    discrimination); the counterfactual should put its mass on the *other* object. A method
    that raises a ValueError on this model (e.g. Grad-CAM++'s exp(y^c) overflowing float32) is
    n/a, its message in ``notes``. Scenes of
    two instances of one class (``make_scenes(n_scenes, seed, same_class=True)``, their class
    explained): the weaker instance's share (``weaker_share``). CAM needs a GAP head.
    ``faithfulness``: also the ``FAITHFULNESS`` columns (``gradcam.evaluate_faithfulness``) on
    the first ``min(FAITH_N, batch, n_single)`` single shapes, their true class explained.

    Parameters
    ----------
    model : minicnn.Sequential; layer : the CAM methods' layer (None: each method's default)
    methods : registered names to score (None: every registered method)
    name : the model's name in the report (None: its class name)
    options : {method name: {option: value}} passed to ``explain`` (e.g. a batch size)
    faithfulness : add the faithfulness columns; road : with ROAD's two (costly) columns
    occlusion : the occlusion reference's options (window, stride, ...; None: its defaults)
    Returns
    -------
    dict: model (``name``), layer, map_size (u, v), tolerance (px), n_single, n_scenes, seed,
    accuracy (top-1, single images), ceiling (``mass_ceiling``, scene objects), twin_area (the
    weaker twin's mean share of the twins' area), seconds, methods {title: {metric: mean} or
    None where n/a}, notes {title: why n/a}
    """
    if isinstance(model, str):
        raise TypeError(f"evaluate takes a model, not {model!r} (e.g. "
                        "minicnn.zoo.shapes_cnn(pretrained=True))")
    start, notes, rows, table = time.perf_counter(), {}, scored(methods), registry()
    name = type(model).__name__ if name is None else name
    for n, title in rows.items():
        if table[n].layer_rule == "gap-input":
            try:
                cam_head(model)
            except ValueError as e:
                notes[title] = str(e)
    run = [n for n, t in rows.items() if t not in notes]
    keys = list(METRICS) + ([k for k in FAITHFULNESS if road or k not in ROAD_KEYS]
                            if faithfulness else [])
    acc = {rows[n]: {k: [] for k in keys} for n in run}

    failed = {}  # title -> the ValueError a method raised on this model (n/a, with the note)

    def maps_for(x, target, keep=None):
        return explain_maps(model, x, target, layer, run, options, failed, keep)

    # NOTE: the Occlusion row with the reference's options explains the faithfulness images
    # (the first batch) as the reference would: its S^c is the reference, not run twice
    share = (faithfulness and "occlusion" in run
             and (options or {}).get("occlusion", {}) == (occlusion or {}))
    single, correct = make_shapes(n_single, seed=seed), []
    tol = ZHANG_TOLERANCE * max(single.masks.shape[1:])  # 15 px at 224 -> 4.3 px at 64
    for i in range(0, n_single, batch):
        sl = slice(i, i + batch)
        keep = {"occlusion": None} if share and i == 0 else {}
        maps, logits = maps_for(single.images[sl], single.labels[sl], keep)
        correct.append(logits.argmax(axis=1) == single.labels[sl])
        masks, boxes = single.masks[sl], single.boxes[sl]
        _accumulate(acc, maps, {"pointing": lambda s: pointing_game(s, masks),
                                "pointing_tol": lambda s: pointing_game(s, masks, tol),
                                "loc_iou": lambda s: localisation(s, boxes)[0],
                                "loc_acc": lambda s: localisation(s, boxes)[1]})
        if faithfulness and i == 0:  # the first batch: FAITH_N images at most
            nf = min(FAITH_N, len(masks))
            # NOTE: the images go to the model's device once; the metrics keep them there
            xf, tf = asarray(single.images[:nf], model.device), single.labels[:nf]
            occ = occlusion_reference(model, xf, tf, occlusion,
                                      row=keep.get("occlusion") if nf == len(masks) else None)
            scores = faithfulness_scores(model, xf, {t: m[:nf] for t, m in maps.items()}, tf,
                                         occ, with_road=road, seed=seed)
            for title, row in scores.items():
                for k, v in row.items():
                    acc[title][k].append(v)
    scenes = make_scenes(n_scenes, seed=seed)
    twins = make_scenes(n_scenes, seed=seed, same_class=True)
    for i in range(0, n_scenes, batch):
        sl = slice(i, i + batch)
        per = [maps_for(scenes.images[sl], scenes.labels[sl, j])[0] for j in (0, 1)]
        for j in (0, 1):
            own, other = scenes.masks[sl, j], scenes.masks[sl, 1 - j]
            _accumulate(acc, per[j], {"mass_target": lambda s: mass_inside(s, own),
                                      "mass_other": lambda s: mass_inside(s, other),
                                      "share_target": lambda s: object_share(s, own, other),
                                      "share_other": lambda s: object_share(s, other, own)})
        for m in set(per[0]) & set(per[1]):  # a method that failed has no maps
            acc[m]["similarity"].append(map_correlation(per[0][m], per[1][m]))
        pair = twins.masks[sl]
        _accumulate(acc, maps_for(twins.images[sl], twins.labels[sl, 0])[0],
                    {"weak_share": lambda s: weaker_share(s, pair)})
    notes.update(failed)
    # NOTE: nanmean: Spearman's rho is NaN for a constant map (no ranking to correlate)
    mean = {k: np.nanmean if k == "occlusion_rho" else np.mean for k in keys}
    res = {m: {k: float(mean[k](np.concatenate(v))) for k, v in acc[m].items()} for m in acc
           if m not in failed}
    r = grad_cam(model, asarray(scenes.images[:1], model.device), int(scenes.labels[0, 0]),
                 layer)  # its layer and (u, v)
    u, v = r.coarse.shape[1:]
    return {"model": name, "layer": r.layer, "map_size": (u, v), "tolerance": tol,
            "n_single": n_single, "n_scenes": n_scenes, "seed": seed,
            "accuracy": float(np.concatenate(correct).mean()),
            "ceiling": mass_ceiling(scenes.masks.reshape(-1, *scenes.masks.shape[2:]), u, v),
            "twin_area": float(area_share(twins.masks).mean()),
            "seconds": time.perf_counter() - start,
            "methods": {t: res.get(t) for t in rows.values()}, "notes": notes}


# --------------------------------------------------------------------------- report
def _cell(row, k):
    """One table cell: the correlation signed, shares in percent, "-" for a missing metric."""
    if k not in row:
        return "-"
    if k in FAITHFULNESS:
        return faith_cell(k, row[k])
    return f"{row[k]:+.2f}" if k == "similarity" else f"{100 * row[k]:.1f}%"


def _title(res):
    """The line above a shapes table: the setup (a result's own ``title`` wins)."""
    if "title" in res:
        return res["title"]
    u, v = res["map_size"]
    ceil = "n/a" if res["ceiling"] is None else f"{100 * res['ceiling']:.1f}%"
    twin = ("" if res.get("twin_area") is None else
            f"weaker twin's share of the twins' area: {100 * res['twin_area']:.1f}%; ")
    n = "" if "n" not in res else "rows' n below; "
    return (f"{res['model']}: Grad-CAM at {res['layer']} ({u}x{v}); top-1 accuracy "
            f"{100 * res['accuracy']:.1f}% on {res['n_single']} single shapes; "
            f"{res['n_scenes']} scenes; {n}seed {res['seed']}; pointing tolerance "
            f"{res['tolerance']:.1f} px; best possible mass in target at {u}x{v}: "
            f"{ceil}; {twin}{res['seconds']:.1f} s")


def format_table(results, markdown=True):
    """One table per model (methods as rows, the metrics any row has as columns, ``METRICS``
    then ``FAITHFULNESS``; "n/a" where a method does not apply; an "n" column when the result
    gives each row's image count, ``res["n"]``), under a line giving the setup. ``results``: one
    ``evaluate`` dict or a list."""
    out = []
    for res in [results] if isinstance(results, dict) else results:
        present = {k for row in res["methods"].values() if row for k in row}
        cols = [k for k in list(METRICS) + list(FAITHFULNESS) if k in present] or list(METRICS)
        ns = res.get("n")
        head = ["method"] + (["n"] if ns else []) + [{**METRICS, **FAITHFULNESS}[k] for k in cols]
        rows = [[m] + ([str(ns[m])] if ns else []) +
                (["n/a"] * len(cols) if res["methods"][m] is None else
                 [_cell(res["methods"][m], k) for k in cols]) for m in res["methods"]]
        title = _title(res)
        if markdown:
            lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
                     "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
            lines = [title] + ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                         for i, (c, w) in enumerate(zip(r, width)))
                               for r in [head] + rows]
        notes = [f"n/a {m}: {why}" for m, why in res.get("notes", {}).items()]
        lines += ([""] + [f"- {n}" if markdown else n for n in notes]) if notes else []
        out.append("\n".join(lines))
    return "\n\n".join(out)
