"""minicnn.torch_import without torch: .npz state dicts, renaming, and the errors.

(With torch, tests/test_torch_crosscheck.py imports real torch tensors and .pth files.)
"""

import numpy as np
import pytest

from minicnn import torch_import as TI
from minicnn import zoo
from minicnn.torch_import import StateDictMismatch


def small_vgg(seed=0):
    return zoo.vgg16(num_classes=10, width=1 / 16, seed=seed)


def test_npz_round_trip_loads_key_for_key(tmp_path):
    src = small_vgg(seed=1)
    TI.save_npz(src.state_dict(), tmp_path / "w.npz")
    dst = TI.load_torch_weights(small_vgg(seed=2), tmp_path / "w.npz")
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)


def test_every_problem_is_reported_and_nothing_loaded():
    model = small_vgg()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: np.array(v) for k, v in small_vgg(seed=1).state_dict().items()}
    del state["features.0.bias"]
    state["classifier.6.weight"] = np.zeros((5, 256), np.float32)
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(StateDictMismatch) as e:
        TI.load_torch_weights(model, state)
    msg = str(e.value)
    assert "missing" in msg and "features.0.bias" in msg
    assert "unexpected" in msg and "extra.weight" in msg
    assert "classifier.6.weight: file (5, 256) vs model (10, 256)" in msg
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_prefixes_buffers_and_key_maps():
    src = {k: np.array(v) for k, v in small_vgg(seed=1).state_dict().items()}
    # DataParallel's "module." is stripped; num_batches_tracked is dropped
    wrapped = {"module." + k: v for k, v in src.items()}
    wrapped["module.features.0.num_batches_tracked"] = np.array(3)
    TI.load_torch_weights(small_vgg(), wrapped)
    # any other prefix: the error says how to fix it, and the fix works
    other = {"net." + k: v for k, v in src.items()}
    with pytest.raises(StateDictMismatch, match=r"extra prefix 'net\.'.*removeprefix"):
        TI.load_torch_weights(small_vgg(), other)
    TI.load_torch_weights(small_vgg(), other, key_map=lambda k: k.removeprefix("net."))
    # a dict key_map renames; a callable returning None drops
    renamed = dict(src)
    renamed["head.weight"] = renamed.pop("classifier.6.weight")
    renamed["junk"] = np.zeros(1, np.float32)
    TI.load_torch_weights(small_vgg(), renamed,
                          key_map=lambda k: None if k == "junk" else
                          {"head.weight": "classifier.6.weight"}.get(k, k))


def test_non_strict_loads_the_common_keys():
    src = {k: np.array(v) for k, v in small_vgg(seed=1).state_dict().items()}
    partial = {k: v for k, v in src.items() if k.startswith("features.")}
    model = TI.load_torch_weights(small_vgg(), partial, strict=False)
    np.testing.assert_array_equal(model.state_dict()["features.0.weight"], src["features.0.weight"])
    partial["features.0.weight"] = np.zeros((1, 3, 3, 3), np.float32)
    with pytest.raises(StateDictMismatch, match="wrong shapes"):  # shapes are still checked
        TI.load_torch_weights(small_vgg(), partial, strict=False)


def test_checkpoint_dicts_dtypes_and_file_errors(tmp_path):
    src = {k: np.array(v) for k, v in small_vgg(seed=1).state_dict().items()}
    TI.load_torch_weights(small_vgg(), {"state_dict": src, "epoch": 3})  # a training checkpoint
    m64 = TI.load_torch_weights(small_vgg().astype("float64"), src)
    assert m64.dtype == np.float64  # cast to the model's dtype
    bad = dict(src, **{"features.0.bias": np.zeros(4, np.int64)})
    with pytest.raises(StateDictMismatch, match="non-floating"):
        TI.load_torch_weights(small_vgg(), bad)
    with pytest.raises(FileNotFoundError):
        TI.load_torch_weights(small_vgg(), tmp_path / "missing.npz")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown weight file type"):
        TI.load_torch_weights(small_vgg(), tmp_path / "w.txt")
