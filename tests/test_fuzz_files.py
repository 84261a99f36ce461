"""Fuzzing the loaders (issue 15): the model-file JSON (random JSON in each metadata field and
layer argument) and the bytes of ``.npz`` files, ``.npy`` members and ``.pth`` files (random,
and a valid file's bytes mutated, cut short, or given a pickle opcode that states a size).

Every file either loads or is refused with the one documented error type (``WeightFileError``;
``PthError`` for ``load_pth``) and a one-line message, raising the peak RSS by less than
MAX_FUZZ_MIB; a refused model file is also one ``gradcam: error:`` line from the command line.
The table of known bad files is ``tests/test_bad_files.py``.
"""

import copy
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minicnn
from badinput import assert_clean_error
from gradcam import cli
from minicnn.io import WeightFileError
from minicnn.pth import PthError, load_pth
from test_bad_files import STATUS, _good, _model, _npy, _npz, _pickle_zip, _zip
from test_pth import _specs, _state_pickle, legacy_bytes, zip_bytes

def _deep_list(depth):
    return json.loads("[" * depth + "]" * depth)  # NOTE: parses up to ~900 deep, never deeper


SIZES = st.sampled_from([0, 1, -1, 3, 2 ** 31, 10 ** 11, 2 ** 64])  # edges of the size checks
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | SIZES | st.floats()
    | st.text(max_size=8) | st.integers(1, 800).map(_deep_list),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
META_FIELDS = ["architecture", "class_names", "dtype", "input_size", "preprocess", "format",
               "version"]
LAYER_ARGS = [("conv", k) for k in ("in_channels", "out_channels", "kernel_size", "stride",
                                    "padding", "dilation", "groups", "bias", "type")] + \
    [("fc", k) for k in ("in_features", "out_features", "bias")] + [("gap", "type")]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
MAX_FUZZ_MIB = 64  # how far loading one of these small files may raise the peak RSS


def _peak_rss_mib():
    """This process's peak RSS (VmHWM) in MiB, or None where /proc does not tell."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) // 1024 for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def _reset_peak_rss():
    """Set the peak RSS back to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_rss_mib()
    except OSError:
        return None


def _bounded(load, path, errors):
    """``load(path)``, or the one-line refusal ``errors`` allows, raising the peak RSS by at
    most MAX_FUZZ_MIB (RSS, not allocations: a pickle's claimed length reserves untouched
    virtual memory, which costs nothing)."""
    start = _reset_peak_rss()
    try:
        load(path)
        refused = None
    except errors as e:
        refused = str(e)
    if start is not None:
        assert _peak_rss_mib() - start < MAX_FUZZ_MIB
    if refused is not None:
        assert refused and "\n" not in refused and len(refused) < 600, refused
    return refused


@FUZZ
@given(where=st.sampled_from(META_FIELDS + LAYER_ARGS), value=JSON)
def test_fuzz_model_file_json(tmp_path, capsys, where, value):
    meta, arrays = _good(tmp_path)
    meta = copy.deepcopy(meta)
    if isinstance(where, tuple):
        dict(meta["architecture"]["layers"])[where[0]][where[1]] = value
    else:
        meta[where] = value
    path = _npz(tmp_path / "fuzz.npz", meta, arrays)
    if _bounded(minicnn.load, path, WeightFileError) is not None:
        rc = cli.main(["layers", "--model", str(path)])
        assert_clean_error(rc, capsys.readouterr().err, STATUS["layers"], "fuzz.npz")


# pickle opcodes with sizes in them: a memo index, a byte count, nesting (inserted anywhere)
OPCODES = st.one_of(
    st.integers(0, 2 ** 32 - 1).map(lambda n: b"r" + n.to_bytes(4, "little")),  # LONG_BINPUT
    st.integers(0, 2 ** 32 - 1).map(lambda n: b"B" + n.to_bytes(4, "little")),  # BINBYTES
    st.integers(0, 2 ** 64 - 1).map(lambda n: b"\x8e" + n.to_bytes(8, "little")),  # BINBYTES8
    st.integers(1, 3000).map(lambda n: b"]" * n + b"a" * (n - 1)),  # nested lists
    st.just(b"]q\x00h\x00a"))  # a list that contains itself


def _mutated(base, pickle=False):
    """Random bytes, or ``base`` with a few bytes changed, maybe cut short (and for a pickle,
    maybe a sized opcode inserted)."""
    edits = st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=8)
    insert = st.tuples(st.integers(0, len(base)), OPCODES) if pickle else st.none()

    def apply(args):
        changes, cut, put = args
        data = bytearray(base)
        for i, b in changes:
            data[i] = b
        if put is not None:
            data[put[0]:put[0]] = put[1]
        return bytes(data[:cut + (len(put[1]) if put else 0)])
    return st.binary(max_size=600) | st.tuples(edits, st.integers(0, len(base)), insert).map(apply)


def _good_npz_bytes():
    buf = io.BytesIO()
    m = _model()
    meta = json.dumps(m.file_meta()).encode()
    np.savez(buf, __meta__=np.frombuffer(meta, np.uint8),
             **{k: np.array(v) for k, v in m.state_dict().items()})
    return buf.getvalue()


GOOD_NPZ = _good_npz_bytes()
GOOD_NPY = _npy(np.arange(12, dtype=np.float32).reshape(3, 4))
SMALL = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(2)}
GOOD_PTH = {"zip": zip_bytes({"0": SMALL["a.weight"].ravel(), "1": SMALL["a.bias"]},
                             _specs(SMALL)),
            "legacy": legacy_bytes({"0": SMALL["a.weight"].ravel(), "1": SMALL["a.bias"]},
                                   _specs(SMALL))}


@FUZZ
@given(data=_mutated(GOOD_NPZ))
def test_fuzz_npz_bytes(tmp_path, data):
    (tmp_path / "f.npz").write_bytes(data)
    _bounded(minicnn.load, tmp_path / "f.npz", WeightFileError)


@FUZZ
@given(data=_mutated(GOOD_NPY))
def test_fuzz_npy_member_bytes(tmp_path, data):
    """The .npy parser behind a valid zip (its CRC matches the mutated bytes)."""
    meta = _npy(np.frombuffer(json.dumps(_model().file_meta()).encode(), np.uint8))
    _zip(tmp_path / "f.npz", {"a.npy": data, "__meta__.npy": meta})
    _bounded(minicnn.load, tmp_path / "f.npz", WeightFileError)


def _pickle_with_storages(pkl):
    return _pickle_zip(pkl, {"archive/data/0": SMALL["a.weight"].tobytes(),
                             "archive/data/1": SMALL["a.bias"].tobytes()})


@FUZZ
@given(kind=st.sampled_from(["zip", "legacy", "pickle"]), data=st.data())
def test_fuzz_pth_bytes(tmp_path, kind, data):
    """Mutated .pth files, and mutated data.pkl pickles inside a valid zip."""
    if kind == "pickle":
        raw = _pickle_with_storages(data.draw(_mutated(_state_pickle(_specs(SMALL),
                                                                     legacy=False), True)))
    else:
        raw = data.draw(_mutated(GOOD_PTH[kind]))
    (tmp_path / "f.pth").write_bytes(raw)
    _bounded(load_pth, tmp_path / "f.pth", PthError)


def test_fuzz_bases_load(tmp_path):
    """The control of the fuzz tests: the unmutated files load, with their values."""
    (tmp_path / "m.npz").write_bytes(GOOD_NPZ)
    assert np.array_equal(minicnn.load(tmp_path / "m.npz")["fc"].weight, _model()["fc"].weight)
    _zip(tmp_path / "a.npz", {"a.npy": GOOD_NPY, "__meta__.npy": _npy(np.frombuffer(
        json.dumps(_model().file_meta()).encode(), np.uint8))})
    with pytest.raises(WeightFileError, match="unexpected"):  # a.weight is no layer of it
        minicnn.load(tmp_path / "a.npz")
    raws = dict(GOOD_PTH, pickle=_pickle_with_storages(_state_pickle(_specs(SMALL),
                                                                     legacy=False)))
    for kind, raw in raws.items():
        (tmp_path / "f.pth").write_bytes(raw)
        got = load_pth(tmp_path / "f.pth")
        assert list(got) == list(SMALL), kind
        assert all(np.array_equal(got[k], SMALL[k]) for k in SMALL), kind
