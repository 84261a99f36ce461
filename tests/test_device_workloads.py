"""The device path (``model.to("cupy")``) on every workload of issue 16, against the host run.

``device_xp`` is the strict fake device of tests/fakecupy.py on every machine (CuPy 13.0's
names and keywords only, no implicit host copies, host arrays refused) and real CuPy where a
GPU is present. Each test runs a workload on the host (NumPy, the reference) and on the device
and asks for the same numbers: the fake computes with NumPy underneath, so it matches to
round-off; real CuPy in float32 must match to 1e-5 relative (the issue's target).

Workloads: forward/backward of every zoo model (small inputs; VGG16 on the Winograd path);
every registered explanation method; training with checkpoints (and a resumed device run with
dropout equal to an uninterrupted one); the device's small-block conv and Winograd paths;
max-pool's rows path; the localisation metrics and ``evaluate``. The faithfulness metrics,
ROAD, similarity, sanity checks and the rest of the later code, with sync budgets:
tests/test_device_metrics.py.
"""

import numpy as np
import pytest

import gradcam
import minicnn
from minicnn import kernels as K
from minicnn import layers as L
from minicnn import naive, zoo
from minicnn.backend import to_numpy
from minicnn.kernels import blocks, pool, winograd
from minicnn.optim import SGD
from minicnn.train import fit

RTOL = 1e-5  # float32, relative to each array's largest magnitude (the target)


def same(dev, host, rtol=RTOL, what=""):
    """A device result equals the host's: on the device, with the host's shape and values."""
    assert not isinstance(dev, np.ndarray), f"{what}: came back as a host array"
    d = to_numpy(dev)
    assert d.shape == host.shape and d.dtype == host.dtype, what
    finite = np.abs(host[np.isfinite(host)])  # NaN where the host has NaN (ROAD, Spearman)
    scale = max(float(finite.max()), 1e-30) if finite.size else 1.0
    np.testing.assert_allclose(d, host, rtol=rtol, atol=rtol * scale, err_msg=what)


def test_the_comparison_would_catch_a_wrong_device_result(device_xp):
    """Negative control for ``same``: a host array, a perturbed value and a wrong dtype fail."""
    host = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    same(device_xp.asarray(host), host)
    for bad in (host, device_xp.asarray(host * (1 + 1e-3)), device_xp.asarray(host, dtype=np.float64)):
        with pytest.raises(AssertionError):
            same(bad, host)


# --------------------------------------------------------------------------- zoo models
ZOO = {  # name -> (factory, input side): small inputs, VGG16 at 1/16 width
    "shapes_cnn": (lambda: zoo.shapes_cnn(seed=1), 64),
    "shapes_gap": (lambda: zoo.shapes_gap(seed=2), 32),
    "vgg16": (lambda: zoo.vgg16(width=1 / 16, num_classes=10, seed=3), 32),
    "efficientnet_lite0": (lambda: zoo.efficientnet_lite0(num_classes=10, seed=4), 32),
}


def test_the_workloads_cover_the_zoo():
    assert set(ZOO) == set(zoo.MODELS)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_forward_and_backward_match_the_host(device_xp, name, monkeypatch):
    """Logits, input gradient and every parameter gradient, in float32, eval mode."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)  # VGG16/16's 16- and 32-channel convs
    factory, side = ZOO[name]
    x = np.random.default_rng(5).uniform(0, 1, (2, 3, side, side)).astype(np.float32)
    host, dev = factory().eval(), factory().eval().to("cupy")
    dy = np.random.default_rng(6).standard_normal(host(x).shape).astype(np.float32)
    y, dx = host(x), host.backward(dy)
    y_d = dev(device_xp.asarray(x))
    dx_d = dev.backward(device_xp.asarray(dy))
    same(y_d, y, what="logits")
    same(dx_d, dx, what="dx")
    for (k, _, g), (_, _, g_d) in zip(host.named_parameters(), dev.named_parameters()):
        same(g_d, g, what=k)


# --------------------------------------------------------------------------- explanations
CHEAP = {"sscam": {"num_samples": 2}, "iscam": {"num_samples": 2},
         "smoothgrad": {"num_samples": 2}, "integrated-gradients": {"steps": 2}}
FIELDS = ("logits", "activations", "gradients", "weights", "linear_map", "coarse", "heatmap",
          "pixels")


@pytest.fixture(scope="module")
def gap_model():
    return zoo.shapes_gap(pretrained=True)


@pytest.mark.parametrize("method", list(gradcam.methods()))
def test_every_explanation_matches_the_host(device_xp, gap_model, method):
    """Every registered method (the registry as it stands, new ones included) on shapes_gap."""
    x = np.random.default_rng(7).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    opts = CHEAP.get(method, {})
    ref = gradcam.explain(gap_model, x, [0, 3], method, **opts)
    dev = zoo.shapes_gap(pretrained=True).to("cupy")
    r = gradcam.explain(dev, device_xp.asarray(x), [0, 3], method, **opts)
    for f in FIELDS:
        a, b = getattr(r, f), getattr(ref, f)
        assert (a is None) == (b is None), f
        if b is not None:
            same(a, b, what=f)
    assert r.target.tolist() == ref.target.tolist() and r.layer == ref.layer


def test_grad_cam_through_max_pool_rows_path_matches_the_host(device_xp):
    """shapes_cnn's 8x8 pool4 takes max-pool's rows path forward and backward (the path that
    needed ``put_along_axis``, absent from CuPy 13); Grad-CAM at conv3 goes through it."""
    assert pool.pools_by_rows((8, 8), (8, 8))
    model = zoo.shapes_cnn(pretrained=True)
    x = np.random.default_rng(8).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    ref = gradcam.grad_cam(model, x, [1, 2], "conv3")
    r = gradcam.grad_cam(model.to("cupy"), device_xp.asarray(x), [1, 2], "conv3")
    for f in ("gradients", "weights", "heatmap"):
        same(getattr(r, f), getattr(ref, f), what=f)


def test_max_pool_rows_path_with_ties_matches_the_loops(device_xp):
    """Kernel level, with ties (ReLU'd integers): each window's gradient goes to its first
    maximum, on the device as in the loop twin."""
    x = np.maximum(np.random.default_rng(9).integers(-2, 3, (2, 3, 16, 16)), 0).astype(np.float32)
    out_n, cache_n = naive.maxpool2d_forward(x, 8)
    out, cache = K.maxpool2d_forward(device_xp.asarray(x), 8)
    same(out, out_n)
    d = np.random.default_rng(10).standard_normal(out_n.shape).astype(np.float32)
    same(K.maxpool2d_backward(device_xp.asarray(d), cache), naive.maxpool2d_backward(d, cache_n))


@pytest.mark.parametrize("winograd_path", [False, True])
def test_conv_in_small_blocks_on_the_device_matches_the_loops(device_xp, monkeypatch,
                                                               winograd_path):
    """The device's block plan (GPU_CHUNK) made tiny, so one conv runs as many row blocks: the
    im2col product and Winograd's tiles, forward and both gradients."""
    monkeypatch.setattr(blocks, "GPU_CHUNK", 64)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16 if winograd_path else 1 << 30)
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 16, 9, 10)), rng.standard_normal((16, 16, 3, 3))
    b = rng.standard_normal(16)
    out_n, cache_n = naive.conv2d_forward(x, w, b, padding=1)
    out, cache = K.conv2d_forward(device_xp.asarray(x), device_xp.asarray(w), device_xp.asarray(b),
                                  padding=1)
    assert (cache.U is not None) == winograd_path
    assert len(blocks.block_plan(2, 9, 16 * 9 * 10, 64, device_xp)) > 2  # really in blocks
    same(out, out_n, rtol=1e-9)
    d = rng.standard_normal(out_n.shape)
    for g, want in zip(K.conv2d_backward(device_xp.asarray(d), cache),
                       naive.conv2d_backward(d, cache_n)):
        same(g, want, rtol=1e-9)


# --------------------------------------------------------------------------- training
def _net(dropout=False):
    rng = np.random.default_rng(12)
    head = [("drop", L.Dropout(0.3, seed=5))] if dropout else []
    return minicnn.Sequential(
        [("conv", L.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng)), ("bn", L.BatchNorm2d(4)),
         ("relu", L.ReLU6()), ("pool", L.MaxPool2d(2)), ("flat", L.Flatten())] + head
        + [("fc", L.Linear(4 * 4 * 4, 3, rng=rng))])


def _data():
    X = np.random.default_rng(13).standard_normal((10, 3, 8, 8)).astype(np.float32)
    return X, np.arange(10) % 3


def test_training_with_checkpoints_matches_the_host(device_xp, tmp_path):
    X, y = _data()
    kw = dict(epochs=2, batch_size=4, seed=1, progress=False)
    host, dev = _net(), _net().to("cupy")
    h = fit(host, SGD(host, lr=0.1, momentum=0.9), X, y, checkpoint=tmp_path / "h.npz", **kw)
    h_d = fit(dev, SGD(dev, lr=0.1, momentum=0.9), X, y, checkpoint=tmp_path / "d.npz", **kw)
    np.testing.assert_allclose(h_d.loss, h.loss, rtol=RTOL)
    assert h_d.acc == h.acc
    for (k, p, _), (_, p_d, _) in zip(host.named_parameters(), dev.named_parameters()):
        same(p_d, p, what=k)
    assert minicnn.train.model_accuracy(dev, X, y) == minicnn.train.model_accuracy(host, X, y)


def test_a_resumed_device_run_with_dropout_equals_an_uninterrupted_one(device_xp, tmp_path):
    """The device draws dropout masks from seeds of the layer's host generator, whose state
    the checkpoint holds: stop after epoch 1, resume, and every number is the same."""
    X, y = _data()
    kw = dict(batch_size=4, seed=2, progress=False)
    ref = _net(dropout=True).to("cupy")
    h_ref = fit(ref, SGD(ref, lr=0.1), X, y, epochs=2, **kw)
    ck = tmp_path / "ck.npz"
    first = _net(dropout=True).to("cupy")
    fit(first, SGD(first, lr=0.1), X, y, epochs=1, checkpoint=ck, **kw)
    again = _net(dropout=True).to("cupy")
    h = fit(again, SGD(again, lr=0.1), X, y, epochs=2, checkpoint=ck, **kw)
    assert (h.loss, h.acc) == (h_ref.loss, h_ref.acc)
    for (k, p, _), (_, p_ref, _) in zip(again.named_parameters(), ref.named_parameters()):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(p_ref), err_msg=k)
    # negative control: another dropout seed is another run
    other = _net(dropout=True).to("cupy")
    other["drop"].rng = np.random.default_rng(6)
    assert fit(other, SGD(other, lr=0.1), X, y, epochs=2, **kw).loss != h_ref.loss


def test_device_dropout_keeps_units_with_probability_1_minus_p(device_xp):
    """The device mask is drawn on the device, with the layer's rate, scaled by 1/(1-p)."""
    layer = L.Dropout(0.25, seed=0)
    x = device_xp.ones((64, 64), dtype=np.float32)
    out = to_numpy(layer.forward(x))
    assert set(np.unique(out).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((out > 0).mean() - 0.75) < 0.03
    assert not np.array_equal(out, to_numpy(layer.forward(x)))  # a new mask per forward


# --------------------------------------------------------------------------- evaluate's metrics
def test_localisation_metrics_take_device_maps(device_xp):
    from gradcam.metrics import localisation, map_correlation, mass_inside, pointing_game

    rng = np.random.default_rng(14)
    maps = rng.uniform(0, 1, (3, 12, 12)).astype(np.float32)
    masks = rng.uniform(0, 1, (3, 12, 12)) > 0.6
    boxes = np.array([[0, 0, 6, 6], [2, 3, 9, 12], [5, 5, 7, 7]])
    d_maps, d_masks = device_xp.asarray(maps), device_xp.asarray(masks)
    np.testing.assert_array_equal(pointing_game(d_maps, d_masks), pointing_game(maps, masks))
    np.testing.assert_array_equal(mass_inside(d_maps, d_masks), mass_inside(maps, masks))
    np.testing.assert_array_equal(map_correlation(d_maps, d_maps[::-1]),
                                  map_correlation(maps, maps[::-1]))
    for a, b in zip(localisation(d_maps, device_xp.asarray(boxes)), localisation(maps, boxes)):
        np.testing.assert_array_equal(a, b)


def test_evaluate_on_a_device_model_matches_the_host(device_xp, gap_model):
    from gradcam.evaluate import evaluate

    kw = dict(n_single=1, n_scenes=1, batch=1, methods=["gradcam", "guided-backprop"])
    ref = evaluate(gap_model, **kw)
    r = evaluate(zoo.shapes_gap(pretrained=True).to("cupy"), **kw)
    assert r["accuracy"] == ref["accuracy"] and r["notes"] == ref["notes"]
    for m, row in ref["methods"].items():
        np.testing.assert_allclose([r["methods"][m][k] for k in row], list(row.values()),
                                   rtol=1e-4, atol=1e-6, err_msg=m)
