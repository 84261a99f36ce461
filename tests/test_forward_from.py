"""``Sequential.forward_from(layer, A, skips=None)``: the model's output from a layer's output.

- at EVERY layer ``named_layers()`` lists of EVERY zoo model (top-level layers, containers,
  layers nested in Sequential and Residual blocks), it gives the full forward's logits;
- ``forward(x, keep=[layer])`` records the inputs of exactly the residual blocks enclosing it;
- a skip of batch 1 broadcasts against many altered copies of A (Ablation-CAM's case), and the
  result equals the block computed by hand from the layers;
- a backward after it gives the gradient a full forward gives; errors are clear;
- negative controls: another A, or a wrong skip, changes the output.
"""

import numpy as np
import pytest

import test_model
from minicnn import zoo
from minicnn.model import Residual

TOL = 1e-12  # float64, relative to the largest |logit|


def small(seed=0):
    """test_model's network (features > 3 is a Residual: expand, act, project; then bn relu gap
    fc), in float64 and eval mode."""
    return test_model.small(seed).eval()


ZOO_CASES = {  # name -> (model in float64 eval mode, input side); small sizes keep it fast
    "shapes_cnn": (lambda: zoo.shapes_cnn(seed=1), 64),
    "shapes_gap": (lambda: zoo.shapes_gap(seed=1), 64),
    "vgg16": (lambda: zoo.vgg16(num_classes=10, width=1 / 16, seed=1), 32),
    "efficientnet_lite0": (lambda: zoo.efficientnet_lite0(num_classes=10, seed=1), 32),
}


def _x(side, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, side, side))


@pytest.mark.parametrize("name", list(ZOO_CASES))
def test_forward_from_every_layer_of_every_zoo_model_equals_the_full_forward(name):
    build, side = ZOO_CASES[name]
    model = build().astype("float64").eval()
    assert set(ZOO_CASES) == set(zoo.MODELS)  # a new zoo model must join this sweep
    names = model.layer_names()
    y = model.forward(_x(side), keep=names)
    acts = dict(model.activations)
    blocks = {n for n, m in model.named_layers() if isinstance(m, Residual)}
    # keeping every layer records the input of every residual block that encloses one
    assert set(model.residual_inputs) == {b for b in blocks if any(n.startswith(b + ".")
                                                                 for n in names)}
    if name == "efficientnet_lite0":
        assert "_blocks.4._bn2" in names and "_blocks.4" in blocks  # nested layers are covered
    scale = np.abs(y).max()
    for n in names:
        got = model.forward_from(n, acts[n])
        assert got.shape == y.shape, n
        assert np.abs(got - y).max() <= TOL * scale, n
    # negative control: another A (here: the layer's output for another input) changes y
    layer = "_blocks.4._bn2" if name == "efficientnet_lite0" else names[len(names) // 2]
    model.forward(_x(side, seed=1), keep=[layer])
    other = model.activations[layer]
    model.forward(_x(side), keep=[layer])
    assert np.abs(model.forward_from(layer, other) - y).max() > 1e-3 * scale


def test_forward_records_only_the_residual_inputs_it_needs():
    """The input of ``_blocks.4`` is ``_blocks.3``'s output; nothing else is kept alive."""
    model = zoo.efficientnet_lite0(num_classes=10, seed=2).astype("float64").eval()
    x = _x(32, n=1)
    y = model.forward(x, keep=["_blocks.3", "_fc"])
    before = model.activations["_blocks.3"]
    assert model.residual_inputs == {}  # neither is inside a residual block
    for kw in (dict(keep=["_blocks.4._depthwise_conv"]), dict(stop_at="_blocks.4._bn0")):
        model.forward(x, **kw)
        assert list(model.residual_inputs) == ["_blocks.4"], kw
        np.testing.assert_array_equal(model.residual_inputs["_blocks.4"], before)
    model.forward(x, keep=["_blocks.4._depthwise_conv"])
    got = model.forward_from("_blocks.4._depthwise_conv",
                             model.activations["_blocks.4._depthwise_conv"])
    assert np.abs(got - y).max() <= TOL * np.abs(y).max()
    model.forward(x, keep=["_blocks.4"])  # the block's own output: no skip needed
    assert model.residual_inputs == {}


def test_a_skip_of_batch_one_broadcasts_over_altered_copies_of_A():
    """Ablation-CAM's case: N altered copies of one image's A, one recorded skip. Checked
    against the rest of the model run layer by layer by hand: skip + project(A), bn, relu,
    gap, fc."""
    m = small()
    layer, block = "features.3.act", "features.3"
    m.forward(_x(6, n=1), keep=[layer])
    A, skip = m.activations[layer], m.residual_inputs[block]
    assert A.shape == (1, 8, 3, 3) and skip.shape == (1, 4, 3, 3)
    copies = np.repeat(A, 5, axis=0)
    copies[np.arange(5), np.arange(5)] = 0.0  # copy k has channel k ablated
    got = m.forward_from(layer, copies)
    h = skip + m["features.3.project"].forward(copies)
    for name in ("bn", "relu", "gap", "fc"):
        h = m[name].forward(h)
    np.testing.assert_allclose(got, h, rtol=1e-13, atol=1e-13)
    # the same with an explicit skip, batch 1 or batch 5
    np.testing.assert_array_equal(m.forward_from(layer, copies, skips={block: skip}), got)
    np.testing.assert_allclose(
        m.forward_from(layer, copies, skips={block: np.repeat(skip, 5, axis=0)}), got,
        rtol=1e-13, atol=1e-13)
    # negative control: a wrong skip changes the result
    wrong = m.forward_from(layer, copies, skips={block: skip + 0.5})
    assert np.abs(wrong - got).max() > 1e-3


def test_backward_after_forward_from_gives_the_full_forwards_gradient():
    m = small()
    x, dy = _x(6, n=2, seed=3), np.random.default_rng(4).standard_normal((2, 3))
    for layer in ("features.3.act", "features.3", "features.0", "relu"):
        m.forward(x)
        want = m.backward(dy, stop_at=layer, need_dw=False)
        m.forward(x, keep=[layer])
        A = m.activations[layer]
        m.forward_from(layer, A)
        np.testing.assert_allclose(m.backward(dy, stop_at=layer, need_dw=False), want,
                                   rtol=1e-13, atol=1e-14, err_msg=layer)
        # after forward_from on another A the gradient is another one (negative control),
        # except after "relu": gap and fc are linear, so dy/dA there does not depend on A
        m.forward_from(layer, A + np.random.default_rng(5).standard_normal(A.shape))
        change = np.abs(m.backward(dy, stop_at=layer, need_dw=False) - want).max()
        assert change < 1e-14 if layer == "relu" else change > 1e-6, layer


def test_forward_from_in_train_mode_uses_the_batch_statistics_as_forward_does():
    model = zoo.shapes_gap(seed=3).astype("float64").train()
    x = _x(32, n=4, seed=6)
    y = model.forward(x, keep=["conv2"])
    got = model.forward_from("conv2", model.activations["conv2"])
    np.testing.assert_allclose(got, y, rtol=1e-12, atol=1e-12)
    # negative control: eval mode (running statistics) gives other numbers here
    assert np.abs(model.eval().forward_from("conv2", model.activations["conv2"]) - y).max() > 1e-3


def test_forward_from_the_last_layer_returns_A_and_errors_are_clear():
    m = small()
    m.forward(_x(6), keep=["fc"])
    A = m.activations["fc"]
    np.testing.assert_array_equal(m.forward_from("fc", A), A)
    with pytest.raises(KeyError, match="features.3.expand"):  # the message lists the names
        m.forward_from("nope", A)
    m.forward(_x(6))  # keeps nothing, so records no residual input
    with pytest.raises(ValueError, match=r"keep=\['features.3.act'\].*skips"):
        m.forward_from("features.3.act", np.zeros((2, 8, 3, 3)))
    with pytest.raises(KeyError, match="not a residual block"):
        m.forward_from("features.3.act", np.zeros((2, 8, 3, 3)), skips={"features": 0})
    with pytest.raises(ValueError, match="skip of residual block 'features.3' has shape"):
        m.forward_from("features.3.act", np.zeros((2, 8, 3, 3)),
                       skips={"features.3": np.zeros((3, 4, 3, 3))})
