"""Faithfulness columns of ``gradcam evaluate --faithfulness``: what the model does when each
method's map is used to remove, add or keep pixels, scored per image for many methods at once.

- deletion / insertion AUC: Petsiuk et al., BMVC 2018, arXiv:1806.07421 (RISE), 20 steps, the
  blurred image as the canvas of both (``DELETION_BASELINE``). Deletion: low is faithful;
  insertion: high is faithful. NOTE: not the paper's black canvas for deletion: on the shapes
  data a black blob where the object was is itself a dark shape on a coloured background, and
  a random map then deletes the class faster than Grad-CAM (tests/test_faithfulness.py, the
  negative control); the blurred image stays in the data's range and ranks Grad-CAM first.
- Average Drop % and Increase in Confidence: Chattopadhay et al., WACV 2018, arXiv:1710.11063v3,
  Sec. 5, on the input multiplied by the map. Average Drop: low is faithful; Increase: high.
- occlusion rho: the Grad-CAM paper's faithfulness test (Selvaraju et al., arXiv:1610.02391v4,
  Sec. 5.3), Spearman's rho between the map and the model's occlusion map (Zeiler & Fergus,
  arXiv:1311.2901v3). NOTE: the occlusion map is computed once per image and shared by every
  method (``occlusion_reference``); ``metrics.occlusion_correlation`` would recompute it for
  each method, the cost of one more Occlusion row per method.
- ROAD (Rong et al., ICML 2022, arXiv:2202.00449v2; opt-in, about 40 forwards of noisy linear
  imputation per image and method): the mean class probability over the paper's percentiles,
  most relevant first (MoRF: low is faithful) and least relevant first (LeRF: high is faithful).

The scores are the class probabilities (softmax) of the papers; targets are given per image.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp, to_numpy

from .core import explain
from .metrics import average_drop, deletion, increase_in_confidence, insertion, road, spearman
from .progress import progress

FAITHFULNESS = {  # key -> column title; means over the images a method was scored on
    "deletion": "deletion AUC", "insertion": "insertion AUC", "avg_drop": "avg. drop %",
    "increase": "incr. in conf.", "occlusion_rho": "occl. rho",
    "road_morf": "ROAD MoRF", "road_lerf": "ROAD LeRF",
}
ROAD_KEYS = ("road_morf", "road_lerf")
DELETION_BASELINE = "blur"  # RISE's insertion canvas, used for deletion too (NOTE above)
FAITH_N = 50  # images per method for the faithfulness columns (the first batch of single shapes)


def occlusion_reference(model, x, target, options=None, row=None):
    """The model's signed occlusion map S^c (N, H, W), NumPy: the reference of the occlusion
    rho column, once per image for every method (``options``: the occlusion method's window,
    stride, baseline, score, batch_size; None: its defaults).

    ``row``: None, or the Occlusion method's ``explain`` result on these images with these
    options (an evaluation's Occlusion row): where it explained ``target``, its S^c is the
    reference, the same run not repeated. NOTE: the caller vouches for the images and options.
    """
    if row is not None and np.array_equal(to_numpy(row.target), to_numpy(target)):
        return to_numpy(row.linear_map)
    return to_numpy(explain(model, x, target, method="occlusion", **(options or {})).linear_map)


def faithfulness_scores(model, x, maps, target, occlusion, with_road=False, seed=0):
    """{title: {key: (N,) NumPy}} of the ``FAITHFULNESS`` metrics for each method's maps.

    deletion/insertion = RISE AUC (canvas: the blurred image);
    avg_drop = 100 max(0, Y - O) / Y; increase = [O > Y];
    occlusion_rho = spearman(map, S^c); road_* = mean_p f^c(ROAD(x, map, p)), p = 10 ... 90

    Parameters
    ----------
    model : minicnn.Sequential; x : (N, C, H, W); maps : {title: (N, H, W) >= 0}
    target : (N,) int classes; occlusion : (N, H, W) ``occlusion_reference`` of x
    with_road : also the two ROAD columns; seed : ROAD's noise and tie-breaking seed
    Returns
    -------
    dict title -> dict key -> (N,) float64 (increase: 0/1)
    """
    xp = get_xp(x)
    # NOTE: maps and the occlusion reference go where x is (NumPy maps on a device: one copy
    # each); the metrics' numbers stay there and come back to the host once, at the end
    target, occlusion, out = to_numpy(target), xp.asarray(occlusion), {}
    for title, m in progress(maps.items(), total=len(maps), desc="faithfulness"):
        m = xp.asarray(m)
        row = {"deletion": deletion(model, x, m, target, baseline=DELETION_BASELINE).auc,
               "insertion": insertion(model, x, m, target).auc,
               "avg_drop": average_drop(model, x, m, target),
               "increase": increase_in_confidence(model, x, m, target),
               "occlusion_rho": spearman(m, occlusion)}
        if with_road:
            for key, order in zip(ROAD_KEYS, ("morf", "lerf")):
                row[key] = road(model, x, m, target, order=order, seed=seed).curve.mean(axis=1)
        out[title] = {k: v.astype(np.float64) for k, v in row.items()}
    if not out:
        return out
    keys = list(next(iter(out.values())))
    table = to_numpy(xp.stack([xp.stack([out[t][k] for k in keys]) for t in out]))  # one sync
    return {t: dict(zip(keys, table[i])) for i, t in enumerate(out)}


def cell(key, value):
    """One faithfulness table cell: AUCs and ROAD to 3 places, Average Drop as the paper's %,
    Increase in Confidence as a share in %, rho signed."""
    if key == "avg_drop":
        return f"{value:.1f}"
    if key == "increase":
        return f"{100 * value:.1f}%"
    if key == "occlusion_rho":
        return f"{value:+.2f}"
    return f"{value:.3f}"
