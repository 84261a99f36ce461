"""Compare a user's map for ANY registered method with ours and the peers' conventions.

    c = compare_method(user_map, model, x, "scorecam", target, layer)
    print(c.format());  c.status, c.closest, c.diagnosis

``gradcam.compare.compare`` diagnoses a Grad-CAM map structurally (layer, ReLU, resize,
normalisation); for the rest of the family the question is rather which formula and which
library's pipeline made the map. Each candidate is one formula (the paper's, ``variant=None``,
or a registered peer variant, ``gradcam.registry.variants``) through one rendering:

    minicnn          the result's ``heatmap`` (bilinear, half-pixel, / max)
    minicnn-coarse   the result's ``coarse`` map L^c = ReLU(linear_map) at the layer's size
    pytorch-grad-cam ``conventions.from_result("pytorch-grad-cam", r)`` (min-max, cv2 resize)
    torchcam         ``conventions.from_result("torchcam", r)`` (min-max at the layer's size,
                     or Pillow's bicubic to the user's size)

A candidate matches when max |user - candidate| <= tol * (max - min of the user's map); one that
only matches after a least-squares affine map a * M + b (a > 0) is reported as "up to
normalisation". Status as ``compare``'s: 0 the paper's formula as minicnn renders it, 1 another
named formula or rendering, 2 nothing matches. Pixel-space methods (saliency, ...) have one
rendering, their ``heatmap``.
"""

from __future__ import annotations

import numpy as np

from . import conventions as C
from .compare import Comparison, _stats, affine_fit
from .core import explain
from .registry import get_method, variants
from .userfiles import DEFAULT_TOL, CompareError, as_map, check_tol

PEERS = ("pytorch-grad-cam", "torchcam")


def renderings(r, shape):
    """{rendering name: (H, W) map of image 0} for one result, at the user's ``shape`` where the
    rendering resizes (a rendering that cannot give that shape is left out)."""
    out = {"minicnn": r.heatmap[0]}
    if r.coarse is not None:
        out["minicnn-coarse"] = r.coarse[0]
        out["pytorch-grad-cam"] = C.from_result("pytorch-grad-cam", r, shape)[0]
        size = None if tuple(r.coarse.shape[-2:]) == tuple(shape) else shape
        out["torchcam"] = C.from_result("torchcam", r, size)[0]
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()
            if tuple(v.shape) == tuple(shape)}


def compare_method(user_map, model, x, method, target=None, layer=None, tol=DEFAULT_TOL,
                   **options):
    """Which formula (paper or a peer's) and which rendering made ``user_map``?

    Parameters
    ----------
    user_map : (H, W) array (or (1, H, W))
    model : minicnn.Sequential;  x : one image, (C, H, W) or (1, C, H, W)
    method : a registered method name;  target, layer : as for ``gradcam.explain``
    tol : relative tolerance;  **options : the method's options (e.g. ``noise`` for SS-CAM)
    Returns
    -------
    gradcam.compare.Comparison (``best`` is None; ``rows`` one per formula and rendering)
    """
    m = get_method(method)
    U, tol = as_map(user_map), check_tol(tol)
    x = np.asarray(x) if not hasattr(x, "shape") else x
    if x.ndim == 4 and x.shape[0] != 1:
        raise CompareError(f"compare explains one image at a time; got a batch of {x.shape[0]}")
    formulas = [None] + [v for v in PEERS if v in variants(m.name)]
    span = float(np.nanmax(U) - np.nanmin(U)) or 1.0
    rows, exact, affine = [], [], []
    r0 = None
    for variant in formulas:
        r = explain(model, x, target, m.name, layer, variant=variant, **options)
        if r0 is None:
            r0 = r
        formula = "paper" if variant is None else variant
        for rendering, M in renderings(r, U.shape).items():
            name = f"{formula} + {rendering}"
            diff, same_nan, corr = _stats(U, M)
            ok = same_nan and diff <= tol * span
            rows.append((name, diff, diff / span, corr, ok, ""))
            if ok:
                exact.append(name)
            elif np.isfinite(U).all() and float(M.max() - M.min()) > 0:
                a, _, res = affine_fit(U, M)
                if a > 0 and res <= tol:
                    affine.append(name)
    paper = {"paper + minicnn", "paper + minicnn-coarse"}
    if paper & set(exact):
        status, closest = 0, ", ".join(n for n in exact if n in paper)
        diagnosis = f"matches minicnn's {m.title} ({m.citation})"
    elif exact:
        status, closest = 1, ", ".join(exact)
        diagnosis = f"follows {exact[0]}" + _why(m.name, exact[0])
    elif affine:
        status, closest = 1, ", ".join(affine)
        diagnosis = f"follows {affine[0]} up to a normalisation (a * map + b)" \
            + _why(m.name, affine[0])
    else:
        status = 2
        scored = [(row[3], row[0]) for row in rows if np.isfinite(row[3])]
        corr, closest = max(scored) if scored else (np.nan, "none")
        diagnosis = (f"no formula or rendering matches (best correlation {corr:.3f}, with "
                     f"{closest}); check the target, the layer, the options (noise, seed) and "
                     "the weights")
    return Comparison(r0.layer, int(r0.target[0]), U.shape, tol, rows, None, closest,
                      diagnosis, status)


def _why(method, name):
    """': <how that peer's formula departs from the paper>' for a peer formula, else ''."""
    formula = name.split(" + ")[0]
    why = variants(method).get(formula)
    return f": {formula}'s formula, which departs from the paper ({why})" if why else ""
