"""Sequential and Residual: naming, recording, early-stopping backward, ReLU rules without
mutation, modes, dtype, state dicts and their error messages."""

import numpy as np
import pytest

import minicnn
from minicnn import layers as L
from minicnn.model import Residual, Sequential, from_config


def small(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return Sequential([
        ("features", Sequential([
            ("0", L.Conv2d(3, 4, 3, padding=1, rng=rng)), ("1", L.ReLU()), ("2", L.MaxPool2d(2)),
            ("3", Residual([("expand", L.Conv2d(4, 8, 1, rng=rng)), ("act", L.ReLU6()),
                            ("project", L.Conv2d(8, 4, 1, rng=rng))])),
        ])),
        ("bn", L.BatchNorm2d(4)), ("relu", L.ReLU()),
        ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(4, 3, rng=rng)),
    ], class_names=["a", "b", "c"]).astype(dtype)


def test_nested_names_and_lookup():
    m = small()
    names = m.layer_names()
    assert names[:3] == ["features", "features.0", "features.1"]
    assert "features.3.expand" in names and "fc" in names
    assert isinstance(m["features.3.act"], L.ReLU6)
    assert "features.0.weight" in m.state_dict() and "bn.running_var" in m.state_dict()
    with pytest.raises(KeyError, match="features.3.expand"):  # the message lists valid names
        m["nope"]


def test_forward_records_kept_outputs_and_all_shapes():
    m = small()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    y = m(x, keep=["features.3", "features.0"])
    assert y.shape == (2, 3)
    assert set(m.activations) == {"features.3", "features.0"}
    assert m.activations["features.0"].shape == (2, 4, 6, 6)
    assert m.shapes["features.2"] == (2, 4, 3, 3) and m.shapes["gap"] == (2, 4)
    with pytest.raises(KeyError):
        m(x, keep=["missing"])


def test_stop_at_returns_the_gradient_at_that_output_and_goes_no_further():
    m = small().eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6))
    dy = np.random.default_rng(3).standard_normal((2, 3))
    m(x)
    m.backward(dy)
    full_grads = m.grad_dict()
    m(x)
    dA = m.backward(dy, stop_at="relu", need_dw=False)
    assert dA.shape == (2, 4, 3, 3)
    # need_dw=False computes no parameter gradient and leaves the last ones untouched
    assert m.grad_dict().keys() == full_grads.keys()
    np.testing.assert_array_equal(m["features.0"].grads["weight"], full_grads["features.0.weight"])
    # the gradient at relu's output, pushed through gap + fc by hand: dy @ W / Z
    W = m["fc"].params["weight"]
    np.testing.assert_allclose(dA, np.broadcast_to((dy @ W)[:, :, None, None] / 9, dA.shape))
    # stopping inside a residual body, with parameter gradients above the stop only
    m(x)
    m.backward(dy, stop_at="features.3.act", need_dw=True)
    got = m.grad_dict()
    assert "features.3.project.weight" in got and "features.3.expand.weight" not in got
    np.testing.assert_allclose(got["fc.weight"], full_grads["fc.weight"])


def test_relu_rule_is_per_call_and_does_not_mutate():
    m = small().eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 6))
    dy = np.random.default_rng(5).standard_normal((2, 3))
    before = {k: v.copy() for k, v in m.state_dict().items()}
    m(x)
    g_standard = m.backward(dy)
    m(x)
    g_guided = m.backward(dy, relu_rule="guided")
    m(x)
    again = m.backward(dy)
    assert not np.allclose(g_standard, g_guided)
    np.testing.assert_array_equal(g_standard, again)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="relu_rule"):
        m.backward(dy, relu_rule="magic")


def test_input_grad_false_skips_the_first_layer_dx():
    m = small()
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6))
    m(x)
    assert m.backward(np.ones((2, 3)), need_dx=False) is None
    assert "features.0.weight" in m.grad_dict()


def test_backward_before_forward_is_a_clear_error():
    m = small()
    with pytest.raises(RuntimeError, match="call forward first"):
        m.backward(np.ones((1, 3)))


def test_train_eval_modes_reach_every_layer():
    m = small()
    assert all(lay.training for _, lay in m.named_layers())
    m.eval()
    assert not any(lay.training for _, lay in m.named_layers())
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 6))
    np.testing.assert_array_equal(m(x), m(x))  # eval: deterministic, running stats unchanged


def test_astype_and_input_cast():
    m = small(dtype="float32")
    assert m.dtype == np.float32
    y = m(np.ones((1, 3, 4, 4), dtype=np.float64))
    assert y.dtype == np.float32
    m.astype("float64")
    assert all(v.dtype == np.float64 for v in m.state_dict().values())
    with pytest.raises(ValueError):
        m.astype("int32")


def test_load_state_dict_errors_name_the_layer_and_change_nothing():
    m = small()
    good = {k: v.copy() for k, v in m.state_dict().items()}
    bad = dict(good)
    bad["fc.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="'fc'"):
        m.load_state_dict(bad)
    missing = dict(good)
    del missing["bn.running_mean"]
    with pytest.raises(KeyError, match="bn.running_mean"):
        m.load_state_dict(missing)
    extra = dict(good, **{"ghost.weight": np.zeros(1)})
    with pytest.raises(KeyError, match="ghost.weight"):
        m.load_state_dict(extra)
    ints = dict(good)
    ints["fc.bias"] = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="dtype"):
        m.load_state_dict(ints)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


def test_load_state_dict_copies_values():
    a, b = small(seed=0), small(seed=1)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(8).standard_normal((1, 3, 6, 6))
    np.testing.assert_array_equal(a.eval()(x), b.eval()(x))
    b.state_dict()["fc.weight"][...] = 0  # b's arrays are its own, not a's
    assert np.any(a.state_dict()["fc.weight"] != 0)


def test_config_round_trip_rebuilds_the_architecture():
    m = small()
    m2 = from_config(m.config())
    assert m2.layer_names() == m.layer_names()
    assert {k: v.shape for k, v in m2.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}


def test_bad_construction_and_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="dot-free"):
        Sequential([("a.b", L.ReLU())])
    with pytest.raises(ValueError, match="unique"):
        Sequential([("a", L.ReLU()), ("a", L.ReLU())])
    with pytest.raises(TypeError):
        Sequential([("a", object())])
    m = small()
    with pytest.raises(ValueError, match="'features.0'.*3"):
        m(np.ones((1, 5, 6, 6)))
    with pytest.raises(ValueError, match="smaller than"):
        Sequential([("c", L.Conv2d(1, 1, 5))])(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="residual"):
        Sequential([("r", Residual([("c", L.Conv2d(1, 2, 1))]))])(np.ones((1, 1, 3, 3)))
    with pytest.raises(TypeError, match="numeric"):
        m(np.array([["a"]]))
    with pytest.raises(ValueError, match="non-empty"):
        m(np.ones((0, 3, 6, 6)))


def test_cupy_device_without_cupy_is_one_clear_error():
    if minicnn.HAS_CUPY:
        pytest.skip("CuPy and a GPU are present; the error path cannot be exercised")
    with pytest.raises(RuntimeError, match="CuPy|CUDA"):
        small().to("cupy")
    with pytest.raises(ValueError, match="unknown device"):
        small().to("tpu")


def test_backend_parity(xp):
    """The same model gives the same logits and input gradient on every available backend."""
    m = small(dtype="float64").eval()
    x = np.random.default_rng(9).standard_normal((2, 3, 6, 6))
    dy = np.random.default_rng(10).standard_normal((2, 3))
    y_ref = m(x)
    dx_ref = m.backward(dy)
    m.to("cupy" if xp is not np else "numpy")
    y = m(xp.asarray(x))
    dx = m.backward(xp.asarray(dy))
    np.testing.assert_allclose(minicnn.to_numpy(y), y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(minicnn.to_numpy(dx), dx_ref, rtol=1e-10, atol=1e-12)


def test_layer_sizes_are_positive_ints_or_pairs_never_silently_truncated():
    assert L.Conv2d(1, 1, np.int64(3)).kernel_size == (3, 3)
    assert L.MaxPool2d((2, np.int32(3))).kernel_size == (2, 3)
    for bad in (2.5, (3, 2.0), True, (0, 2), "3"):
        with pytest.raises(ValueError, match="kernel_size"):
            L.Conv2d(1, 1, bad)
    with pytest.raises(ValueError, match="stride"):
        L.MaxPool2d(2, stride=1.5)
