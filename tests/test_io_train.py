"""Weight files (atomic writes, refusal of bad files, save/load round trip) and the training loop.

The fit tests use ``TinyLinear``, a fake softmax-regression model with the Sequential
interface, so they depend on no layer code; one test repeats the resume check on a real
Sequential with BatchNorm and Dropout (buffers and a layer-owned generator).
"""

import os

import numpy as np
import pytest

from minicnn import io
from minicnn.optim import SGD, Adam
from minicnn.train import History, fit, model_accuracy


# ----------------------------------------------------------------------------- fake model
class TinyLinear:
    """Softmax regression s = flatten(x) W^T + b with the parts of Sequential that fit uses."""

    def __init__(self, D, C, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"fc.weight": 0.1 * rng.standard_normal((C, D)), "fc.bias": np.zeros(C)}
        self.grads = {k: None for k in self.params}
        self.training = True
        self.class_names = None

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        self._x = x.reshape(len(x), -1)
        return self._x @ self.params["fc.weight"].T + self.params["fc.bias"]

    def backward(self, dout, need_dx=True, **_):
        self.grads = {"fc.weight": dout.T @ self._x, "fc.bias": dout.sum(axis=0)}
        return dout @ self.params["fc.weight"] if need_dx else None

    def named_parameters(self):
        return [(k, p, self.grads[k]) for k, p in self.params.items()]

    def state_dict(self):
        return dict(self.params)

    def load_state_dict(self, d):
        assert set(d) == set(self.params)
        for k, v in d.items():
            self.params[k][...] = v


def blobs(N=60, D=4, C=3, seed=0):
    """Three Gaussian clusters in D dimensions: linearly separable, a few epochs to learn."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    centers = 3.0 * rng.standard_normal((C, D))
    return centers[y] + rng.standard_normal((N, D)), y


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_writes_the_file(tmp_path):
    p = tmp_path / "a.bin"
    io.atomic_write(p, lambda f: f.write(b"hello"))
    assert p.read_bytes() == b"hello"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_write_failure_leaves_no_file_and_no_temp(tmp_path):
    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        io.atomic_write(tmp_path / "a.bin", boom)
    assert os.listdir(tmp_path) == []


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(p, lambda f: (f.write(b"new"), (_ for _ in ()).throw(KeyboardInterrupt)))
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


# ----------------------------------------------------------------------------- npz files
def test_save_load_arrays_round_trip(tmp_path):
    arrays = {"conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
              "model/fc.bias": np.array([1.5, -2.0]), "steps": np.array([3], dtype=np.int64)}
    meta = {"format": "x", "nested": {"names": ["cat", "dog"]}, "lr": 0.1}
    p = tmp_path / "w.npz"
    io.save_arrays(p, arrays, meta)
    got, got_meta = io.load_arrays(p)
    assert got_meta == meta and set(got) == set(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype
        np.testing.assert_array_equal(got[k], a)


def _valid_file(tmp_path):
    p = tmp_path / "good.npz"
    io.save_arrays(p, {"w": np.ones((64, 64), dtype=np.float32)}, {"format": "minicnn"})
    return p


def _reject(path, match):
    with pytest.raises(io.WeightFileError, match=match) as info:
        io.load_arrays(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg  # one line that names the file
    assert isinstance(info.value, ValueError)


def test_load_arrays_rejects_missing_file(tmp_path):
    _reject(tmp_path / "nope.npz", "no such file")


def test_load_arrays_rejects_text_file(tmp_path):
    p = tmp_path / "notes.npz"
    p.write_text("these are not weights\n")
    _reject(p, "not an .npz")


def test_load_arrays_rejects_truncated_file(tmp_path):
    good = _valid_file(tmp_path)
    data = good.read_bytes()
    p = tmp_path / "cut.npz"
    p.write_bytes(data[: len(data) // 2])
    _reject(p, "truncated or corrupt")


def test_load_arrays_rejects_corrupted_bytes(tmp_path):
    data = bytearray(_valid_file(tmp_path).read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the weight array's data: the CRC check fails
    p = tmp_path / "flipped.npz"
    p.write_bytes(bytes(data))
    _reject(p, "truncated or corrupt")


def test_load_arrays_refuses_pickled_object_arrays(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, w=np.array([{"a": 1}, None], dtype=object),
             __meta__=np.frombuffer(b"{}", dtype=np.uint8))
    _reject(p, "refusing pickled data")


def test_load_arrays_rejects_missing_or_bad_meta(tmp_path):
    p = tmp_path / "plain.npz"
    np.savez(p, w=np.ones(3))
    _reject(p, "__meta__")
    q = tmp_path / "badjson.npz"
    np.savez(q, w=np.ones(3), __meta__=np.frombuffer(b"{not json", dtype=np.uint8))
    _reject(q, "JSON")


def test_load_arrays_rejects_bare_npy(tmp_path):
    p = tmp_path / "one.npy"
    np.save(p, np.ones(3))
    _reject(p, "single .npy")


# ----------------------------------------------------------------------------- save / load models
def _small_net(seed=0):
    from minicnn import layers as L
    from minicnn.model import Sequential

    rng = np.random.default_rng(seed)
    return Sequential([
        ("conv1", L.Conv2d(2, 4, kernel_size=3, padding=1, rng=rng)), ("relu1", L.ReLU()),
        ("pool1", L.MaxPool2d(2)), ("flat", L.Flatten()), ("fc", L.Linear(4 * 3 * 3, 3, rng=rng)),
    ], class_names=["circle", "square", "triangle"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_save_load_round_trip_is_bit_exact(tmp_path, dtype):
    import minicnn

    model = _small_net().astype(dtype)
    p = tmp_path / "net.npz"
    model.save(p)
    back = minicnn.load(p)
    assert not back.training  # loaded for inference
    want, got = model.state_dict(), back.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype
        np.testing.assert_array_equal(got[k], want[k])
    assert back.class_names == model.class_names and back.config() == model.config()
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(dtype)
    np.testing.assert_array_equal(back(x), model(x))


def test_model_load_names_the_file_for_mismatched_weights(tmp_path):
    import minicnn

    model = _small_net()
    p = tmp_path / "net.npz"
    state = {k: v for k, v in model.state_dict().items() if k != "fc.bias"}
    io.save_arrays(p, state, {"format": "minicnn", "version": 1,
                              "architecture": model.config(), "dtype": "float32"})
    with pytest.raises(io.WeightFileError, match="net.npz.*fc.bias"):
        minicnn.load(p)
    io.save_arrays(p, {}, {"format": "something-else", "version": 1})
    with pytest.raises(io.WeightFileError, match="format"):
        minicnn.load(p)


# ----------------------------------------------------------------------------- training
def test_fit_loss_falls(capsys):
    X, y = blobs()
    model = TinyLinear(4, 3)
    hist = fit(model, SGD(model, lr=0.1, momentum=0.9), X, y, epochs=5, batch_size=16,
               val=(X, y))
    assert isinstance(hist, History) and len(hist.loss) == 5
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    assert hist.val_acc[-1] > 0.9
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 5 and out[-1].startswith("epoch 5/5")


def test_model_accuracy_restores_training_mode():
    X, y = blobs(N=10)
    model = TinyLinear(4, 3)
    acc = model_accuracy(model, X, y, batch_size=3)
    assert 0.0 <= acc <= 1.0 and model.training


class Interrupt(Exception):
    pass


def _noisy(xb, rng):
    return xb + 0.1 * rng.standard_normal(xb.shape)


@pytest.mark.parametrize("make_opt", [
    lambda m: SGD(m, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    lambda m: Adam(m, lr=0.02, weight_decay=1e-3),
])
def test_fit_interrupted_then_resumed_equals_uninterrupted(tmp_path, make_opt):
    X, y = blobs()
    kw = dict(epochs=4, batch_size=16, seed=7, val=(X, y), progress=False, augment=_noisy)
    ref = TinyLinear(4, 3)
    h_ref = fit(ref, make_opt(ref), X, y, **kw)

    calls = {"n": 0}

    def crash_in_epoch_3(xb, rng):  # 4 batches per epoch; the 10th call is in epoch 3
        calls["n"] += 1
        if calls["n"] == 10:
            raise Interrupt
        return _noisy(xb, rng)

    ck = tmp_path / "ck.npz"
    first = TinyLinear(4, 3)
    with pytest.raises(Interrupt):
        fit(first, make_opt(first), X, y, checkpoint=ck, **{**kw, "augment": crash_in_epoch_3})
    assert os.listdir(tmp_path) == ["ck.npz"]  # epochs 1-2 saved, no temp files left

    again = TinyLinear(4, 3, seed=99)  # fresh weights: everything must come from the file
    h = fit(again, make_opt(again), X, y, checkpoint=ck, **kw)
    for k in ref.params:
        np.testing.assert_array_equal(again.params[k], ref.params[k])
    assert (h.loss, h.acc, h.val_acc) == (h_ref.loss, h_ref.acc, h_ref.val_acc)


def test_fit_refuses_checkpoint_from_another_run(tmp_path):
    X, y = blobs(N=20)
    ck = tmp_path / "ck.npz"
    m = TinyLinear(4, 3)
    fit(m, SGD(m, lr=0.1), X, y, epochs=1, batch_size=8, checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="resume=False"):
        fit(m, SGD(m, lr=0.1), X, y, epochs=2, batch_size=8, seed=1, checkpoint=ck,
            progress=False)


def test_fit_resume_on_real_model_with_batchnorm_and_dropout(tmp_path):
    from minicnn import layers as L
    from minicnn.model import Sequential

    def net():
        rng = np.random.default_rng(3)
        return Sequential([
            ("conv", L.Conv2d(1, 3, kernel_size=3, padding=1, rng=rng)), ("bn", L.BatchNorm2d(3)),
            ("relu", L.ReLU()), ("pool", L.MaxPool2d(2)), ("flat", L.Flatten()),
            ("drop", L.Dropout(0.3, seed=5)), ("fc", L.Linear(3 * 3 * 3, 2, rng=rng)),
        ])

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 1, 6, 6)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    kw = dict(batch_size=5, seed=2, progress=False)
    ref = net()
    fit(ref, Adam(ref, lr=0.01), X, y, epochs=3, **kw)
    ck = tmp_path / "ck.npz"
    a = net()
    fit(a, Adam(a, lr=0.01), X, y, epochs=2, checkpoint=ck, **kw)
    b = net()
    fit(b, Adam(b, lr=0.01), X, y, epochs=3, checkpoint=ck, **kw)
    want, got = ref.state_dict(), b.state_dict()
    for k in want:  # includes bn.running_mean / bn.running_var
        np.testing.assert_array_equal(got[k], want[k])


# ----------------------------------------------------------------------------- precise BN
def _bn_net(seed=0, dtype="float64"):
    from minicnn import layers as L
    from minicnn.model import Sequential

    rng = np.random.default_rng(seed)
    return Sequential([
        ("conv1", L.Conv2d(2, 3, kernel_size=3, padding=1, rng=rng, dtype=dtype)),
        ("bn1", L.BatchNorm2d(3, dtype=dtype)), ("relu1", L.ReLU()),
        ("conv2", L.Conv2d(3, 4, kernel_size=3, rng=rng, dtype=dtype)),
        ("bn2", L.BatchNorm2d(4, dtype=dtype)), ("relu2", L.ReLU()),
        ("flat", L.Flatten()), ("drop", L.Dropout(0.5, seed=seed)),
        ("fc", L.Linear(4 * 3 * 3, 3, rng=rng, dtype=dtype)),
    ])


@pytest.mark.parametrize("training", [True, False])
def test_update_bn_sets_population_statistics(training):
    from minicnn.train import update_bn

    model = _bn_net()
    model.train(training)
    X = np.random.default_rng(3).standard_normal((37, 2, 5, 5)) * 2.0 + 0.5  # 37: a ragged last batch
    before = {k: v.copy() for k, v in model.state_dict().items()}
    drop_state = model["drop"].rng.bit_generator.state
    update_bn(model, X, batch_size=8)
    after = model.state_dict()
    # bn1's input does not depend on batching: conv1(X) over all 37 images, by NumPy's own mean
    # and unbiased variance over (N, H, W)
    model.eval()
    model(X, keep="conv1")
    a = model.activations["conv1"]
    np.testing.assert_allclose(after["bn1.running_mean"], a.mean(axis=(0, 2, 3)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(after["bn1.running_var"], a.var(axis=(0, 2, 3), ddof=1), rtol=1e-10)
    # only the running statistics changed, the modes are back, Dropout drew no mask
    for k in before:
        if "running" not in k:
            np.testing.assert_array_equal(after[k], before[k])
    assert model.training is False  # we set eval above; check the restore on a fresh call:
    model.train(training)
    update_bn(model, X, batch_size=8)
    assert model.training is training and all(l.training is training for _, l in model.named_layers())
    assert model["drop"].rng.bit_generator.state == drop_state


def test_update_bn_with_one_batch_equals_the_train_mode_batch_statistics():
    from minicnn.train import update_bn

    model = _bn_net(seed=1)
    X = np.random.default_rng(4).standard_normal((12, 2, 5, 5))
    update_bn(model, X, batch_size=len(X))
    got = {k: v.copy() for k, v in model.state_dict().items()}
    # bn2's input depends on bn1 normalising with batch statistics: one batch = the whole set
    model.train()
    model["drop"].training = False
    model(X, keep="conv2")
    a = model.activations["conv2"]
    np.testing.assert_allclose(got["bn2.running_mean"], a.mean(axis=(0, 2, 3)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["bn2.running_var"], a.var(axis=(0, 2, 3), ddof=1), rtol=1e-10)


def test_update_bn_refuses_no_inputs_and_ignores_models_without_batch_norm():
    from minicnn.train import update_bn

    with pytest.raises(ValueError, match="at least one input"):
        update_bn(_bn_net(), np.zeros((0, 2, 5, 5)))
    net = _small_net()
    before = net.state_dict()
    update_bn(net, np.ones((2, 2, 6, 6), dtype=np.float32))
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())
