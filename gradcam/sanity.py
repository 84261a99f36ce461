"""Sanity checks for explanation maps: does the map change when the model does?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292v3.

- Model parameter randomisation, Sec. 3.1 (``randomisation``): the layers' weights are drawn
  afresh and the map recomputed. "cascading": from the top layer down, one layer more at each
  step (the paper's Fig. 2); "independent": one layer at a time, the others trained.
- Data randomisation, Sec. 3.2 (``data_randomisation``): the same architecture trained on
  labels permuted at random (``gradcam.permuted.permuted_label_model``).

A method whose map stays similar to the trained model's while the model is destroyed does not
explain the model (the paper finds guided backprop so; Grad-CAM and the gradient are not).
Each step compares each method's map with the trained model's by the measures of
``gradcam.metrics.similarity``: Spearman's rank correlation of the signed maps, of their
absolute values, and SSIM and the correlation of HOG features of the maps as drawn.

    res = sanity.randomisation(model, x, target, methods=["gradcam", "guided-backprop"])
    res.steps              # ("trained", "fc", "conv4", ...): step 0 is the trained model
    res.spearman[m, s, n]  # method m, step s, image n (also spearman_abs, ssim, hog)
    res.maps[m, s]         # (N, H, W) the maps as drawn (the cascade figure)
    print(sanity.format_table(res))

"Randomised" means re-initialised as the layer was before training (Adebayo et al.
re-initialise the block's trainable variables): Conv2d He-uniform and Linear U(+-1/sqrt(in))
with zero biases, drawn from ``numpy.random.default_rng((seed, g))`` for the g-th layer group
from the top, so a group gets the same weights in both modes; batch norm's gamma and beta go
back to 1 and 0 and its running statistics (not trained by gradient) stay.
A layer group is a layer with parameters together with the batch norm right after it, or the
layers of one block (the part of the name before its last dot: "_blocks.3" of EfficientNet).
The caller's model is never changed: every step runs on a copy.
"""

from __future__ import annotations

import copy
import inspect
from typing import NamedTuple

import numpy as np

from minicnn import layers as Lyr
from minicnn.backend import get_xp, to_numpy

from .core import explain
from .engine import as_batch, eval_mode, model_class_names
from .metrics.similarity import hog_correlation, spearman, ssim
from .progress import progress
from .resize import resize
from .targets import resolve_target

__all__ = ["MODES", "SanityResult", "cascade_figure", "data_randomisation", "format_table",
           "layer_groups", "randomisation", "randomised", "sanity_maps"]

MODES = ("cascading", "independent")


class SanityResult(NamedTuple):
    """The similarity of each method's map to the trained model's, per step and image.

    mode : "cascading", "independent" or "data"
    steps : S step names; step 0 is the trained model ("trained"), then the layer groups
        randomised (cascading: down to and including that group; independent: only it)
    methods : M method names
    target : (N,) the classes explained (the trained model's, at every step)
    spearman, spearman_abs, ssim, hog : (M, S, N) float64 NumPy (step 0: 1 where defined)
    maps : (M, S, N, H, W) float32 NumPy, the maps as drawn and compared by SSIM, in [0, 1]
    """

    mode: str
    steps: tuple
    methods: tuple
    target: np.ndarray
    spearman: np.ndarray
    spearman_abs: np.ndarray
    ssim: np.ndarray
    hog: np.ndarray
    maps: np.ndarray


# --------------------------------------------------------------------------- the maps
def sanity_maps(r):
    """A result's signed map and its map as drawn, both (N, H, W) at the input's size.

    pixel methods: signed = sum_ch pixels, drawn = min(sum_ch |pixels| / q99, 1) with q99 the
    image's 99th percentile of sum_ch |pixels| (Adebayo et al.'s "diverging" and "absolute
    value" visualisations: the clip keeps a few extreme pixels from darkening the whole map);
    channel, position, network: signed = the linear map before Eq. (2)'s ReLU (resized
    bilinearly), drawn = the heatmap (ReLU, resized, divided by its max).
    """
    size = tuple(r.heatmap.shape[-2:])
    if r.pixels is not None:
        xp = get_xp(r.pixels)
        m = xp.abs(r.pixels).sum(axis=1)
        q = xp.percentile(m.reshape(m.shape[0], -1), 99, axis=1)[:, None, None]
        return r.pixels.sum(axis=1), xp.minimum(m / xp.where(q > 0, q, 1), 1)
    signed = r.linear_map
    if tuple(signed.shape[-2:]) != size:
        signed = resize(signed, size)
    return signed, r.heatmap


# --------------------------------------------------------------------------- randomising
def layer_groups(model):
    """The model's layers with parameters, grouped, from the top (output) down.

    Returns
    -------
    list of (group name, [layer names in forward order]); the name is the block's prefix
    ("_blocks.3") or the group's first layer ("conv4" for conv4 + bn4)
    """
    groups, last_block = [], None
    for name, layer in model.named_layers():
        if not layer.params:
            continue
        block = name.rsplit(".", 1)[0] if "." in name else None
        joins = groups and ((block is not None and block == last_block)
                            or (block is None and isinstance(layer, Lyr.BatchNorm2d)))
        if joins:
            groups[-1][1].append(name)
        else:
            groups.append((block or name, [name]))
        last_block = block
    return groups[::-1]


def _reinitialise(layer, rng):
    """Give ``layer`` the parameters a fresh layer of its config would have (drawn by rng)."""
    cfg = layer.config()
    cls = Lyr.LAYER_TYPES.get(cfg["type"])
    if cls is None:
        raise ValueError(f"cannot re-initialise a {cfg['type']} layer")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}
    if "rng" in inspect.signature(cls).parameters:
        kwargs["rng"] = rng
    fresh = cls(**kwargs)
    for k, old in layer.params.items():
        xp = get_xp(old)
        layer.params[k] = xp.asarray(fresh.params[k].astype(old.dtype, copy=False))


def randomised(model, mode="cascading", seed=0, groups=None):
    """The randomised copies of ``model``, one per step (a generator of (step name, model)).

    Parameters
    ----------
    model : minicnn.Sequential (left unchanged)
    mode : "cascading" (groups 0..g randomised at step g + 1) or "independent" (group g only)
    seed : the weights of group g are drawn from default_rng((seed, g))
    groups : layer groups (default ``layer_groups(model)``), top first
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    groups = layer_groups(model) if groups is None else groups
    m = model
    for g, (name, names) in enumerate(groups):
        # every step is a new copy (cascading: of the step before), so a caller may keep them
        m = copy.deepcopy(m if mode == "cascading" else model)
        table = dict(m.named_layers())
        rng = np.random.default_rng((seed, g))
        for n in names:
            _reinitialise(table[n], rng)
        yield name, m


# --------------------------------------------------------------------------- the checks
def _compare(models, x, target, methods, options, total, desc):
    """Run every method on every (step, model) and compare with step 0's maps (x: checked)."""
    steps, rows = [], {m: [] for m in methods}
    bar = progress(total=total * len(methods), desc=desc)
    first = {}
    for step, model in models:
        steps.append(step)
        for m in methods:
            r = explain(model, x, target, method=m, **options.get(m, {}))
            signed, drawn = sanity_maps(r)
            if m not in first:
                first[m] = (signed, drawn)
            s0, d0 = first[m]
            # NOTE: kept where the maps are; read back once at the end, not per step
            rows[m].append((spearman(s0, signed), spearman(s0, signed, absolute=True),
                            ssim(d0, drawn), hog_correlation(d0, drawn),
                            drawn.astype(np.float32, copy=False)))
            bar.update(1)
    bar.close()
    xp = get_xp(x)
    out = [xp.stack([xp.stack([row[i] for row in rows[m]]) for m in methods]) for i in range(5)]
    measures = to_numpy(xp.stack(out[:4]))  # (4, M, S, N) float64: one sync for the four
    return tuple(steps), [*measures, to_numpy(out[4])]


def _target(model, x, target):
    """(x checked once: finite, (N, C, H, W); on a device one sync), the classes to explain."""
    x = as_batch(x)
    with eval_mode(model):
        logits = model.forward(x)
    return x, resolve_target(target, logits, model_class_names(model))


def randomisation(model, x, target=None, methods=("gradcam", "guided-backprop"),
                  mode="cascading", seed=0, options=None, groups=None):
    """Adebayo et al.'s model parameter randomisation test (Sec. 3.1, Figs. 2 and 4).

    sim[m, s, n] = similarity(map_m(trained, x_n), map_m(randomised_s, x_n))

    Parameters
    ----------
    model : minicnn.Sequential, trained (left unchanged: every step runs on a copy)
    x : (N, C, H, W) input; target : as for ``gradcam.explain``, resolved on the trained model
        and kept at every step
    methods : registered method names (``gradcam.methods()``)
    mode : "cascading" (top group down, one more each step) or "independent" (one at a time)
    seed : seeds the re-initialised weights (module docstring)
    options : optional {method name: its options}
    groups : optional layer groups (``layer_groups``), top first; e.g. a subset to save time
    Returns
    -------
    SanityResult with S = 1 + len(groups) steps
    """
    groups = layer_groups(model) if groups is None else list(groups)
    x, c = _target(model, x, target)
    models = [("trained", model)]
    chain = randomised(model, mode, seed, groups)
    steps, measures = _compare(_chain(models, chain), x, c, list(methods), options or {},
                               1 + len(groups), f"sanity {mode}")
    return SanityResult(mode, steps, tuple(methods), c, *measures)


def _chain(first, rest):
    yield from first
    yield from rest


def data_randomisation(model, random_model, x, target=None,
                       methods=("gradcam", "guided-backprop"), options=None):
    """Adebayo et al.'s data randomisation test (Sec. 3.2): the maps of ``model`` against
    those of the same architecture trained on permuted labels (``random_model``).

    sim[m, 1, n] = similarity(map_m(model, x_n), map_m(random_model, x_n))

    The test needs a ``random_model`` that has memorised its permuted labels (the paper's
    networks fit them perfectly): ``gradcam.permuted.permuted_label_model``'s recipe does,
    and its ``model.permuted`` states the train accuracy on the permuted labels.

    Returns
    -------
    SanityResult, mode "data", steps ("trained", "permuted labels")
    """
    x, c = _target(model, x, target)
    steps, measures = _compare([("trained", model), ("permuted labels", random_model)], x, c,
                               list(methods), options or {}, 2, "sanity data")
    return SanityResult("data", steps, tuple(methods), c, *measures)


def format_table(res, markdown=False):
    """The table: a row per method and step, the mean over images of each measure."""
    head = ("method", "step", "Spearman", "Spearman abs", "SSIM", "HOG")
    rows = [(m, step, *(f"{np.nanmean(a[i, s]):.3f}" if np.isfinite(a[i, s]).any() else "nan"
                        for a in (res.spearman, res.spearman_abs, res.ssim, res.hog)))
            for i, m in enumerate(res.methods) for s, step in enumerate(res.steps)]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    width = [max(len(str(r[k])) for r in rows + [head]) for k in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if k < 2 else f"{{:>{w}}}" for k, w in enumerate(width))
    return "\n".join(fmt.format(*r) for r in [head] + rows)


def cascade_figure(res, image, n=0, path=None, title=None):
    """Adebayo et al.'s Fig. 2 for image ``n``: a row per method, a column per step.

    Parameters
    ----------
    res : SanityResult;  image : the picture of image n (H, W, 3) or (H, W), drawn first
    path : write a PNG there (returns the absolute path); None: return the Figure
    """
    from . import viz

    titles = ["Image"] + [s if s in ("trained", "permuted labels") or res.mode != "cascading"
                          else f"down to {s}" for s in res.steps]
    gray = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    img = viz.as_rgb(image)
    cells = [[img] + [(res.maps[i, s, n], gray) for s in range(len(res.steps))]
             for i in range(len(res.methods))]
    fig = viz._grid(cells, titles, list(res.methods), title)
    return fig if path is None else viz.save_png(fig, path)
