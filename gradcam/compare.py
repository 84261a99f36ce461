"""Compare a user's Grad-CAM heatmap with ours and say which convention it follows.

    r = gradcam.compare.compare(user_map, model, x, target, layer)
    print(r.format());  r.status, r.closest, r.diagnosis

The command line ``gradcam compare HEATMAP INPUT --model NAME_OR_PATH [--weights FILE] ...``
(``gradcam/cli/compare.py``) reads the files with ``gradcam.userfiles`` and calls ``compare``.

Given the user's map, the input x, our model, the layer and the target (on the command line:
the map as ``.npy``, ``.npz`` or a grayscale PNG, the input as an image file or a preprocessed
``.npy``/``.npz`` array, our model as a zoo name or a model file, or with ``--weights`` their
torch weights imported as in ``minicnn.torch_import``), it reports:

1. the difference to every preset of ``gradcam.conventions`` evaluated on our A and dy^c/dA
   (max abs difference, relative to the preset's peak, and correlation), and which match;
2. the closest convention, found by a search over the structural choices (the layer and its
   neighbours before/after it, ReLU on/off, half-pixel/corner-aligned bilinear/nearest
   upsampling), each fitted to the user's map up to an affine map ``a * M + b`` (which absorbs
   every normalisation and summed-vs-averaged gradients), and then the (a, b) named: none,
   ``a = Z`` (gradients summed: alphas Z = u*v times ours), / max, min-max, before or after
   resizing;
3. with ``--alphas`` (their per-channel weights, (K,)): the ratio to ours;
4. a one-line diagnosis, e.g. "matches up to min-max normalisation", "alphas are 196x ours:
   gradients summed, not averaged", "upsampled with nearest", "corner-aligned bilinear".

Status (``Comparison.status``; the command's exit status, for a user's CI): 0 the map is ours
(preset ``minicnn``, or ``minicnn-coarse`` for a raw coarse map) within the tolerance; 1 it
follows another convention (named); 2 nothing matches. Bad input raises ``CompareError`` (the
command: one ``gradcam: error:`` line and exit status 3, never a verdict's status).

Tolerance: max |user - fitted| <= tol * (max - min of the user's map); default 1e-4 for arrays,
and 2/255 (2/65535 for 16-bit) for PNGs, whose 8-bit steps are coarser than any float error.
Colour-mapped (RGB) PNGs are refused: a colormap is not reliably invertible (jet's channels
are not monotonic, overlays blend in the photo, JPEG shifts colours); save the map itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import conventions as C
from .core import grad_cam
from .userfiles import DEFAULT_TOL, CompareError, as_alphas, as_map, check_tol

NEIGHBOURS = 2  # layers tried on each side of the explained one (before/after ReLU, pool, ...)


# --------------------------------------------------------------------------- fitting
def _stats(U, M):
    """max |U - M| over positions finite in both, NaN patterns equal?, Pearson correlation."""
    nan_u, nan_m = np.isnan(U), np.isnan(M)
    ok = ~(nan_u | nan_m)
    diff = float(np.max(np.abs(U[ok] - M[ok]))) if ok.any() else 0.0
    return diff, bool(np.array_equal(nan_u, nan_m)), _corr(U[ok], M[ok])


def _corr(u, m):
    """Pearson correlation (NaN when either side is constant).

    NOTE: elementwise sums rather than ``@``/``corrcoef``: for these single vectors a BLAS call
    costs more in thread hand-off than in arithmetic (10 ms vs 30 us on a busy 2-core box).
    """
    if u.size < 2:
        return np.nan
    du, dm = u - u.mean(), m - m.mean()
    # NOTE: each side over its largest deviation first: raw maps can reach 1e89 (Grad-CAM++'s
    # exp(y^c)), whose squares would overflow
    su, sm = float(np.max(np.abs(du))), float(np.max(np.abs(dm)))
    if su == 0.0 or sm == 0.0:
        return np.nan
    du, dm = du / su, dm / sm
    den = np.sqrt(np.sum(du * du) * np.sum(dm * dm))
    return float(np.sum(du * dm) / den) if den > 0 else np.nan


def affine_fit(U, M):
    """Least-squares U ~ a * M + b. Returns (a, b, residual), residual = max|U - aM - b| /
    (max U - min U); a constant U fits only a constant M (residual 0), else residual inf."""
    u, m = U.ravel(), M.ravel()
    span_u = float(u.max() - u.min())
    mc = m - m.mean()
    var = float(np.sum(mc * mc))  # sums, not BLAS dots: see _corr
    if span_u == 0.0:
        return 0.0, float(u.mean()), (0.0 if var == 0.0 else np.inf)
    if var <= 1e-300:
        return 0.0, float(u.mean()), np.inf
    a = float(np.sum(mc * (u - u.mean()))) / var
    b = float(u.mean() - a * m.mean())
    return a, b, float(np.max(np.abs(u - a * m - b))) / span_u


@dataclass
class Candidate:
    """One structural choice (layer, ReLU, resize) fitted to the user's map."""

    layer: str
    offset: int  # position relative to the explained layer (-1: the one before it)
    kind: str  # the layer's type name
    relu: bool
    resize: str | None
    a: float
    b: float
    residual: float
    corr: float
    M: np.ndarray = field(repr=False)
    coarse: np.ndarray = field(repr=False)
    Z: int = 1

    def differences(self, layer, layer_kind=""):
        """What differs from minicnn's structure, in words."""
        out = []
        if self.offset:
            where = "before" if self.offset < 0 else "after"
            n = abs(self.offset)
            nth = "the layer" if n == 1 else f"{n} layers"
            kind = f" ({layer_kind})" if layer_kind else ""
            out.append(f"A taken at {self.layer} ({self.kind}), {nth} {where} {layer}{kind}")
        if not self.relu:
            out.append("ReLU off (negative values kept)")
        if self.resize == "nearest":
            out.append("upsampled with nearest")
        elif self.resize == "bilinear-corners":
            out.append("corner-aligned bilinear (align_corners=True)")
        return out


def _normalisation(c, tol):
    """Name the affine map (a, b) from the candidate's raw map to the user's.

    Returns (keys, phrase): keys, the set of hypotheses that fit equally well ("none", "sum",
    "max", "max-before", "minmax", "minmax-before"; empty if none fits), and a phrase for the
    best one. "max" (after resizing) is minicnn's own.
    """
    M, cm = c.M, c.coarse
    hyp = [("none", "no normalisation (the raw map)", 1.0, 0.0),
           ("sum", f"alphas are {c.Z}x ours: gradients summed, not averaged", float(c.Z), 0.0)]
    peak = float(np.abs(M).max())
    if peak > 0:
        hyp.append(("maxabs", "normalisation by max |x|", 1.0 / peak, 0.0))
    for key, where, m in (("", "", M), ("-before", " before resizing", cm)):
        lo, hi = float(m.min()), float(m.max())
        if hi > 0:
            hyp.append(("max" + key, f"max normalisation{where}", 1.0 / hi, 0.0))
        if hi > lo:
            hyp.append(("minmax" + key, f"min-max normalisation{where}", 1.0 / (hi - lo),
                        -lo / (hi - lo)))
    span = float(M.max() - M.min()) or 1.0
    ntol = max(10 * tol, 1e-3)

    def dist(h):
        return max(abs(c.a / h[2] - 1.0), abs(c.b - h[3]) / (abs(h[2]) * span))

    fits = sorted((h for h in hyp if dist(h) <= ntol), key=dist)
    if not fits:
        return set(), f"a scale {c.a:.4g} and offset {c.b:+.4g} (an unrecognised normalisation)"
    keys = {h[0] for h in fits}
    phrase = fits[0][1]
    if len(fits) > 1 and fits[0][0].startswith(("max", "minmax")):
        phrase += f" (= {fits[1][1]} here: the map's minimum is 0)"
    return keys, phrase


def _linear_maps(model, x, target, names):
    """sum_k alpha_k A^k (Eq. (1) weights, mean) at every layer in ``names``: ONE forward pass
    keeping them all, then one backward per layer, each stopped at it (the forward's caches
    are reused, so each costs only the layers above it)."""
    from .core import eval_mode
    from .targets import class_score

    out = {}
    with eval_mode(model):
        logits = model.forward(x, keep=names)
        dy = class_score(target)(logits)
        for n in names:
            dA = model.backward(dy, stop_at=n, need_dw=False)
            out[n] = np.asarray(C.linear_map(model.activations[n], dA)[0], dtype=np.float64)
    return out


def candidates(U, model, x, target, layer):
    """Grad-CAM at ``layer`` and its neighbours, every ReLU/resize choice, fitted to ``U``."""
    r = grad_cam(model, x, target, layer)
    layer = r.layer
    spatial = [n for n, s in model.shapes.items()
               if len(s) == 4 and s[2] * s[3] > 1 and not hasattr(model[n], "layers")]
    i = spatial.index(layer) if layer in spatial else None
    names = [layer] if i is None else spatial[max(0, i - NEIGHBOURS): i + NEIGHBOURS + 1]
    maps = _linear_maps(model, x, r.target.tolist(), [n for n in names if n != layer])
    maps[layer] = np.asarray(r.linear_map[0], dtype=np.float64)
    U0 = np.nan_to_num(U)
    out = []
    for name in names:
        lin = maps[name]  # the map before the ReLU
        u, v = lin.shape
        off = 0 if i is None else spatial.index(name) - i
        for use_relu in (True, False):
            cm = np.maximum(lin, 0) if use_relu else lin
            kinds = [None] if (u, v) == U.shape else list(C.RESIZE_MODES)
            for kind in kinds:
                M = cm if kind is None else C.upsample(cm[None], U.shape, kind)[0]
                a, b, res = affine_fit(U0, M)
                out.append(Candidate(name, off, type(model[name]).__name__, use_relu, kind,
                                     a, b, res, _stats(U, M)[2], M, cm, u * v))
    return r, out


# --------------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """The result of ``compare``: per-preset rows, the best structural fit, the verdict."""

    layer: str
    target: int
    shape: tuple
    tol: float
    rows: list  # (preset, max_abs, rel, corr, match, note)
    best: Candidate | None
    closest: str
    diagnosis: str
    status: int
    alpha_note: str = ""

    def format(self):
        """The text ``gradcam compare`` prints: a row per convention, the closest, the diagnosis."""
        w = max([18] + [len(row[0]) for row in self.rows])
        lines = [(f"layer {self.layer}, target {self.target}, your map {self.shape[0]}x"
                  f"{self.shape[1]}, tolerance {self.tol:.3g} (relative)"),
                 f"{'convention':<{w}} {'max|diff|':>10} {'rel':>9} {'corr':>7}  match"]
        for name, diff, rel, corr, match, note in self.rows:
            if note:
                lines.append(f"{name:<{w}} {'-':>10} {'-':>9} {'-':>7}  {note}")
            else:
                lines.append(f"{name:<{w}} {diff:>10.3g} {rel:>9.2g} {corr:>7.4f}  "
                             f"{'yes' if match else 'no'}")
        lines.append(f"closest convention: {self.closest}")
        lines.append(f"diagnosis: {self.diagnosis}")
        return "\n".join(lines)


def _alpha_note(alphas, ours, Z):
    a, o = np.asarray(alphas, dtype=np.float64).ravel(), np.asarray(ours, np.float64).ravel()
    if a.shape != o.shape:
        raise CompareError(f"alphas: {a.size} values, but the layer has {o.size} channels")
    big = np.abs(o) > 1e-12 * max(np.abs(o).max(), 1e-300)
    ratio = a[big] / o[big]
    k = float(np.median(ratio)) if ratio.size else np.nan
    if ratio.size and np.allclose(ratio, k, rtol=1e-4, atol=0):
        if np.isclose(k, 1.0, rtol=1e-4):
            return "alphas match ours"
        if np.isclose(k, Z, rtol=1e-4):
            return f"alphas are {Z}x ours: gradients summed, not averaged"
        if np.isclose(k, -1.0, rtol=1e-4):
            return "alphas are -1x ours: negated gradients (the counterfactual)"
        return f"alphas are {k:.4g}x ours (a constant factor)"
    c = np.corrcoef(a, o)[0, 1] if a.size > 1 and a.std() > 0 and o.std() > 0 else np.nan
    return f"alphas differ from ours (correlation {c:.3f}): another target, layer or model?"


def _verdict(parts, norm):
    """"matches up to <normalisation>" when only that differs, else "matches minicnn except"."""
    if parts == [norm]:
        return f"matches up to {norm}"
    return "matches minicnn except: " + "; ".join(parts)


def compare(user_map, model, x, target=None, layer=None, alphas=None, tol=DEFAULT_TOL):
    """Compare a user's heatmap with ours under every convention; see the module docstring.

    Parameters
    ----------
    user_map : (H, W) array (or (1, H, W)), finite, or all NaN (Keras' 0/0); a map with some
        NaN pixels or any inf is refused (CompareError)
    model : minicnn.Sequential;  x : one image, (C, H, W) or (1, C, H, W)
    target, layer : as for ``gradcam.grad_cam`` (None: top-1; the last spatial layer)
    alphas : optional (K,) finite channel weights the user computed
    tol : relative tolerance, a finite number > 0 (see the module docstring)
    Returns
    -------
    Comparison (``status`` 0 ours, 1 another convention, 2 no match)
    """
    U, tol = as_map(user_map), check_tol(tol)
    alphas = None if alphas is None else as_alphas(alphas)
    x = np.asarray(x) if not hasattr(x, "shape") else x
    if x.ndim == 4 and x.shape[0] != 1:
        raise CompareError(f"compare explains one image at a time; got a batch of {x.shape[0]}")
    r, cands = candidates(U, model, x, target, layer)
    A, dA = r.activations, r.gradients
    rows, matched = [], []
    for name, fn in C.PRESETS.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            M = np.asarray(fn(A, dA, U.shape)[0], dtype=np.float64)
        if M.shape != U.shape:
            rows.append((name, 0, 0, 0, False, f"n/a: gives the {M.shape[0]}x{M.shape[1]} map"))
            continue
        diff, same_nan, corr = _stats(U, M)
        peak = float(np.nanmax(np.abs(M))) if not np.isnan(M).all() else 0.0
        rel = diff / peak if peak > 0 else (0.0 if diff == 0 else np.inf)
        ok = same_nan and rel <= tol
        rows.append((name, diff, rel, corr, ok, ""))
        if ok:
            matched.append(name)
    constant = bool(np.nanmax(U) == np.nanmin(U)) if not np.isnan(U).all() else True
    # NOTE: a constant map fits any constant candidate (e.g. an all-zero ReLU map at some
    # neighbouring layer), which proves nothing; only a preset match counts for it
    good = [] if constant else [c for c in cands if c.residual <= tol and c.a > 0]
    kind = type(model[r.layer]).__name__
    if good:
        best = min(good, key=lambda c: (len(c.differences(r.layer)), c.residual))
        keys, norm = _normalisation(best, tol)
    else:
        best = min(cands, key=lambda c: c.residual)
        keys, norm = set(), ""
    note = "" if alphas is None else _alpha_note(alphas, r.weights[0], best.Z)
    parts = best.differences(r.layer, kind) + ([norm] if norm and "max" not in keys else [])
    if note and note not in parts and note != "alphas match ours":
        parts.append(note)
    if {"minicnn", "minicnn-coarse"} & set(matched):
        status = 0
        name = "minicnn" if "minicnn" in matched else "minicnn-coarse"
        others = [m for m in matched if m != name]
        closest = name + (f" (also {', '.join(others)}: identical on this map)" if others else "")
        diagnosis = f"matches minicnn's reference ({C.describe(C.PRESETS[name].spec)})"
    elif matched:
        status, closest = 1, ", ".join(matched)
        diagnosis = f"follows {matched[0]} ({C.describe(C.PRESETS[matched[0]].spec)})"
        if parts:
            diagnosis += ": " + _verdict(parts, norm)
    elif np.isnan(U).all():
        status, closest = 2, "none"
        diagnosis = ("your map is all NaN; the Keras tutorial's ReLU(x)/max(x) gives that only "
                     "when max(x) = 0, which is not the case here")
    elif constant:
        status, closest = 2, "none"
        diagnosis = (f"your map is constant ({float(np.nanmax(U)):.4g} everywhere) and ours is "
                     "not: check the target, the layer, the input preprocessing and the weights")
    elif good:
        status, closest = 1, "minicnn with other choices"
        diagnosis = _verdict(parts or [norm], norm)
    else:
        status = 2
        scored = [(row[3], row[0]) for row in rows if not row[5] and np.isfinite(row[3])]
        corr, closest = max(scored) if scored else (np.nan, "none")
        diagnosis = (f"no convention matches (best correlation {corr:.3f}, with {closest}); "
                     "check the target, the layer, the input preprocessing and the weights")
    if note and note not in diagnosis:
        diagnosis += f"; {note}"
    return Comparison(r.layer, int(r.target[0]), U.shape, tol, rows, best, closest, diagnosis,
                      status, note)
