"""gradcam core: hand-worked values, batch consistency, invariants, errors and non-mutation.

The hand-worked model (every number below is derived by hand, not by the code under test)
-----------------------------------------------------------------------------------------
x (1x1x3x3) = [[ 1, -1,  2],     conv 1->2, 1x1: w = (+1, -1), b = 0  -> z0 = x, z1 = -x
               [-2,  3,  1],     relu                     -> A0 = max(x, 0), A1 = max(-x, 0)
               [ 1, -3, -1]]     gap, fc 2->2: W = [[2, -1], [-1, 1]], b = 0

A0 = [[1, 0, 2], [0, 3, 1], [1, 0, 0]]  (sum 8)    A1 = [[0, 1, 0], [2, 0, 0], [0, 3, 1]]  (sum 7)
GAP F = (8/9, 7/9);  logits y0 = 2*8/9 - 7/9 = 1,  y1 = -8/9 + 7/9 = -1/9  -> top-1 is class 0.

Grad-CAM at "relu" (A), class 0. The head is linear: dy0/dA^k_ij = W[0, k] / 9, so
dA0 = 2/9 everywhere, dA1 = -1/9 everywhere; alpha = (2/9, -1/9)            (Eq. 1)
linear_map = (2 A0 - A1) / 9   = [[2, -1, 4], [-2, 6, 2], [2, -3, -1]] / 9
coarse = L^c = ReLU(linear_map) = [[2,  0, 4], [ 0, 6, 2], [2,  0,  0]] / 9   (Eq. 2)
heatmap: the map is already 3x3 = the input size (half-pixel resize is the identity), so
heatmap = coarse / max = [[2, 0, 4], [0, 6, 2], [2, 0, 0]] / 6.
Counterfactual: alpha = (-2/9, 1/9),
coarse = ReLU(-linear_map) = [[0, 1, 0], [2, 0, 0], [0, 3, 1]] / 9.
CAM: M_0 = 2 A0 - A1 (= 9 linear_map), coarse = [[2, 0, 4], [0, 6, 2], [2, 0, 0]].
Class 1: alpha = (-1/9, 1/9),
linear_map = (A1 - A0)/9 = [[-1, 1, -2], [2, -3, -1], [-1, 3, 1]] / 9,
coarse = [[0, 1, 0], [2, 0, 0], [0, 3, 1]] / 9.

Pixel-space maps, class 0. The gradient arriving at the relu output is (2/9, -1/9) per channel.
Forward masks: m0 = [x > 0] = [[1,0,1],[0,1,1],[1,0,0]], m1 = [x < 0] = [[0,1,0],[1,0,0],[0,1,1]].
The 1x1 conv sends dz back as dx = (+1) dz0 + (-1) dz1.
  standard:  dz0 = 2/9 m0, dz1 = -1/9 m1   -> dx = (2 m0 + m1)/9 = [[2,1,2],[1,2,2],[2,1,1]] / 9
  guided:    dz1 is blocked (negative)     -> dx = 2 m0 / 9     = [[2,0,2],[0,2,2],[2,0,0]] / 9
  deconvnet: max(2/9, 0) = 2/9 everywhere, max(-1/9, 0) = 0 -> dx = 2/9 everywhere
  guided Grad-CAM = guided * heatmap = [[2,0,4],[0,6,2],[2,0,0]] / 27 (elementwise, e.g. 2/9 * 2/6)
Class 1 (gradient (-1/9, 1/9)):
  guided:    dz0 blocked, dz1 = m1/9       -> dx = -m1/9 = [[0,-1,0],[-1,0,0],[0,-1,-1]] / 9
  deconvnet: dz0 = 0, dz1 = 1/9 everywhere -> dx = -1/9 everywhere
"""

import warnings

import numpy as np
import pytest

import gradcam
from gradcam.core import eval_mode
from gradcam.targets import class_score, negated
from minicnn import Sequential
from minicnn import layers as L
from minicnn import zoo
from minicnn.backend import to_numpy
from minicnn.functional import relu_backward, relu_forward

TOL = 1e-12
X_HAND = np.array([[1.0, -1, 2], [-2, 3, 1], [1, -3, -1]])


def hand_model():
    """conv(1->2, 1x1, w=(+1,-1)) -> relu -> gap -> fc(W=[[2,-1],[-1,1]]), float64, no biases."""
    model = Sequential([("conv", L.Conv2d(1, 2, 1, dtype="float64")), ("relu", L.ReLU()),
                        ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(2, 2, dtype="float64"))],
                       class_names=["cat", "dog"])
    model["conv"].params["weight"] = np.array([1.0, -1.0]).reshape(2, 1, 1, 1)
    model["conv"].params["bias"] = np.zeros(2)
    model["fc"].params["weight"] = np.array([[2.0, -1.0], [-1.0, 1.0]])
    model["fc"].params["bias"] = np.zeros(2)
    return model.eval()


def close(a, b, tol=TOL):
    np.testing.assert_allclose(to_numpy(a), np.asarray(b, dtype=float), rtol=0, atol=tol)


def random_input(n, seed=0, hw=64):
    return np.random.default_rng(seed).normal(size=(n, 3, hw, hw))


# --------------------------------------------------------------------------- hand-worked values
def test_grad_cam_hand_worked_values():
    r = gradcam.grad_cam(hand_model(), X_HAND[None, None], layer="relu")
    close(r.logits, [[1, -1 / 9]])
    assert r.target.tolist() == [0] and r.class_names == ["cat"] and r.layer == "relu"
    close(r.activations[0], [[[1, 0, 2], [0, 3, 1], [1, 0, 0]], [[0, 1, 0], [2, 0, 0], [0, 3, 1]]])
    close(r.gradients[0, 0], np.full((3, 3), 2 / 9))
    close(r.gradients[0, 1], np.full((3, 3), -1 / 9))
    close(r.weights, [[2 / 9, -1 / 9]])
    close(r.linear_map[0], np.array([[2, -1, 4], [-2, 6, 2], [2, -3, -1]]) / 9)
    close(r.coarse[0], np.array([[2, 0, 4], [0, 6, 2], [2, 0, 0]]) / 9)
    close(r.heatmap[0], np.array([[2, 0, 4], [0, 6, 2], [2, 0, 0]]) / 6)

    cf = gradcam.grad_cam(hand_model(), X_HAND[None, None], layer="relu", counterfactual=True)
    assert cf.method == "counterfactual"
    close(cf.weights, [[-2 / 9, 1 / 9]])
    close(cf.coarse[0], np.array([[0, 1, 0], [2, 0, 0], [0, 3, 1]]) / 9)

    r1 = gradcam.grad_cam(hand_model(), X_HAND[None, None], target=1, layer="relu")
    close(r1.weights, [[-1 / 9, 1 / 9]])
    close(r1.linear_map[0], np.array([[-1, 1, -2], [2, -3, -1], [-1, 3, 1]]) / 9)
    close(r1.coarse[0], np.array([[0, 1, 0], [2, 0, 0], [0, 3, 1]]) / 9)


def test_cam_hand_worked_values():
    r = gradcam.cam(hand_model(), X_HAND[None, None])
    assert r.method == "cam" and r.layer == "relu"
    close(r.weights, [[2, -1]])
    close(r.linear_map[0], [[2, -1, 4], [-2, 6, 2], [2, -3, -1]])
    close(r.coarse[0], [[2, 0, 4], [0, 6, 2], [2, 0, 0]])
    close(r.heatmap[0], np.array([[2, 0, 4], [0, 6, 2], [2, 0, 0]]) / 6)


def test_pixel_maps_hand_worked_values():
    m, x = hand_model(), X_HAND[None, None]
    close(gradcam.saliency(m, x, 0)[0, 0], np.array([[2, 1, 2], [1, 2, 2], [2, 1, 1]]) / 9)
    close(gradcam.guided_backprop(m, x, 0)[0, 0], np.array([[2, 0, 2], [0, 2, 2], [2, 0, 0]]) / 9)
    close(gradcam.deconvnet(m, x, 0)[0, 0], np.full((3, 3), 2 / 9))
    close(gradcam.guided_grad_cam(m, x, 0, "relu")[0, 0],
          np.array([[2, 0, 4], [0, 6, 2], [2, 0, 0]]) / 27)
    close(gradcam.guided_backprop(m, x, 1)[0, 0], -np.array([[0, 1, 0], [1, 0, 0], [0, 1, 1]]) / 9)
    close(gradcam.deconvnet(m, x, "dog")[0, 0], np.full((3, 3), -1 / 9))


def test_zero_map_gives_zero_heatmap_without_nan_or_warning():
    """x > 0 everywhere: A1 = 0, so class 1's linear_map = -A0/9 < 0 and ReLU leaves nothing."""
    x = np.abs(X_HAND)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            r = gradcam.grad_cam(hand_model(), x, target=1, layer="relu")
    assert np.all(to_numpy(r.linear_map) < 0)
    np.testing.assert_array_equal(to_numpy(r.coarse), 0)
    np.testing.assert_array_equal(to_numpy(r.heatmap), 0)


# --------------------------------------------------------------------------- identities
@pytest.mark.parametrize("factory", [zoo.shapes_cnn, zoo.shapes_gap])
def test_grad_cam_batch_equals_single_images(factory):
    model = factory(seed=1).astype("float64")
    x = random_input(3, seed=2)
    batch = gradcam.grad_cam(model, x)
    for n in range(3):
        one = gradcam.grad_cam(model, x[n:n + 1])
        assert one.target.tolist() == [batch.target[n]]
        for field in ("logits", "activations", "gradients", "weights", "coarse", "heatmap"):
            np.testing.assert_allclose(getattr(one, field)[0], getattr(batch, field)[n],
                                       rtol=1e-9, atol=1e-12, err_msg=field)
    gb = gradcam.guided_backprop(model, x, batch.target)
    for n in range(3):
        np.testing.assert_allclose(gradcam.guided_backprop(model, x[n], batch.target[n])[0], gb[n],
                                   rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("factory", [zoo.shapes_cnn, zoo.shapes_gap])
def test_grad_cam_maps_are_nonnegative_and_heatmap_in_unit_range(factory):
    model = factory(seed=3)
    r = gradcam.grad_cam(model, random_input(3, seed=4).astype("float32"), target=[0, 1, 2])
    coarse, heat = to_numpy(r.coarse), to_numpy(r.heatmap)
    assert coarse.shape == r.activations.shape[:1] + r.activations.shape[2:]
    assert heat.shape == (3, 64, 64) and heat.dtype == np.float32
    assert coarse.min() >= 0 and heat.min() >= 0 and heat.max() <= 1
    for n in range(3):
        assert heat[n].max() == (1.0 if coarse[n].max() > 0 else 0.0)
    np.testing.assert_array_equal(coarse, np.maximum(to_numpy(r.linear_map), 0))


def test_counterfactual_is_relu_of_negated_map_and_of_negated_seed():
    model = zoo.shapes_cnn(seed=5).astype("float64")
    x = random_input(2, seed=6)
    r = gradcam.grad_cam(model, x, target=[1, 3])
    cf = gradcam.grad_cam(model, x, target=[1, 3], counterfactual=True)
    np.testing.assert_allclose(cf.coarse, np.maximum(-r.linear_map, 0), rtol=0, atol=1e-13)
    # the same map from a backward seeded with -one_hot, weighted by plain Eq. (1)
    _, A, dA_neg = gradcam.capture(model, x, r.layer, negated(class_score([1, 3])))
    coarse_neg = np.maximum(gradcam.weighted_sum(gradcam.grad_cam_weights(A, dA_neg), A), 0)
    np.testing.assert_allclose(cf.coarse, coarse_neg, rtol=0, atol=1e-13)
    np.testing.assert_allclose(cf.gradients, r.gradients, rtol=0, atol=0)  # dA is never negated


def test_grad_cam_equals_cam_over_Z_on_gap_model():
    model = zoo.shapes_gap(seed=7).astype("float64")
    x = random_input(2, seed=8)
    g, c = gradcam.grad_cam(model, x), gradcam.cam(model, x)
    assert g.layer == c.layer == "relu4"
    Z = g.activations.shape[2] * g.activations.shape[3]
    np.testing.assert_allclose(g.coarse, c.coarse / Z, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(g.heatmap, c.heatmap, rtol=1e-9, atol=1e-12)


def test_guided_grad_cam_is_guided_backprop_times_upsampled_heatmap():
    model = zoo.shapes_cnn(seed=9).astype("float64")
    x = random_input(2, seed=10)
    ggc = gradcam.guided_grad_cam(model, x, None, "conv3")
    r = gradcam.grad_cam(model, x, None, "conv3")
    expected = gradcam.guided_backprop(model, x, r.target) * \
        gradcam.normalize(gradcam.resize(r.coarse, (64, 64)))[:, None]
    assert ggc.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(ggc, expected, rtol=0, atol=1e-15)


def test_capture_to_input_is_the_saliency_gradient():
    model = zoo.shapes_cnn(seed=11).astype("float64")
    x = random_input(2, seed=12)
    logits, A, dA = gradcam.capture(model, x, "input", class_score(2))
    np.testing.assert_array_equal(A, x)
    np.testing.assert_array_equal(dA, gradcam.saliency(model, x, 2))
    assert logits.shape == (2, 4)


def test_capture_refuses_layer_none_and_names_the_input():
    """Pixel space is named "input"; None no longer means it (nor anything else) in capture."""
    model = zoo.shapes_cnn(seed=11)
    with pytest.raises(ValueError, match="no layer given.*'input' for pixel space"):
        gradcam.capture(model, random_input(1), None, class_score(2))


def test_guided_relu_blocks_negative_dout():
    """At the functional level: guided passes dout only where x > 0 AND dout > 0."""
    x = np.array([[-1.0, 2.0, 3.0, -4.0]])
    dout = np.array([[5.0, -6.0, 7.0, 8.0]])
    _, mask = relu_forward(x)
    np.testing.assert_array_equal(relu_backward(dout, mask, "guided"), [[0, 0, 7, 0]])
    np.testing.assert_array_equal(relu_backward(dout, mask, "standard"), [[0, -6, 7, 0]])
    np.testing.assert_array_equal(relu_backward(dout, mask, "deconvnet"), [[5, 0, 7, 8]])


# --------------------------------------------------------------------------- layers and targets
@pytest.mark.parametrize("factory,expected,hw", [(zoo.shapes_cnn, "relu4", (16, 16)),
                                                 (zoo.shapes_gap, "relu4", (16, 16))])
def test_layer_none_picks_the_last_conv_block_output(factory, expected, hw):
    """The last spatial layer that is not a pooling layer (the paper's relu5_3 rule)."""
    model = factory(seed=0)
    x = random_input(1).astype("float32")
    r = gradcam.grad_cam(model, x)
    assert r.layer == expected and r.coarse.shape[1:] == hw


def test_layer_none_on_vgg16_is_relu5_3_as_in_the_paper():
    model = zoo.vgg16(num_classes=10, width=1 / 16)
    r = gradcam.grad_cam(model, random_input(1, hw=64).astype("float32"))
    assert r.layer == "features.29" and r.coarse.shape == (1, 4, 4)  # 64 / 16; 14x14 at 224


def test_grad_cam_at_any_spatial_layer_has_that_layers_size():
    model = zoo.shapes_cnn(seed=0)
    r = gradcam.grad_cam(model, random_input(2).astype("float32"), layer="conv1")
    assert r.layer == "conv1" and r.activations.shape == (2, 16, 64, 64)
    assert r.coarse.shape == (2, 64, 64) and r.weights.shape == (2, 16)


def test_unknown_layer_error_lists_the_layer_names():
    model = zoo.shapes_cnn(seed=0)
    with pytest.raises(KeyError, match="layers are: conv1, .*drop, fc"):
        gradcam.grad_cam(model, random_input(1), layer="conv9")
    with pytest.raises(ValueError, match="conv9"):  # also catchable as ValueError
        gradcam.grad_cam(model, random_input(1), layer="conv9")
    with pytest.raises(ValueError, match="not a spatial .*spatial layers are: conv1"):
        gradcam.grad_cam(model, random_input(1), layer="flatten")


def test_targets_by_name_list_and_array():
    model = zoo.shapes_cnn(seed=0)
    x = random_input(2).astype("float32")
    by_name = gradcam.grad_cam(model, x, target="triangle")
    assert by_name.target.tolist() == [2, 2] and by_name.class_names == ["triangle", "triangle"]
    mixed = gradcam.grad_cam(model, x, target=["cross", 1])
    assert mixed.target.tolist() == [3, 1] and mixed.class_names == ["cross", "square"]
    arr = gradcam.grad_cam(model, x, target=np.array([0, 3]))
    assert arr.target.tolist() == [0, 3]
    top1 = gradcam.grad_cam(model, x)
    assert top1.target.tolist() == to_numpy(top1.logits).argmax(axis=1).tolist()
    np.testing.assert_array_equal(gradcam.grad_cam(model, x, target=np.int64(2)).coarse,
                                  by_name.coarse)


@pytest.mark.parametrize("bad,match", [
    (4, r"out of range; use an int in \[0, 3\] or one of the class names 'circle'"),
    (-1, "out of range"), ("dog", "unknown class name 'dog'.*'cross'"),
    ([0, 1, 2], "3 targets for a batch of 2"), (1.0, "not a class"), (True, "not a class"),
    (np.zeros((2, 1), dtype=int), "1-D"),
])
def test_invalid_targets_raise_value_error_listing_choices(bad, match):
    with pytest.raises(ValueError, match=match):
        gradcam.grad_cam(zoo.shapes_cnn(seed=0), random_input(2), target=bad)


def test_target_name_without_class_names_is_an_error():
    model = hand_model()
    model.class_names = None
    r = gradcam.grad_cam(model, X_HAND[None, None])
    assert r.class_names is None
    with pytest.raises(ValueError, match="no class_names"):
        gradcam.saliency(model, X_HAND[None, None], "cat")


# --------------------------------------------------------------------------- inputs, CAM heads
def test_single_image_gets_a_batch_axis_and_bad_inputs_are_rejected():
    model = hand_model()
    r = gradcam.grad_cam(model, X_HAND[None], layer="relu")
    assert r.coarse.shape == (1, 3, 3) and r.heatmap.shape == (1, 3, 3)
    bad = X_HAND[None, None].copy()
    bad[0, 0, 1, 1] = np.nan
    for x, match in [(bad, "NaN or inf"), (X_HAND, r"\(N, C, H, W\)"),
                     (np.full((1, 1, 3, 3), np.inf), "NaN or inf")]:
        with pytest.raises(ValueError, match=match):
            gradcam.grad_cam(model, x)
        with pytest.raises(ValueError, match=match):
            gradcam.guided_backprop(model, x)


def test_cam_rejects_other_heads_and_layers():
    with pytest.raises(ValueError, match="global average pooling.*fc \\(Linear\\)"):
        gradcam.cam(zoo.shapes_cnn(seed=0), random_input(1))
    with pytest.raises(ValueError, match="only at the input of the global average pooling.*relu4"):
        gradcam.cam(zoo.shapes_gap(seed=0), random_input(1), layer="conv3")
    r = gradcam.cam(zoo.shapes_gap(seed=0), random_input(1), layer="relu4")
    assert r.layer == "relu4"


def test_cam_accepts_flatten_and_dropout_between_gap_and_linear():
    model = Sequential([("conv", L.Conv2d(3, 4, 3, padding=1, rng=0)), ("relu", L.ReLU()),
                        ("gap", L.AdaptiveAvgPool2d(1)), ("flat", L.Flatten()),
                        ("drop", L.Dropout(0.5, seed=0)), ("fc", L.Linear(4, 3, rng=1))])
    x = random_input(2, hw=5).astype("float32")
    r = gradcam.cam(model, x, target=[0, 2])
    W = model["fc"].params["weight"]
    np.testing.assert_allclose(r.weights, W[[0, 2]])
    np.testing.assert_allclose(r.linear_map, np.einsum("nk,nkuv->nuv", W[[0, 2]], r.activations),
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- non-mutation
def test_explanations_do_not_mutate_the_model_and_restore_its_mode():
    model = zoo.shapes_cnn(seed=0).astype("float64")
    x = random_input(2)
    # a training step, so there are parameter gradients that must survive
    model.train()
    model.backward(np.ones_like(model.forward(x)))
    model["pool1"].training = False  # a mixed-mode model: each flag must come back as it was
    flags = {n: lay.training for n, lay in model.named_layers()}
    state = {k: v.copy() for k, v in model.state_dict().items()}
    grads = {k: v.copy() for k, v in model.grad_dict().items()}
    results = [gradcam.grad_cam(model, x), gradcam.grad_cam(model, x, counterfactual=True),
               gradcam.saliency(model, x), gradcam.deconvnet(model, x),
               gradcam.guided_backprop(model, x), gradcam.guided_grad_cam(model, x)]
    assert model.training is True
    assert {n: lay.training for n, lay in model.named_layers()} == flags
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert grads.keys() == model.grad_dict().keys()
    for k, v in model.grad_dict().items():
        np.testing.assert_array_equal(v, grads[k], err_msg=k)
    # eval mode inside: dropout is off, so the result equals the eval-mode model's
    with eval_mode(model):
        again = gradcam.grad_cam(model, x)
    np.testing.assert_array_equal(results[0].coarse, again.coarse)
    np.testing.assert_array_equal(results[0].logits, again.logits)


def test_result_repr_summarises_shapes():
    r = gradcam.grad_cam(hand_model(), X_HAND[None, None], layer="relu")
    text = repr(r)
    assert text.startswith("GradCAMResult(method='gradcam', layer='relu', target=[0]")
    assert "A=(1, 2, 3, 3)" in text and "heatmap=(1, 3, 3)" in text and "cat" in text
