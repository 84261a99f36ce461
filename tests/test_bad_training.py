"""Training and files under bad conditions: a loss that goes non-finite, temporaries left by
killed writers, and where retraining the shipped models writes.

``fit`` uses ``TinyLinear`` (tests/test_io_train.py), a softmax regression with the
Sequential interface, so these tests depend on no layer code.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from minicnn import io, tempfiles
from minicnn.optim import SGD
from minicnn.train import NonFiniteLoss, fit
from test_io_train import TinyLinear, blobs


# --------------------------------------------------------------------------- non-finite loss
def _nan_from_call(k):
    """An ``augment`` that returns NaN inputs from its k-th call on (1-based)."""
    calls = {"n": 0}

    def augment(xb, rng):
        calls["n"] += 1
        return xb * np.nan if calls["n"] >= k else xb

    return augment


def test_fit_stops_at_a_non_finite_loss_naming_the_epoch_and_keeps_the_last_checkpoint(tmp_path):
    X, y = blobs(N=32)
    ck = tmp_path / "ck.npz"
    model = TinyLinear(4, 3)
    # 32 samples / batch 8 = 4 batches an epoch: call 6 is epoch 2, batch 2
    with pytest.raises(NonFiniteLoss, match=r"epoch 2/3, batch 2/4") as e:
        fit(model, SGD(model, lr=0.1), X, y, epochs=3, batch_size=8, checkpoint=ck,
            progress=False, augment=_nan_from_call(6))
    assert (e.value.epoch, e.value.batch) == (2, 2) and np.isnan(e.value.loss)
    assert f"the checkpoint {ck} still holds epoch 1" in str(e.value)
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporaries either
    arrays, meta = io.load_arrays(ck)
    assert meta["epoch"] == 1 and np.isfinite(meta["history"]["loss"]).all()
    assert all(np.isfinite(a).all() for a in arrays.values())
    # the checkpoint is the uninterrupted run's epoch 1 (control: what it should hold)
    ref = TinyLinear(4, 3)
    fit(ref, SGD(ref, lr=0.1), X, y, epochs=1, batch_size=8, progress=False)
    np.testing.assert_array_equal(arrays["model/fc.weight"], ref.params["fc.weight"])


def test_fit_says_when_no_epoch_completed():
    X, y = blobs(N=16)
    model = TinyLinear(4, 3)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1/2, batch 1/2.*no checkpoint was asked"):
        fit(model, SGD(model, lr=0.1), X, y, epochs=2, batch_size=8, progress=False,
            augment=_nan_from_call(1))
    ok = TinyLinear(4, 3)  # control: the same run without NaN trains to the end
    assert len(fit(ok, SGD(ok, lr=0.1), X, y, epochs=2, batch_size=8, progress=False).loss) == 2


def _linear_net():
    """Flatten + Linear as a minicnn Sequential (movable to a device, unlike TinyLinear)."""
    import minicnn
    from minicnn import layers as L

    return minicnn.Sequential([("flat", L.Flatten()),
                               ("fc", L.Linear(4, 3, rng=np.random.default_rng(0)))])


def test_fit_on_a_device_stops_at_the_end_of_the_non_finite_epoch(tmp_path, fake_device):
    """On a device the loss is read once per epoch (no sync per step), so the error names the
    epoch and no batch; the checkpoint still holds the last finite epoch."""
    X, y = blobs(N=32)
    ck = tmp_path / "ck.npz"
    model = _linear_net().to("cupy")
    with pytest.raises(NonFiniteLoss, match=r"epoch 2/3, a batch of it") as e:
        fit(model, SGD(model, lr=0.1), X, y, epochs=3, batch_size=8, checkpoint=ck,
            progress=False, augment=_nan_from_call(6))
    assert (e.value.epoch, e.value.batch) == (2, None) and np.isnan(e.value.loss)
    assert io.load_arrays(ck)[1]["epoch"] == 1
    ok = _linear_net().to("cupy")  # control: without NaN the device run trains to the end
    assert len(fit(ok, SGD(ok, lr=0.1), X, y, epochs=3, batch_size=8, progress=False).loss) == 3


# --------------------------------------------------------------------------- temporaries
def _temp(folder, target, rand="abcd1234", age=3600.0):
    """A temporary of ``target`` as ``atomic_write`` names it, ``age`` seconds old."""
    p = folder / f".{target}.{rand}.tmp"
    p.write_bytes(b"half-written")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_atomic_write_removes_stale_temporaries_of_the_same_target_only(tmp_path):
    stale = _temp(tmp_path, "ck.npz")
    young = _temp(tmp_path, "ck.npz", "young123", age=0.0)  # its writer may not have locked it
    other = _temp(tmp_path, "other.npz")  # another target's
    lookalike = tmp_path / ".ck.npz.notatemp.tmp"  # not atomic_write's name pattern
    lookalike.write_bytes(b"x")
    io.atomic_write(tmp_path / "ck.npz", lambda f: f.write(b"new"))
    assert (tmp_path / "ck.npz").read_bytes() == b"new"
    assert not stale.exists()
    assert young.exists() and other.exists() and lookalike.exists()


def test_a_temporary_a_live_writer_holds_is_kept(tmp_path):
    """A writer in another process holds its temporary (flock): it is not stale, however old."""
    held = _temp(tmp_path, "ck.npz", "held5678")
    code = ("import sys, time; from minicnn import tempfiles; tempfiles.hold(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(held)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "locked"
        io.atomic_write(tmp_path / "ck.npz", lambda f: f.write(b"new"))
        assert held.exists()
    finally:
        proc.kill()
        proc.wait()
    assert tempfiles.remove_stale(tmp_path / "ck.npz") == [held.name]  # its writer is dead
    assert not held.exists()


def test_the_pattern_matches_atomic_writes_own_temporaries(tmp_path, monkeypatch):
    """The names ``remove_stale`` looks for are the names ``atomic_write`` makes (a temporary
    seen from inside ``write_fn``)."""
    seen = []
    io.atomic_write(tmp_path / "m.npz", lambda f: seen.append(os.path.basename(f.name)))
    assert tempfiles.pattern(tmp_path / "m.npz").fullmatch(seen[0])
    assert not tempfiles.pattern(tmp_path / "m.np").fullmatch(seen[0])


# --------------------------------------------------------------------------- train_shapes
def test_train_shapes_writes_to_the_user_folder_unless_told(monkeypatch, tmp_path, capsys):
    from minicnn.zoo import WEIGHTS_DIR, train_shapes

    seen = []
    monkeypatch.setattr(train_shapes, "train_one",
                        lambda name, out_dir: seen.append(out_dir) or (0.99, 1.0))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert train_shapes.main(["shapes_gap"]) == 0
    assert seen[-1] == tmp_path / "cache" / "minicnn" / "weights"
    assert str(seen[-1] / "shapes_gap.npz") in capsys.readouterr().out
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert train_shapes.main(["shapes_gap"]) == 0
    assert seen[-1] == tmp_path / "home" / ".cache" / "minicnn" / "weights"
    assert train_shapes.main(["shapes_gap", "--shipped"]) == 0
    assert seen[-1] == WEIGHTS_DIR
    with pytest.raises(SystemExit) as e:  # the shipped folder by --out: refused
        train_shapes.main(["shapes_gap", "--out", str(WEIGHTS_DIR)])
    assert e.value.code == 2 and "--shipped" in capsys.readouterr().err
    assert len(seen) == 3


def test_retraining_twice_is_bit_identical(monkeypatch, tmp_path):
    """What the README states: two runs of the recipe on one machine agree bit for bit (here a
    short recipe: 64 images, 1 epoch); a different seed differs (control)."""
    from minicnn.zoo import train_shapes

    monkeypatch.setitem(train_shapes.RECIPES, "shapes_gap", (64, 1, 3e-3))
    for run in ("a", "b"):
        train_shapes.train_one("shapes_gap", out_dir=tmp_path / run, n_test=16, progress=False)
    a, _ = io.load_arrays(tmp_path / "a" / "shapes_gap.npz")
    b, _ = io.load_arrays(tmp_path / "b" / "shapes_gap.npz")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    monkeypatch.setattr(train_shapes, "TRAIN_SEED", 1001)
    train_shapes.train_one("shapes_gap", out_dir=tmp_path / "c", n_test=16, progress=False)
    c, _ = io.load_arrays(tmp_path / "c" / "shapes_gap.npz")
    assert any(a[k].tobytes() != c[k].tobytes() for k in a)
