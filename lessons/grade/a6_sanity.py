"""A6, ``lessons/assignments/06_sanity.py``: a model-randomisation sanity check (Adebayo et al.).

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292: randomise a
trained model's layers from the top down, one more each step (cascading), recompute the map,
and measure how similar it stays (Spearman rank correlation). A map that does not change when
the weights it claims to explain are destroyed explains nothing about them. The student writes
``spearman(a, b)``, ``randomise_layer(model, name, rng)`` and
``cascading_randomisation(model, layers, explain, x, c, rng) -> (len(layers), N)``. The
reference is written out here (``ref_spearman``, ``ref_cascade``), independent of the
library's ``gradcam.sanity``.

Parts (8 points):
    1. spearman (3): maps without ties, then maps with many ties (a ReLU's zeros); Pearson's
       correlation of the values, and ranks that do not average ties, get their own messages.
    2. randomise_layer (2): the parameters after the call, against the reference draws.
    3. cascading_randomisation (3): on the A3 random net with Grad-CAM heatmaps at relu2,
       layers ("fc", "conv2", "conv1"); the independent randomisation, and a model left
       randomised after the call, get their own messages.

Hidden cases: spearman: k = 1400..1402 (64 values, no ties) and 1403..1405 (max(0, normal):
about half zeros), from ``ctx.rng(k)``; randomise_layer: the A3 net drawn from ``ctx.rng(1410)``,
layer "conv2", rng ``default_rng([seed, 1411])``; cascade: the net from ``ctx.rng(1420)``,
x (2, 2, 6, 6) and classes [1, 2] from ``ctx.rng(1421)``, rng ``default_rng([seed, 1422])``.
"""

from __future__ import annotations

import copy
import types

import numpy as np

from .a3_gradcam import tiny_net
from .harness import Assignment, Fail, Part, close, diagnose, matches

LAYERS = ("fc", "conv2", "conv1")


def ref_ranks(a, average=True):
    """Ranks 0..n-1 of a's entries (flattened); tied entries share the average of their ranks."""
    a = np.asarray(a, dtype=np.float64).ravel()
    r = np.empty(a.size)
    r[np.argsort(a, kind="stable")] = np.arange(a.size)
    if not average:
        return r
    _, inv = np.unique(a, return_inverse=True)
    return (np.bincount(inv, r) / np.bincount(inv))[inv]


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return 0.0 if den == 0 else float((a * b).sum() / den)


def ref_spearman(a, b, average=True):
    """Spearman's rho: Pearson's correlation of the ranks; 0.0 when either map is constant."""
    return _pearson(ref_ranks(a, average), ref_ranks(b, average))


def ref_randomise(model, name, rng):
    """In place: every parameter p of layer ``name`` (keys sorted) <- normal * p.std()."""
    params = model[name].params
    for key in sorted(params):
        p = params[key]
        params[key] = (rng.standard_normal(p.shape) * p.std()).astype(p.dtype)


def ref_cascade(model, layers, explain, x, c, rng, cascading=True):
    trained = explain(model, x, c)
    out, current = [], copy.deepcopy(model)
    for name in layers:
        if not cascading:
            current = copy.deepcopy(model)
        ref_randomise(current, name, rng)
        maps = explain(current, x, c)
        out.append([ref_spearman(trained[n], maps[n]) for n in range(len(x))])
    return np.array(out)


def gradcam_explain(model, x, c):
    """The explanation the grader passes: Grad-CAM's heatmap at relu2, (N, H, W)."""
    import gradcam

    return gradcam.grad_cam(model, x, c, layer="relu2").heatmap


def _params(model):
    return np.concatenate([np.ravel(p) for _, lay in model.named_layers()
                           for _, p in sorted(lay.params.items())])


def a6_spearman(student, ctx):
    for k in range(6):
        r = ctx.rng(1400 + k)
        a, b = r.standard_normal(64), r.standard_normal(64)
        if k >= 3:
            a, b = np.maximum(a, 0).reshape(8, 8), np.maximum(b + 0.5 * a, 0).reshape(8, 8)
        got = student.spearman(a, b)
        case = "maps of 64 values" + (", about half of them 0 (ties)" if k >= 3 else "")
        diagnose(got, [("that is Pearson's correlation of the VALUES; Spearman's is Pearson's "
                        "correlation of their RANKS", lambda: _pearson(np.ravel(a), np.ravel(b)))]
                 + ([("tied values must share the AVERAGE of their ranks (a ReLU map has many "
                      "zeros)", lambda: ref_spearman(a, b, average=False))] if k >= 3 else []))
        close(got, lambda: ref_spearman(a, b), "rho", rtol=1e-9, atol=1e-12, case=case)


def a6_randomise(student, ctx):
    net = tiny_net(ctx.rng(1410))
    rng = np.random.default_rng([ctx.seed, 1411])
    after = ctx.call("randomise_layer", lambda: (student.raw("randomise_layer")(net, "conv2", rng),
                                                 _params(net))[1])

    def expected():
        ref = tiny_net(ctx.rng(1410))
        ref_randomise(ref, "conv2", np.random.default_rng([ctx.seed, 1411]))
        return _params(ref)

    close(after, expected, "the net's parameters after randomise_layer(net, 'conv2', rng)")


def a6_cascade(student, ctx):
    net = tiny_net(ctx.rng(1420))
    r = ctx.rng(1421)
    x, c = r.standard_normal((2, 2, 6, 6)), np.array([1, 2])
    rng = np.random.default_rng([ctx.seed, 1422])
    got = student.cascading_randomisation(net, list(LAYERS), gradcam_explain, x, c, rng)
    after = ctx.call("the model's parameters afterwards", lambda: _params(net))

    def ref(cascading=True):
        return ref_cascade(tiny_net(ctx.rng(1420)), LAYERS, gradcam_explain, x, c,
                           np.random.default_rng([ctx.seed, 1422]), cascading)

    diagnose(got, [("that is the INDEPENDENT randomisation (one layer at a time); the cascade "
                    "keeps the layers randomised so far and randomises one more each step",
                    lambda: ref(False))])
    close(got, ref, "rank correlations", rtol=1e-6, atol=1e-9,
          case=f"the A3 random net, layers {LAYERS}, Grad-CAM at relu2")
    if not matches(after, _params(tiny_net(ctx.rng(1420)))):
        raise Fail("cascading_randomisation changed the model it was given: randomise a copy "
                   "(copy.deepcopy(model))")


def reference():
    """For ``--solutions``: the reference written out in this module."""
    return types.SimpleNamespace(
        spearman=ref_spearman, randomise_layer=ref_randomise,
        cascading_randomisation=lambda model, layers, explain, x, c, rng: ref_cascade(
            model, layers, explain, x, c, rng))


A6 = Assignment("A6", "06_sanity.py", "a model-randomisation sanity check (Adebayo et al.)",
                ("spearman", "randomise_layer", "cascading_randomisation"), (),
                reference, "lessons.grade.a6_sanity.ref_spearman / ref_randomise / ref_cascade", [
    Part("spearman: rank correlation, with and without ties", 3,
         "rank both maps (flattened), give tied values the average of their ranks, then take "
         "Pearson's correlation of the ranks; 0.0 when a map is constant", a6_spearman),
    Part("randomise_layer: the draws, in place", 2,
         "for key in sorted(params): params[key] = (rng.standard_normal(p.shape) * p.std())"
         ".astype(p.dtype), in that order (the draws must follow the same order)", a6_randomise),
    Part("cascading_randomisation: Grad-CAM on a random net, top layer first", 3,
         "explain the trained model once; then on ONE copy randomise layers[0], explain, "
         "randomise layers[1] too, explain, ...; rho per step and image: (len(layers), N)",
         a6_cascade),
])
