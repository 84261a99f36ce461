"""A3, ``lessons/assignments/03_gradcam.py``: Grad-CAM's weights and map, the counterfactual.

The student writes, after Selvaraju et al., arXiv:1610.02391v4 (lessons 05 and 07):
``grad_cam_weights(A, dA) -> alpha`` (Eq. 1), ``grad_cam_map(A, alpha) -> L`` (Eq. 2, with
the ReLU), ``counterfactual_weights(A, dA)`` (Eq. 7.1 of lesson 07: Eq. 1 with the gradient
negated), and ``class_score_gradient(model, x, c, layer) -> (A, dA)`` from the model's own
forward and backward. The solution key, which the file must not use, is ``gradcam``;
``--solutions`` grades thin compositions of ``gradcam`` calls (``reference`` below).

Parts (8 points):
    1. grad_cam_weights on 4 hidden (A, dA) pairs (1), against ``gradcam.grad_cam_weights``.
    2. grad_cam_map on 4 hidden (A, alpha) pairs (2), against ReLU(einsum over k).
    3. counterfactual_weights on the same pairs as part 1 (1), against
       ``gradcam.counterfactual_weights``.
    4. class_score_gradient on a random float64 net (2): A against ``gradcam.capture``, dA by a
       gradient check against central differences of the layers above, then against capture.
    5. end to end (2): the four functions composed into Grad-CAM on ``zoo.shapes_cnn`` at
       relu4 and relu3, against ``gradcam.grad_cam(...).coarse`` (rtol 1e-4).

Hidden cases: case k draws from ``ctx.rng(k)``.
    parts 1, 3: k = 600..603; A and dA standard normal (N, K, u, v), each size in 1..5.
    part 2: k = 700..703; A as above, alpha standard normal (N, K).
    part 4: k = 800; conv1 (2 -> 4, 3 x 3) relu1 conv2 (4 -> 6) relu2 gap fc (6 -> 3), every
            parameter standard normal; x (3, 2, 6, 5); classes [2, 0, 1]; layer conv2.
    part 5: k = 900 draws the seed (1000..10**6 - 1) of 3 ``make_scenes`` scenes; the target
            of each is its first label.
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Fail, Part, as_array, close, grad_close


# --------------------------------------------------------------------------- A3: Grad-CAM
def _tiny_net(r):
    """conv1 relu1 conv2 relu2 gap fc, float64, random weights; A layer 'conv2' (6 channels)."""
    from minicnn import Sequential
    from minicnn import layers as L

    net = Sequential([("conv1", L.Conv2d(2, 4, 3, padding=1, rng=r, dtype="float64")),
                      ("relu1", L.ReLU()),
                      ("conv2", L.Conv2d(4, 6, 3, padding=1, rng=r, dtype="float64")),
                      ("relu2", L.ReLU()), ("gap", L.GlobalAvgPool2d()),
                      ("fc", L.Linear(6, 3, rng=r, dtype="float64"))]).eval()
    for _, lay in net.named_layers():
        for k, p in lay.params.items():
            lay.params[k] = r.standard_normal(p.shape)
    return net


def _arrays(ctx, k):
    """Hidden case k: A and dA, standard normal (N, K, u, v), and the generator drawn from."""
    r = ctx.rng(k)
    N, K, u, v = (int(t) for t in r.integers(1, 6, 4))
    return r.standard_normal((N, K, u, v)), r.standard_normal((N, K, u, v)), r


def a3_weights(mod, ctx, which):
    import gradcam

    ref = gradcam.grad_cam_weights if which == "gradcam" else gradcam.counterfactual_weights
    fn = mod.grad_cam_weights if which == "gradcam" else mod.counterfactual_weights
    for k in range(4):
        A, dA, _ = _arrays(ctx, 600 + k)
        close(fn(A, dA), ref(A, dA), "alpha", case=f"A and dA {A.shape}")


def a3_map(mod, ctx):
    for k in range(4):
        A, _, r = _arrays(ctx, 700 + k)
        alpha = r.standard_normal(A.shape[:2])
        expected = np.maximum(np.einsum("nk,nkij->nij", alpha, A), 0)
        close(mod.grad_cam_map(A, alpha), expected, "map", case=f"A {A.shape}")


def a3_gradient(mod, ctx):
    import gradcam
    from gradcam.targets import class_score
    from minicnn.gradcheck import numerical_vjp

    r = ctx.rng(800)
    net = _tiny_net(r)
    x = r.standard_normal((3, 2, 6, 5))
    c = np.array([2, 0, 1])
    result = mod.class_score_gradient(net, x, c, "conv2")
    if not isinstance(result, tuple) or len(result) != 2:
        raise Fail("class_score_gradient must return a pair (A, dA)")
    A, dA = (as_array(t, n) for t, n in zip(result, ("A", "dA")))
    _, rA, rdA = gradcam.capture(net, x, "conv2", class_score(c))
    close(A, rA, "A", case="the output of 'conv2'")
    after = [net[n] for n in ("relu2", "gap", "fc")]

    def head(a):
        for lay in after:
            a = lay.forward(a)
        return a

    seed = np.eye(3)[c]
    grad_close(dA, numerical_vjp(head, rA.copy(), seed), "dA = dy^c/dA",
               "a random float64 net, 3 images with classes [2, 0, 1]")
    close(dA, rdA, "dA", case="three images, three different classes")


def a3_end_to_end(mod, ctx):
    import gradcam
    from minicnn import zoo
    from minicnn.data import make_scenes

    model = zoo.shapes_cnn(pretrained=True)
    scenes = make_scenes(3, seed=int(ctx.rng(900).integers(1000, 10**6)))
    c = scenes.labels[:, 0]
    for layer in ("relu4", "relu3"):
        A, dA = mod.class_score_gradient(model, scenes.images, c, layer)
        got = mod.grad_cam_map(A, mod.grad_cam_weights(A, dA))
        ref = gradcam.grad_cam(model, scenes.images, c, layer)
        close(got, ref.coarse, "Grad-CAM map", rtol=1e-4, atol=1e-7,
              case=f"zoo.shapes_cnn at {layer}, 3 hidden scenes")


def reference():
    """For ``--solutions``: the four functions as thin compositions of gradcam's calls."""
    import gradcam
    from gradcam.targets import class_score

    return types.SimpleNamespace(
        grad_cam_weights=gradcam.grad_cam_weights,
        grad_cam_map=lambda A, alpha: np.maximum(gradcam.weighted_sum(alpha, A), 0),
        counterfactual_weights=gradcam.counterfactual_weights,
        class_score_gradient=lambda model, x, c, layer: gradcam.capture(
            model, x, layer, class_score(c))[1:])


A3 = Assignment("A3", "03_gradcam.py", "Grad-CAM weights and map (Eqs. 1-2), the counterfactual",
                ("grad_cam_weights", "grad_cam_map", "counterfactual_weights",
                 "class_score_gradient"),
                ("gradcam",), reference,
                "gradcam.grad_cam_weights, weighted_sum + ReLU, counterfactual_weights, capture", [
    Part("grad_cam_weights: Eq. (1) on hidden arrays", 1,
         "Eq. (1) averages each channel's gradient over its u x v positions (the last two "
         "axes): one number per image and channel, shape (N, K)",
         lambda m, c: a3_weights(m, c, "gradcam")),
    Part("grad_cam_map: Eq. (2) on hidden arrays", 2,
         "weight each channel A[n, k] by alpha[n, k] and ADD the channels (a sum over k, not a "
         "mean); the ReLU then keeps only the positive values",
         a3_map),
    Part("counterfactual_weights: Eq. (7.1) on hidden arrays", 1,
         "Eq. (7.1) is Eq. (1) with the sign of the gradient flipped",
         lambda m, c: a3_weights(m, c, "counterfactual")),
    Part("class_score_gradient: gradient check on a random float64 net", 2,
         "seed the backward with a one-hot row per image (dy[n, c[n]] = 1), and stop at the "
         "layer: model.backward(dy, stop_at=layer, need_dw=False)", a3_gradient),
    Part("end to end: your four functions vs gradcam.grad_cam on zoo.shapes_cnn", 2,
         "if the parts above pass, check the shapes: A is the layer's OUTPUT, "
         "model.activations[layer] after model.forward(x, keep=[layer])", a3_end_to_end),
])


