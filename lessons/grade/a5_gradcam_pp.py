"""A5, ``lessons/assignments/05_gradcam_pp.py``: Grad-CAM++'s weights from the closed form.

The student writes, after Chattopadhay et al., arXiv:1710.11063v3 (Sec. 3):
``gradcam_pp_alpha(A, dA)`` (Eq. 19, 0 where the denominator is 0),
``gradcam_pp_weights(A, dA)`` (Eq. 5, without the per-image factor exp(S^c)) and
``gradcam_pp_map(A, dA)`` (Eq. 20). The references are ``gradcam.family.plusplus``'s.

Parts (7 points):
    1. alpha on the visible case and 4 hidden cases (3): some gradients exactly 0 (0/0 -> 0)
       and A >= 0 (a ReLU layer's output); alpha with A_ij in place of sum_ab A_ab, and the
       authors' code's per-channel normalisation, get their own messages.
    2. weights on the same cases (2): Grad-CAM's mean, and alpha * dA without the relu, get
       their own messages.
    3. the map on the same cases and on the gradients of ``zoo.shapes_cnn`` at relu4 for 2
       hidden scenes (2), against ReLU(sum_k w_k A^k) of the reference weights.

Hidden cases: k = 1300..1303 from ``ctx.rng(k)``: N, K in 1..3, u, v in 2..5; A = relu of a
standard normal, dA standard normal with about 20% set to exactly 0. The scenes: k = 1310
draws the seed of ``make_scenes``; target: the first label.
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Part, close, diagnose


def _visible():
    A = np.array([[[[1.0, 0.0], [2.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]]])
    dA = np.array([[[[1.0, 0.0], [-1.0, 2.0]], [[0.5, 1.0], [0.0, -2.0]]]])
    return A, dA


def _cases(ctx):
    out = [_visible()]
    for k in range(4):
        r = ctx.rng(1300 + k)
        N, K = (int(t) for t in r.integers(1, 4, 2))
        u, v = (int(t) for t in r.integers(2, 6, 2))
        A = np.maximum(r.standard_normal((N, K, u, v)), 0)
        dA = r.standard_normal((N, K, u, v))
        dA[r.random(dA.shape) < 0.2] = 0.0
        out.append((A, dA))
    return out


def _div(num, den):
    zero = den == 0
    return np.where(zero, 0.0, num / np.where(zero, 1.0, den))


def ref_alpha(A, dA):
    from gradcam.family.plusplus import gradcam_pp_alpha

    return gradcam_pp_alpha(A, dA ** 2, dA ** 3)


def ref_weights(A, dA):
    from gradcam.family.plusplus import gradcam_pp_weights

    return gradcam_pp_weights(A, dA)


def ref_map(A, dA):
    return np.maximum(np.einsum("nk,nkij->nij", ref_weights(A, dA), A), 0)


def a5_alpha(student, ctx):
    for A, dA in _cases(ctx):
        got = student.gradcam_pp_alpha(A, dA)
        diagnose(got, [("alpha uses A_ij at the position itself; Eq. (19) has the SUM of the "
                        "channel, sum_ab A^k_ab, one number per channel",
                        lambda: _div(dA ** 2, 2 * dA ** 2 + A * dA ** 3)),
                       ("alpha is normalised per channel (as the authors' code does); the "
                        "paper's Eq. (19) is not", lambda: _div(
                            ref_alpha(A, dA), ref_alpha(A, dA).sum(axis=(2, 3), keepdims=True)))])
        close(got, lambda: ref_alpha(A, dA), "alpha", case=f"A and dA {A.shape}, some dA = 0")


def a5_weights(student, ctx):
    for A, dA in _cases(ctx):
        got = student.gradcam_pp_weights(A, dA)
        diagnose(got, [("these are Grad-CAM's weights (the mean of dA): Eq. (5) weights "
                        "relu(dA) by alpha and sums", lambda: dA.mean(axis=(2, 3))),
                       ("Eq. (5) keeps only the POSITIVE gradients: relu(dA)",
                        lambda: (ref_alpha(A, dA) * dA).sum(axis=(2, 3)))])
        close(got, lambda: ref_weights(A, dA), "w", case=f"A and dA {A.shape}")


def a5_map(student, ctx):
    for A, dA in _cases(ctx):
        close(student.gradcam_pp_map(A, dA), lambda: ref_map(A, dA), "map",
              case=f"A and dA {A.shape}")
    import gradcam
    from gradcam.targets import class_score
    from minicnn import zoo
    from minicnn.data import make_scenes

    scenes = make_scenes(2, seed=int(ctx.rng(1310).integers(1000, 10**6)))
    model = zoo.shapes_cnn(pretrained=True)
    _, A, dA = gradcam.capture(model, scenes.images, "relu4", class_score(scenes.labels[:, 0]))
    close(student.gradcam_pp_map(A, dA), lambda: ref_map(A, dA), "map", rtol=1e-4, atol=1e-7,
          case="zoo.shapes_cnn at relu4, 2 hidden scenes")


def reference():
    """For ``--solutions``: gradcam.family.plusplus's functions."""
    return types.SimpleNamespace(gradcam_pp_alpha=ref_alpha, gradcam_pp_weights=ref_weights,
                                 gradcam_pp_map=ref_map)


A5 = Assignment("A5", "05_gradcam_pp.py", "Grad-CAM++'s weights from the closed form (Eqs. 19, 5)",
                ("gradcam_pp_alpha", "gradcam_pp_weights", "gradcam_pp_map"), (), reference,
                "gradcam.family.plusplus.gradcam_pp_alpha / gradcam_pp_weights", [
    Part("alpha: Eq. (19) on the visible and hidden cases (0/0 -> 0)", 3,
         "S = A.sum(axis=(2, 3), keepdims=True); alpha = dA^2 / (2 dA^2 + S dA^3), and 0 where "
         "that denominator is 0 (np.where, so that 0/0 is never evaluated)", a5_alpha),
    Part("weights: Eq. (5) on the visible and hidden cases", 2,
         "w = (alpha * np.maximum(dA, 0)).sum(axis=(2, 3)): a weighted SUM of the positive "
         "gradients (no 1/Z, no exp(S^c))", a5_weights),
    Part("map: Eq. (20) on hidden cases and on zoo.shapes_cnn", 2,
         "relu(sum_k w_k A^k), as Grad-CAM's Eq. (2) with Grad-CAM++'s weights", a5_map),
])
