"""A3, ``lessons/assignments/03_gradcam.py``: Grad-CAM from a model, and the counterfactual map.

The student writes, after Selvaraju et al., arXiv:1610.02391v4 (lessons 05 and 07):
``class_score_gradient(model, x, c, layer) -> (A, dA)`` from the model's own forward and
backward, ``grad_cam_weights(A, dA) -> alpha`` (Eq. 1), ``grad_cam_map(A, alpha) -> L`` (Eq. 2,
with the ReLU) and ``counterfactual_map(model, x, c, layer)`` (lesson 07, Eq. 7.1: Eq. (1) of
the negated gradient, then Eq. (2)). The references are ``gradcam``'s (the solution key, which
the student's file cannot import).

Parts (10 points):
    1. class_score_gradient on a random float64 net (3): A and dA against ``gradcam.capture``;
       the seeds of the softmax probability and of the log-softmax get their own message.
    2. grad_cam_weights on 4 hidden (A, dA) pairs (2); the sum over positions (Z times too
       large) gets its own message.
    3. grad_cam_map on 4 hidden (A, alpha) pairs (2); the mean over k (K times too small) and
       the map without its ReLU get their own messages.
    4. counterfactual_map on the random net and on ``zoo.shapes_cnn`` at relu4 (2); the
       Grad-CAM map itself and -ReLU(...) (negated after the ReLU) get their own messages.
    5. end to end (1): the student's functions composed into Grad-CAM on ``zoo.shapes_cnn`` at
       relu4 and relu3, against ``gradcam.grad_cam(...).coarse`` (rtol 1e-4).

Hidden cases: case k draws from ``ctx.rng(k)``.
    part 1, 4: k = 800; conv1 (2 -> 4, 3 x 3) relu1 conv2 (4 -> 6) relu2 pool (2) flat fc
            (6*3*3 -> 3), every parameter standard normal; x (3, 2, 6, 6); classes [2, 0, 1];
            layer relu2 (part 1) and relu1 (part 4).
    parts 2, 3: k = 600..603 and 700..703; A and dA (or alpha) standard normal (N, K, u, v),
            each size in 1..5 (u*v > 1 and K > 1 so that the factors Z and K show).
    parts 4, 5: k = 900 draws the seed (1000..10**6 - 1) of 3 ``make_scenes`` scenes; the
            target of each is its first label.
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Part, close, diagnose, expect_tuple

SUMMED = "your weights are exactly Z = u*v = {Z} times too large: Eq. (1) AVERAGES over positions"
MEAN_K = ("your map is exactly K = {K} times too small: Eq. (2) SUMS the weighted channels over k "
          "(a mean over k divides by K)")
SOFTMAX = ("dA is the gradient of the softmax {what}, not of the class score: Grad-CAM seeds the "
           "backward with dy^c/dlogits = e_c, the one-hot row (y^c is the score BEFORE the "
           "softmax)")


def tiny_net(r):
    """conv1 relu1 conv2 relu2 pool flat fc, float64, random weights; 6 channels at relu2."""
    from minicnn import Sequential
    from minicnn import layers as L

    net = Sequential([("conv1", L.Conv2d(2, 4, 3, padding=1, dtype="float64")),
                      ("relu1", L.ReLU()),
                      ("conv2", L.Conv2d(4, 6, 3, padding=1, dtype="float64")),
                      ("relu2", L.ReLU()), ("pool", L.MaxPool2d(2)), ("flat", L.Flatten()),
                      ("fc", L.Linear(6 * 3 * 3, 3, dtype="float64"))]).eval()
    for _, lay in net.named_layers():
        for k in sorted(lay.params):
            lay.params[k] = r.standard_normal(lay.params[k].shape)
    return net


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_gradient(model, x, c, layer, seed="score"):
    """(A, dA) for the seed e_c ("score"), or a softmax mistake ("prob": dp_c, "log": dlog p_c)."""
    import gradcam
    from gradcam.targets import class_score

    c = np.asarray(c)

    def seed_fn(logits):
        e = np.eye(logits.shape[1], dtype=logits.dtype)[c]
        p = _softmax(logits)
        if seed == "prob":
            return p[np.arange(len(c)), c][:, None] * (e - p)
        return e - p

    fn = class_score(c) if seed == "score" else seed_fn
    return gradcam.capture(model, x, layer, fn)[1:]


def ref_map(A, alpha):
    return np.maximum(np.einsum("nk,nkij->nij", alpha, A), 0)


def ref_counterfactual(model, x, c, layer):
    A, dA = ref_gradient(model, x, c, layer)
    return ref_map(A, -dA.mean(axis=(2, 3)))


def _random_net_case(ctx):
    r = ctx.rng(800)
    net = tiny_net(r)
    return net, r.standard_normal((3, 2, 6, 6)), np.array([2, 0, 1])


def a3_gradient(student, ctx):
    net, x, c = _random_net_case(ctx)
    A, dA = expect_tuple(student.class_score_gradient(net, x, c, "relu2"), 2,
                         "class_score_gradient", "(A, dA)")
    case = "a random float64 net at relu2, 3 images with classes [2, 0, 1]"
    close(A, lambda: ref_gradient(net, x, c, "relu2")[0], "A", case=case)
    diagnose(dA, [(SOFTMAX.format(what="probability p_c"),
                   lambda: ref_gradient(net, x, c, "relu2", "prob")[1]),
                  (SOFTMAX.format(what="log-probability log p_c"),
                   lambda: ref_gradient(net, x, c, "relu2", "log")[1])])
    close(dA, lambda: ref_gradient(net, x, c, "relu2")[1], "dA", case=case)


def _arrays(ctx, k):
    r = ctx.rng(k)
    N, K, u, v = (int(t) for t in r.integers(1, 6, 4))
    K, v = max(K, 2), max(v, 2)
    return r.standard_normal((N, K, u, v)), r.standard_normal((N, K, u, v)), r


def a3_weights(student, ctx):
    for k in range(4):
        A, dA, _ = _arrays(ctx, 600 + k)
        alpha = student.grad_cam_weights(A, dA)
        Z = A.shape[2] * A.shape[3]
        diagnose(alpha, [(SUMMED.format(Z=Z), lambda: dA.sum(axis=(2, 3)))])
        close(alpha, lambda: dA.mean(axis=(2, 3)), "alpha", case=f"A and dA {A.shape}")


def a3_map(student, ctx):
    for k in range(4):
        A, _, r = _arrays(ctx, 700 + k)
        alpha = r.standard_normal(A.shape[:2])
        got = student.grad_cam_map(A, alpha)
        diagnose(got, [(MEAN_K.format(K=A.shape[1]), lambda: ref_map(A, alpha) / A.shape[1]),
                       ("your map has negative values: Eq. (2) ends with a ReLU",
                        lambda: np.einsum("nk,nkij->nij", alpha, A))])
        close(got, lambda: ref_map(A, alpha), "map", case=f"A {A.shape}")


def _scenes(ctx):
    from minicnn import zoo
    from minicnn.data import make_scenes

    scenes = make_scenes(3, seed=int(ctx.rng(900).integers(1000, 10**6)))
    return zoo.shapes_cnn(pretrained=True), scenes.images, scenes.labels[:, 0]


def a3_counterfactual(student, ctx):
    net, x, c = _random_net_case(ctx)
    cases = [(net, x, c, "relu1", "a random float64 net at relu1", 1e-6)]
    model, xs, cs = _scenes(ctx)
    cases.append((model, xs, cs, "relu4", "zoo.shapes_cnn at relu4, 3 hidden scenes", 1e-4))
    for net, x, c, layer, case, rtol in cases:
        got = student.counterfactual_map(net, x, c, layer)
        diagnose(got, [("your counterfactual map is the Grad-CAM map: negate the gradient "
                        "(Eq. 7.1) before Eq. (1)",
                        lambda: ref_map(*_weights_of(net, x, c, layer))),
                       ("your counterfactual map is <= 0: negate the weights BEFORE the ReLU",
                        lambda: -ref_map(*_weights_of(net, x, c, layer)))])
        close(got, lambda: ref_counterfactual(net, x, c, layer), "counterfactual map",
              rtol=rtol, atol=1e-7 if rtol > 1e-6 else 1e-8, case=case)


def _weights_of(net, x, c, layer):
    A, dA = ref_gradient(net, x, c, layer)
    return A, dA.mean(axis=(2, 3))


def a3_end_to_end(student, ctx):
    import gradcam

    model, x, c = _scenes(ctx)
    for layer in ("relu4", "relu3"):
        A, dA = expect_tuple(student.class_score_gradient(model, x, c, layer), 2,
                             "class_score_gradient", "(A, dA)")
        got = student.grad_cam_map(A, student.grad_cam_weights(A, dA))
        close(got, lambda: gradcam.grad_cam(model, x, c, layer).coarse, "Grad-CAM map",
              rtol=1e-4, atol=1e-7, case=f"zoo.shapes_cnn at {layer}, 3 hidden scenes")


def reference():
    """For ``--solutions``: the four functions as thin compositions of gradcam's calls."""
    import gradcam

    return types.SimpleNamespace(
        class_score_gradient=lambda model, x, c, layer: ref_gradient(model, x, c, layer),
        grad_cam_weights=gradcam.grad_cam_weights,
        grad_cam_map=lambda A, alpha: np.maximum(gradcam.weighted_sum(alpha, A), 0),
        counterfactual_map=lambda model, x, c, layer: np.maximum(gradcam.weighted_sum(
            *(lambda A, dA: (gradcam.counterfactual_weights(A, dA), A))(
                *ref_gradient(model, x, c, layer))), 0))


A3 = Assignment("A3", "03_gradcam.py", "Grad-CAM from a model (Eqs. 1-2), the counterfactual map",
                ("class_score_gradient", "grad_cam_weights", "grad_cam_map",
                 "counterfactual_map"), (), reference,
                "gradcam.capture, grad_cam_weights, weighted_sum + ReLU, counterfactual_weights", [
    Part("class_score_gradient: A and dA on a random float64 net", 3,
         "seed the backward with a one-hot row per image (dy[n, c[n]] = 1): the class score "
         "before the softmax; stop at the layer: model.backward(dy, stop_at=layer, "
         "need_dw=False)", a3_gradient),
    Part("grad_cam_weights: Eq. (1) on hidden arrays", 2,
         "Eq. (1) averages each channel's gradient over its u x v positions (the last two "
         "axes): one number per image and channel, shape (N, K)", a3_weights),
    Part("grad_cam_map: Eq. (2) on hidden arrays", 2,
         "weight each channel A[n, k] by alpha[n, k] and ADD the channels (a sum over k, not a "
         "mean); the ReLU then keeps only the positive values", a3_map),
    Part("counterfactual_map: Eq. (7.1) on a random net and on zoo.shapes_cnn", 2,
         "Eq. (7.1) is Eq. (1) with the sign of the gradient flipped; then Eq. (2) as usual, "
         "ReLU last", a3_counterfactual),
    Part("end to end: your functions vs gradcam.grad_cam on zoo.shapes_cnn", 1,
         "if the parts above pass, check the shapes: A is the layer's OUTPUT, "
         "model.activations[layer] after model.forward(x, keep=[layer])", a3_end_to_end),
])
