"""A whole-family evaluation in bounded time: a fewer-images protocol for the costly methods, and
the faithfulness columns on a folder of photos with the ImageNet model.

The cost (seconds per image on shapes_cnn, 64 x 64, measured on 2 shared cores; README,
"Evaluation on shapes"): most methods take 3-10 ms; Eigen-CAM and Eigen-Grad-CAM ~0.1 s (an SVD
per image); Score-CAM ~0.2 s (one forward per channel); SmoothGrad and Integrated Gradients
~0.3-0.4 s (50 backward passes); Occlusion ~0.7 s (225 windows); SS-CAM and IS-CAM ~1.5-2 s
(channels x num_samples forwards). A localisation row explains 4 n images (n single shapes,
n scenes twice, n twin scenes), so at n = 200 IS-CAM alone takes ~25 min.

Protocol "fast" (the default of ``gradcam evaluate``): every method runs with its own default
options, on n = min(--n, ``Method.fast_n``) images (the table's "n" column); the other methods on
--n. Protocol "full": every method on --n. The faithfulness columns are measured on the first
min(n, ``FAITH_N``) single shapes of a row. Rows with the same n share their images; rows of
different n do not (NOTE: ``make_shapes(k, seed)`` is not the first k of ``make_shapes(n, seed)``:
its label permutation and draws depend on the count), so no per-image work is shared between
the groups. Within a group, the Occlusion row's S^c is the occlusion reference where they are
the same run (``occlusion_reference``'s ``row``).

Photos (``evaluate_photos``): no ground truth, so faithfulness only; each photo's top-1 class
is explained; every method but ``photo_slow()`` (SS-CAM, IS-CAM: n/a in the fast protocol) runs
on every photo; the occlusion reference (and the Occlusion row, the same run) use a 32 px
window at stride 16 (``PHOTO_OCCLUSION``: 169 windows at 224, not 3025). The cost on
EfficientNet-Lite0 (matplotlib's three photos, 2 cores): Score-CAM 37-140 s per photo, one
photo at a time at load average 2-4 (one whole-network forward per non-constant channel of the
1280-channel head, 656-849 here); in the whole run at load 6-9, Score-CAM 332 s per photo,
SmoothGrad 41 s, Occlusion 37 s, Integrated Gradients 22 s, the others 0.05-5 s. The
ImageNet validation set is not available offline: the default folder is matplotlib's sample
data (``photo_folder``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from minicnn.backend import asarray, to_numpy

from .evaluate import evaluate, explain_maps, scored
from .evaluate_faithfulness import faithfulness_scores, occlusion_reference
from .progress import progress
from . import registry

PROTOCOLS = ("fast", "full")
PHOTO_OCCLUSION = {"window": 32, "stride": 16}
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def fast_caps():
    """{method name: fast_n} of the registered methods the fast protocol scores on fewer
    images (``Method.fast_n``: about 10 s of localisation per row or less on shapes)."""
    found = (registry.get_method(m) for m in registry.methods())
    return {m.name: m.fast_n for m in found if m.fast_n is not None}


def photo_slow():
    """The registered methods the fast protocol leaves out on photos (``Method.photo_fast``
    False: Score-CAM's whole-network forward per non-constant channel of EfficientNet-Lite0's
    head, for each of 10 noisy copies, about ten Score-CAMs per photo; Score-CAM 37-140 s)."""
    return tuple(m for m in registry.methods() if not registry.get_method(m).photo_fast)


def protocol_n(names, n, protocol="fast"):
    """{method name: images it is scored on}: min(n, fast_n) in "fast", n in "full"."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    caps = fast_caps()
    return {m: n if protocol == "full" else min(n, caps.get(m, n)) for m in names}


def evaluate_protocol(model, n=200, seed=4000, methods=None, protocol="fast", name=None,
                      options=None, faithfulness=False, road=False, occlusion=None):
    """``evaluate`` under a protocol: one run per distinct n (largest first), merged into one
    result with each row's n (``res["n"]``, {title: n}), in the registry's order.

    Parameters
    ----------
    model : minicnn.Sequential; n : images per row before the protocol's caps; seed : data seed
    methods : registered names (None: all); protocol : "fast" or "full" (``protocol_n``)
    name, options, faithfulness, road, occlusion : as for ``gradcam.evaluate.evaluate``
    Returns
    -------
    ``evaluate``'s dict (its setup from the largest n) with n {title: n}, protocol, seconds
    (the whole run)
    """
    titles = scored(methods)
    ns = protocol_n(list(titles), n, protocol)
    groups = {}
    for m, k in ns.items():
        groups.setdefault(k, []).append(m)
    start, rows, notes, res = time.perf_counter(), {}, {}, None
    for k in progress(sorted(groups, reverse=True), desc=f"evaluate {name or ''} by n"):
        part = evaluate(model, k, k, seed, methods=groups[k], name=name, options=options,
                        faithfulness=faithfulness, road=road, occlusion=occlusion)
        res = res or part
        rows.update(part["methods"])
        notes.update(part["notes"])
    return {**res, "methods": {t: rows[t] for t in titles.values()}, "notes": notes,
            "n": {titles[m]: k for m, k in ns.items()}, "protocol": protocol,
            "seconds": time.perf_counter() - start}


def photo_folder():
    """The folder of the photos that ship with matplotlib (its sample data: grace_hopper.jpg,
    Minduka_Present_Blue_Pack.png, and matplotlib's logo2.png)."""
    from matplotlib import cbook

    return os.path.dirname(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def photo_paths(folder):
    """The image files (``PHOTO_SUFFIXES``) directly in ``folder``, sorted by name."""
    if not os.path.isdir(folder):
        raise ValueError(f"not a folder: {folder}")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(PHOTO_SUFFIXES))
    if not paths:
        raise ValueError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return paths


def evaluate_photos(model, paths, methods=None, options=None, road=False,
                    occlusion=PHOTO_OCCLUSION, name="efficientnet_lite0", seed=0,
                    protocol="fast"):
    """The faithfulness columns of every method on photos, each photo's top-1 class explained.

    Parameters
    ----------
    model : the ImageNet model (``minicnn.zoo.efficientnet_lite0(pretrained=True)``)
    paths : image files; methods : registered names (None: all)
    options : {method: {option: value}}; the Occlusion row gets ``occlusion`` unless given here
    road : add ROAD's columns; occlusion : the occlusion reference's window and stride
    protocol : "fast" leaves out ``photo_slow()`` (n/a, with a note); "full" runs every method
    Returns
    -------
    dict: model, title, n (photos), seconds, methods {title: {key: mean} or None}, notes
    """
    from .images import model_input

    start = time.perf_counter()
    # NOTE: the photos go to the model's device once; the metrics keep them there
    x = asarray(np.concatenate([model_input(model, p)[0] for p in paths]), model.device)
    # NOTE: the command line passes {} for every chosen method: merge, so the Occlusion row
    # keeps the photo window unless the caller's options say otherwise
    options = dict(options or {})
    options["occlusion"] = {**occlusion, **options.get("occlusion", {})}
    failed, titles = {}, scored(methods)
    protocol_n(list(titles), 1, protocol)  # checks the protocol's name
    slow = photo_slow()
    skip = [m for m in titles if protocol == "fast" and m in slow]
    for m in skip:
        failed[titles[m]] = ("left out by the fast protocol: one forward of the whole network "
                             "per channel (1280) and noisy copy; --protocol full runs it")
    # the Occlusion row with the reference's options is the reference's run (not repeated)
    keep = {"occlusion": None} if options["occlusion"] == occlusion else {}
    maps, logits = explain_maps(model, x, None, methods=[m for m in titles if m not in skip],
                                options=options, errors=failed, keep=keep)
    target = logits.argmax(axis=1)
    occ = occlusion_reference(model, x, target, occlusion, row=keep.get("occlusion"))
    scores = faithfulness_scores(model, x, maps, target, occ, with_road=road, seed=seed)
    rows = {t: None if t not in scores else
            {k: float(np.nanmean(v) if k == "occlusion_rho" else np.mean(v))
             for k, v in scores[t].items()} for t in titles.values()}
    seconds = time.perf_counter() - start
    title = (f"{name} on {len(paths)} photos ({', '.join(os.path.basename(p) for p in paths)}), "
             f"top-1 class explained; occlusion window {occlusion['window']} stride "
             f"{occlusion['stride']}; {seconds:.1f} s")
    return {"model": name, "title": title, "n_photos": len(paths), "seconds": seconds,
            "target": to_numpy(target), "methods": rows, "notes": failed}


def curves_figure(model, path, n=8, seed=4000, methods=None, options=None, name="model"):
    """Deletion and insertion curves of every method (one panel each, ``gradcam.curves``) on
    ``n`` single shapes (``make_shapes(n, seed)``, the true class explained), with the
    evaluation's canvas (the blurred image) and steps; writes the PNG to ``path``.

    Returns
    -------
    {title: [deletion, insertion]} ``FaithfulnessCurve``s, arrays where the model is
    """
    from minicnn.data import make_shapes

    from .curves import plot_curves
    from .evaluate_faithfulness import DELETION_BASELINE
    from .metrics import deletion, insertion

    d = make_shapes(n, seed=seed)
    maps, _ = explain_maps(model, d.images, d.labels, methods=methods, options=options,
                           errors={})
    x = asarray(d.images, model.device)  # once, to the model's device
    curves = {t: [deletion(model, x, m, d.labels, baseline=DELETION_BASELINE),
                  insertion(model, x, m, d.labels)] for t, m in maps.items()}
    plot_curves(curves, path, title=f"{name}: deletion and insertion (canvas: blurred image), "
                f"{n} shapes, seed {seed}", cols=6)
    return curves
