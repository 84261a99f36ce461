"""``layer.weight`` / ``layer.bias``: read/write properties with PyTorch's habits.

Reading gives the live array; writing checks the shape and the dtype, casts to the layer's
dtype, copies and moves to the layer's device; layers without the parameter refuse both.
The forward sees a replaced or an edited weight, the Winograd path (>= 128 channels) too.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import minicnn
from minicnn import layers as L
from minicnn import zoo


def conv_by_hand(x, w, b):
    """out[n, f, i, j] = sum_{c,u,v} xpad[n, c, i+u, j+v] w[f, c, u, v] + b[f]  (padding 1)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, C, H, W, 3, 3)
    return np.einsum("nchwuv,fcuv->nfhw", win, w) + b[None, :, None, None]


def test_reading_gives_the_live_parameter_arrays():
    conv, fc, bn = L.Conv2d(3, 4, 3, rng=0), L.Linear(5, 2, rng=0), L.BatchNorm2d(4)
    for layer in (conv, fc, bn):
        assert layer.weight is layer.params["weight"] and layer.bias is layer.params["bias"]
    assert L.Conv2d(3, 4, 3, bias=False).bias is None  # as PyTorch
    with pytest.raises(AttributeError, match="ReLU has no weight"):
        L.ReLU().weight
    with pytest.raises(AttributeError, match="MaxPool2d has no bias"):
        L.MaxPool2d(2).bias
    assert not hasattr(L.Flatten(), "weight")


def test_setting_the_fc_weight_changes_the_forward():
    """The logits after ``model["fc"].weight = W`` are gap(A) W^T + b, computed here."""
    model = zoo.shapes_gap(seed=0).eval()
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    before = model(x, keep=["gap"])
    F = model.activations["gap"].astype(np.float64)
    W = np.random.default_rng(1).standard_normal((4, 64))
    model["fc"].weight = W
    model["fc"].bias = np.arange(4.0)
    after = model(x)
    np.testing.assert_allclose(after, F @ W.T + np.arange(4.0), rtol=1e-5, atol=1e-5)
    assert np.abs(after - before).max() > 0.1  # negative control: it did change


def test_editing_a_weight_in_place_changes_the_forward():
    model = zoo.shapes_gap(seed=0).eval()
    x = np.random.default_rng(2).random((2, 3, 64, 64), dtype=np.float32)
    y = model(x)
    assert np.abs(y[0] - y[1]).max() > 1e-4  # two images, two outputs
    model["conv1"].weight[...] = 0  # conv1 has no bias: every later map is input-independent
    y = model(x)
    np.testing.assert_array_equal(y[0], y[1])


def test_a_written_weight_is_cast_copied_and_checked():
    fc = L.Linear(3, 2, rng=0)  # float32
    W = np.arange(6.0).reshape(2, 3)  # float64
    fc.weight = W
    assert fc.weight.dtype == np.float32 and fc.weight is not W
    np.testing.assert_array_equal(fc.weight, W.astype(np.float32))
    W[...] = -1  # the layer does not alias the caller's array
    assert fc.weight.max() == 5.0
    with pytest.raises(ValueError, match=r"Linear.weight has shape \(2, 3\); got an array of "
                                         r"shape \(3, 2\)"):
        fc.weight = np.zeros((3, 2))
    with pytest.raises(ValueError, match="floating point, got dtype int64"):
        fc.weight = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(TypeError, match="must be an array, got list"):
        fc.weight = [[0.0] * 3] * 2
    np.testing.assert_array_equal(fc.weight, np.arange(6.0).reshape(2, 3))  # all refused
    with pytest.raises(AttributeError, match="bias=False"):
        L.Conv2d(1, 1, 3, bias=False).bias = np.zeros(1)
    relu = L.ReLU()
    with pytest.raises(AttributeError, match="ReLU has no weight"):
        relu.weight = np.zeros(1)
    assert "weight" not in vars(relu)  # no stray attribute


def test_batchnorm_weight_and_bias_are_gamma_and_beta():
    bn = L.BatchNorm2d(2)
    bn.training = False
    bn.weight, bn.bias = np.array([2.0, 3.0]), np.array([1.0, -1.0])
    x = np.ones((1, 2, 2, 2), dtype=np.float32)
    # eval: gamma * (x - 0) / sqrt(1 + eps) + beta
    want = np.array([2.0, 3.0])[None, :, None, None] * x / np.sqrt(1 + 1e-5) \
        + np.array([1.0, -1.0])[None, :, None, None]
    np.testing.assert_allclose(bn.forward(x), want, rtol=1e-6)


@pytest.mark.parametrize("how", ["replace", "in place"])
def test_the_winograd_path_sees_a_new_weight(how):
    """A 3x3 stride-1 conv with >= 128 channels runs Winograd with its transformed weights
    memoised per array; a replaced or edited weight must be transformed again."""
    rng = np.random.default_rng(3)
    conv = L.Conv2d(128, 128, 3, padding=1, rng=rng, dtype="float64")
    x = rng.standard_normal((1, 128, 6, 6))
    b = rng.standard_normal(128)
    conv.bias = b
    np.testing.assert_allclose(conv.forward(x), conv_by_hand(x, conv.weight, b), atol=1e-10)
    W2 = rng.standard_normal(conv.weight.shape) * 0.05
    if how == "replace":
        conv.weight = W2
    else:
        conv.weight[...] = W2
    np.testing.assert_allclose(conv.forward(x), conv_by_hand(x, W2, b), atol=1e-10)


def test_a_written_weight_moves_to_the_layers_device(device_xp):
    fc = minicnn.Sequential([("fc", L.Linear(3, 2, rng=0))]).to("cupy")["fc"]
    fc.weight = np.ones((2, 3))
    assert isinstance(fc.weight, device_xp.ndarray) and fc.weight.dtype == np.float32
    host = L.Linear(3, 2, rng=0)
    host.weight = device_xp.ones((2, 3))
    assert isinstance(host.weight, np.ndarray)
