"""The strict fake device (tests/fakecupy.py) keeps CuPy's rules, and the sync budget.

First the fake itself: each rule it claims is shown to bite (a negative control beside each
allowed form). Then the budget of host syncs and transfers of the library's device paths,
counted on the fake:

- ``grad_cam`` with given targets: 1 sync (the finiteness check of the pixels) and 1 transfer
  (the targets); with ``target=None``: 2 syncs (also the top-1 classes read back), 0 transfers.
  Before issue 16: 2 and 4 syncs (the pixels checked twice, top-1 read twice).
- a forward through Winograd convolutions: 0 syncs (before: one weight compare per conv);
  EfficientNet (ReLU6) and a training-mode Dropout forward: 0 transfers (before: ReLU6's bound
  and the host-drawn mask crossed on every forward);
- ``fit``: 1 sync per epoch (before: 2 per step); transfers: each batch's images, the labels
  once and the epoch's order once.
"""

import numpy as np
import pytest

import gradcam
import minicnn
from minicnn import layers as L
from minicnn import zoo
from minicnn.backend import get_xp, to_numpy
from minicnn.kernels import winograd
from minicnn.optim import SGD
from minicnn.train import fit, model_accuracy

from fakecupy import FAKE, DeviceRuleError


# --------------------------------------------------------------------------- the fake's rules
def test_device_arrays_are_not_ndarrays_and_never_convert_implicitly(fake_device):
    a = FAKE.asarray(np.arange(6.0).reshape(2, 3))
    assert not isinstance(a, np.ndarray) and isinstance(a, FAKE.ndarray)
    for implicit in (np.asarray, np.array, lambda v: np.concatenate([v, np.ones((1, 3))])):
        with pytest.raises(TypeError):
            implicit(a)
    np.testing.assert_array_equal(a.get(), np.arange(6.0).reshape(2, 3))  # the explicit way


def test_host_arrays_in_device_operations_raise(fake_device):
    a, host = FAKE.ones(3), np.ones(3)
    for mixed in (lambda: a + host, lambda: host * a, lambda: FAKE.maximum(a, host),
                  lambda: FAKE.where(host > 0, a, 0), lambda: FAKE.stack([a, host])):
        with pytest.raises(DeviceRuleError):
            mixed()
    # scalars are fine, as in CuPy: Python numbers and NumPy scalars
    assert float((a * np.float32(2) + 1).sum()) == 9.0


def test_only_cupy_13_names_and_keywords_exist(fake_device):
    a = FAKE.ones((2, 2))
    assert callable(np.put_along_axis)  # NumPy has it ...
    with pytest.raises(AttributeError, match="put_along_axis"):
        FAKE.put_along_axis  # ... CuPy 13.0 does not  # noqa: B018
    for bad in (lambda: FAKE.sum(a, initial=0), lambda: a.max(initial=0),
                lambda: FAKE.exp(a, where=True)):
        with pytest.raises(TypeError, match="keyword"):
            bad()
    FAKE.take_along_axis(a, FAKE.zeros((2, 1), dtype=np.int64), axis=1)  # these exist
    FAKE.sum(a, axis=0, keepdims=True)
    with pytest.raises(AttributeError):
        a.nonexistent_method  # noqa: B018


def test_argsort_is_stable_as_cupy_s(fake_device):
    """CuPy's argsort is a stable (thrust) sort: tied values keep their order, which the
    salience order of the deletion metric relies on; NumPy's default sort does not."""
    a = np.array([1.0, 0.0] * 50)
    stable = np.argsort(a, kind="stable")
    np.testing.assert_array_equal(FAKE.argsort(FAKE.asarray(a)).get(), stable)
    assert not np.array_equal(np.argsort(a), stable)  # negative control: the unstable default


def test_device_results_stay_on_the_device(fake_device):
    a = FAKE.asarray([[1.0, 2.0], [3.0, 4.0]])
    for r in (a.sum(), a[0, 1], FAKE.array_equal(a, a), np.mean(a), a.max(axis=1)):
        assert isinstance(r, FAKE.ndarray)
    assert fake_device.syncs == 0


def test_syncs_and_transfers_are_counted(fake_device):
    a = FAKE.asarray(np.arange(4.0))
    assert (fake_device.syncs, fake_device.transfers) == (0, 1)
    FAKE.asarray(a)  # already on the device: nothing moves
    _ = a[1:] * 2
    assert (fake_device.syncs, fake_device.transfers) == (0, 1)
    float(a[0]), int(a[1]), bool(a[2]), a[3].item(), a.get(), FAKE.asnumpy(a), to_numpy(a)
    assert fake_device.syncs == 7
    a[np.array([0, 1])]  # a host index array is copied over
    assert fake_device.transfers == 2
    # each entry names the call site outside the fake: to_numpy's copy is minicnn's line
    sites = [w.split(":")[0] for _, _, w in fake_device.log]
    assert sites == ["test_fakecupy.py"] * 7 + ["backend.py", "test_fakecupy.py"]


def test_the_fake_is_minicnn_s_device(fake_device):
    m = minicnn.Sequential([("fc", L.Linear(3, 2, rng=0))]).to("cupy")
    assert m.device == "cupy" and isinstance(m["fc"].weight, FAKE.ndarray)
    assert get_xp(m["fc"].weight) is FAKE and get_xp(np.ones(2)) is np


# --------------------------------------------------------------------------- the sync budget
BUDGET = {"given": (1, 1), "top-1": (2, 0)}  # grad_cam: (syncs, transfers) per call


@pytest.fixture(scope="module")
def cnn_input():
    return np.random.default_rng(0).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)


@pytest.mark.parametrize("target", ["given", "top-1"])
def test_grad_cam_keeps_its_sync_budget(fake_device, cnn_input, target):
    model = zoo.shapes_cnn(pretrained=True).to("cupy")
    x = FAKE.asarray(cnn_input)
    fake_device.reset()
    gradcam.grad_cam(model, x, [1, 2] if target == "given" else None)
    assert (fake_device.syncs, fake_device.transfers) <= BUDGET[target], fake_device.log
    assert {w.split(":")[0] for k, _, w in fake_device.log if k == "sync"} <= {
        "engine.py", "targets.py", "backend.py"}


def test_the_budget_would_catch_the_old_double_pixel_check(fake_device, cnn_input, monkeypatch):
    """Negative control: with explain validating the pixels as well (before issue 16), the
    same call is over budget."""
    from gradcam import core, engine

    monkeypatch.setattr(core, "as_batch", lambda x, finite=True: engine.as_batch(x))
    model = zoo.shapes_cnn(pretrained=True).to("cupy")
    x = FAKE.asarray(cnn_input)
    fake_device.reset()
    gradcam.grad_cam(model, x, [1, 2])
    assert fake_device.syncs == 2 > BUDGET["given"][0]


def test_winograd_forward_on_the_device_never_syncs(fake_device, monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)
    model = zoo.vgg16(width=1 / 16, num_classes=10).to("cupy")
    x = FAKE.asarray(np.random.default_rng(1).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32))
    model(x)
    fake_device.reset()
    model(x)  # the second forward: the old memo compared every weight here, one sync per conv
    assert (fake_device.syncs, fake_device.transfers) == (0, 0)
    # negative control: the old compare is a sync the counter sees
    w = model["features.14"].weight
    bool(FAKE.array_equal(w, w))
    assert fake_device.syncs == 1


def test_the_host_keeps_its_winograd_weight_memo():
    w = np.random.default_rng(2).standard_normal((4, 4, 3, 3))
    assert winograd.cached_weight_transform(w) is winograd.cached_weight_transform(w)
    U = winograd.cached_weight_transform(w)
    w[0, 0, 0, 0] += 1  # an in-place update is seen
    assert winograd.cached_weight_transform(w) is not U


def test_relu6_and_dropout_forwards_move_nothing(fake_device):
    x = FAKE.asarray(np.random.default_rng(3).standard_normal((2, 8, 4, 4)).astype(np.float32))
    eff = zoo.efficientnet_lite0(num_classes=10).to("cupy")
    drop = L.Dropout(0.5, seed=0)
    fake_device.reset()
    eff(FAKE.ones((1, 3, 32, 32), dtype=np.float32))
    L.ReLU6().forward(x * 10)
    drop.forward(x)
    assert (fake_device.syncs, fake_device.transfers) == (0, 0), fake_device.log


def test_fit_syncs_once_per_epoch(fake_device):
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((10, 3, 6, 6)).astype(np.float32), np.arange(10) % 2
    m = minicnn.Sequential([("conv", L.Conv2d(3, 2, 3, rng=rng)), ("relu", L.ReLU()),
                            ("flat", L.Flatten()), ("drop", L.Dropout(0.2, seed=0)),
                            ("fc", L.Linear(32, 2, rng=rng))]).to("cupy")
    fake_device.reset()
    fit(m, SGD(m, lr=0.1), X, y, epochs=2, batch_size=3, progress=False)  # 4 steps per epoch
    assert fake_device.syncs == 2, fake_device.log
    assert fake_device.transfers == 2 * 4 + 1 + 2  # images per step, labels, orders per epoch
    fake_device.reset()
    model_accuracy(m, X, y, batch_size=3)
    assert fake_device.syncs == 1


# --------------------------------------------------------------------------- the GPU benchmark
@pytest.fixture
def bench_gpu(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_gpu

    return bench_gpu


def test_bench_gpu_prints_every_row_on_the_fake_device(fake_device, bench_gpu, capsys):
    """The benchmark's code path, torch or not: Grad-CAM, Score-CAM and Ablation-CAM rows."""
    rows = bench_gpu.main(["--fake"])
    out = capsys.readouterr().out
    assert "torch rows skipped" in out
    assert [(r[0].split()[0], r[1]) for r in rows] == [
        ("forward", 1), ("grad_cam", 1), ("stop_at", 1), ("forward", 2), ("grad_cam", 2),
        ("stop_at", 2), ("scorecam", 1), ("ablationcam", 1)]
    assert fake_device.syncs > 0  # it ran on the fake, synchronising after every timed call


def test_bench_gpu_skips_cleanly_without_cupy(bench_gpu, monkeypatch, capsys):
    import minicnn.backend as backend

    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "HAS_CUPY", False)
    assert bench_gpu.main(["--batches", "1"]) == 0
    assert capsys.readouterr().out.startswith("bench_gpu: skipped: the 'cupy' device needs CuPy")
