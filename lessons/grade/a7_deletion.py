"""A7, ``lessons/assignments/07_deletion.py``: the deletion curve and its AUC (Petsiuk et al.).

Petsiuk et al., "RISE", BMVC 2018, arXiv:1806.07421 (the deletion metric): delete the pixels
most salient first, a fixed fraction per step, and follow the class probability; a faithful
map makes it fall fast, so a LOW area under the curve is good. The student writes
``deletion_curve(model, x, saliency, c, steps) -> (N, steps + 1)`` and ``auc(curve) -> (N,)``.
The reference is written out here (``ref_deletion``, ``ref_auc``), independent of the library's
``gradcam.metrics``.

    order  = np.argsort(-saliency[n].ravel(), kind="stable")        (most salient first)
    step t = 0..steps: the first (t * H * W) // steps pixels of the order set to 0 in every
             channel; curve[n, t] = softmax(model.forward(x_t))[n, c[n]]
    auc    = trapezoid rule on t / steps in [0, 1]: sum_t (curve[t] + curve[t+1]) / (2 steps)

Parts (7 points):
    1. deletion_curve on the A3 random net (3): x (2, 2, 6, 6), random saliency, steps 6 and
       4 (36 pixels: 6 and 9 per step); the least-salient-first order, and logits in place of
       probabilities, get their own messages.
    2. deletion_curve on ``zoo.shapes_cnn`` (2): 2 hidden scenes, Grad-CAM's heatmap at relu4
       plus a tiny ramp (1e-9 * index: no ties), steps 8.
    3. auc (2): 4 hidden curves; the mean of the points (rectangles) gets its own message.

Hidden cases: part 1: the net from ``ctx.rng(1500)``, x and saliency from ``ctx.rng(1501)``,
classes [0, 2]; part 2: ``ctx.rng(1510)`` draws the scenes' seed; part 3: k = 1520..1523,
curves (N in 1..3, steps in 2..20) uniform in [0, 1].
"""

from __future__ import annotations

import types

import numpy as np

from .a3_gradcam import tiny_net
from .harness import Assignment, Part, close, diagnose


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_deletion(model, x, saliency, c, steps, order="most", score="prob"):
    """The deletion curve (N, steps + 1); ``order``/``score`` give the typical mistakes."""
    N, C, H, W = x.shape
    c = np.asarray(c)
    curve = np.empty((N, steps + 1))
    for n in range(N):
        s = np.asarray(saliency[n], dtype=np.float64).ravel()
        idx = np.argsort(-s if order == "most" else s, kind="stable")
        batch = np.repeat(x[n:n + 1], steps + 1, axis=0)
        for t in range(steps + 1):
            i, j = np.unravel_index(idx[:(t * H * W) // steps], (H, W))
            batch[t, :, i, j] = 0
        logits = model.forward(batch)
        out = _softmax(logits) if score == "prob" else logits
        curve[n] = out[:, c[n]]
    return curve


def ref_auc(curve):
    curve = np.asarray(curve, dtype=np.float64)
    return (curve[:, 1:] + curve[:, :-1]).sum(axis=1) / (2 * (curve.shape[1] - 1))


def _check_curve(student, net, x, sal, c, steps, case, rtol):
    got = student.deletion_curve(net, x, sal, c, steps)
    diagnose(got, [("you delete the LEAST salient pixels first: deletion takes the most salient "
                    "first (np.argsort(-saliency, kind='stable'))",
                    lambda: ref_deletion(net, x, sal, c, steps, order="least")),
                   ("the curve holds logits: Petsiuk et al.'s deletion follows the class "
                    "PROBABILITY, softmax(logits)[c]",
                    lambda: ref_deletion(net, x, sal, c, steps, score="logit"))])
    close(got, lambda: ref_deletion(net, x, sal, c, steps), "curve", rtol=rtol,
          atol=1e-7 if rtol > 1e-6 else 1e-10, case=case)


def a7_curve_small(student, ctx):
    net = tiny_net(ctx.rng(1500))
    r = ctx.rng(1501)
    x, sal = r.standard_normal((2, 2, 6, 6)), r.random((2, 6, 6))
    for steps in (6, 4):
        _check_curve(student, net, x, sal, np.array([0, 2]), steps,
                     f"the A3 random net, x {x.shape}, steps {steps}", 1e-6)


def a7_curve_shapes(student, ctx):
    import gradcam
    from minicnn import zoo
    from minicnn.data import make_scenes

    scenes = make_scenes(2, seed=int(ctx.rng(1510).integers(1000, 10**6)))
    model, c = zoo.shapes_cnn(pretrained=True), scenes.labels[:, 0]
    heat = gradcam.grad_cam(model, scenes.images, c, layer="relu4").heatmap
    sal = heat + 1e-9 * np.arange(heat[0].size).reshape(heat.shape[1:])  # no ties
    _check_curve(student, model, scenes.images, sal, c, 8,
                 "zoo.shapes_cnn, 2 hidden scenes, Grad-CAM's heatmap, steps 8", 1e-4)


def a7_auc(student, ctx):
    for k in range(4):
        r = ctx.rng(1520 + k)
        curve = r.random((int(r.integers(1, 4)), int(r.integers(2, 21)) + 1))
        got = student.auc(curve)
        diagnose(got, [("that is the mean of the points (rectangles); the AUC is the trapezoid "
                        "rule: the end points count half", lambda: curve.mean(axis=1))])
        close(got, lambda: ref_auc(curve), "auc", case=f"curves {curve.shape}")


def reference():
    """For ``--solutions``: the reference written out in this module."""
    return types.SimpleNamespace(deletion_curve=ref_deletion, auc=ref_auc)


A7 = Assignment("A7", "07_deletion.py", "the deletion curve and its AUC (Petsiuk et al.)",
                ("deletion_curve", "auc"), (), reference,
                "lessons.grade.a7_deletion.ref_deletion / ref_auc", [
    Part("deletion_curve: a random net, steps 6 and 4", 3,
         "order = np.argsort(-saliency[n].ravel(), kind='stable'); at step t zero the first "
         "(t*H*W)//steps pixels of the order in EVERY channel; score softmax(logits)[n, c[n]]; "
         "t runs 0..steps (steps + 1 points)", a7_curve_small),
    Part("deletion_curve: zoo.shapes_cnn with Grad-CAM's heatmaps", 2,
         "the same recipe on a real model; x is float32 there: keep its dtype", a7_curve_shapes),
    Part("auc: the trapezoid rule on [0, 1]", 2,
         "the points sit at t/steps, t = 0..steps: (curve[:, 1:] + curve[:, :-1]).sum(axis=1) / "
         "(2 * steps)", a7_auc),
])
