"""Bad model files and ``.pth`` files (issue 15): one clear error from the loaders, one line
from the command line.

Each row of ``MODEL_FILES`` / ``PTH_FILES`` is one bad file, made by changing ONE thing in a
good one (``test_the_good_files_load_and_run`` is the control: unchanged, they load and run).
For ``minicnn.load`` / ``torch_import.load_torch_weights`` a row gives the exception type and
message; for every subcommand that takes the file, the run must end with exactly one
``gradcam: error:`` line, the subcommand's exit status, no traceback and no file written.
The fuzz tests of the same loaders are in ``tests/test_fuzz_files.py``.
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import minicnn
from badinput import assert_clean_error, files
from gradcam import cli
from minicnn import layers as L
from minicnn import torch_import, zoo
from minicnn.architecture import MAX_PARAMETERS, ArchitectureError, check_architecture
from minicnn.io import WeightFileError
from minicnn.torch_import import StateDictMismatch
from test_pth import _int, _specs, _state_pickle, _str, _tensor, zip_bytes

# the documented exit status of a runtime error of each subcommand (compare: its own)
STATUS = {"explain": 1, "layers": 1, "evaluate": 1, "demo": 1,
          "compare": 3}  # compare: 3 is an error, distinct from its verdicts 0-2


# --------------------------------------------------------------------------- good files
def _model():
    """A small model with a GAP head (so every subcommand can run it) and class names."""
    return minicnn.Sequential(
        [("conv", L.Conv2d(3, 4, 3, padding=1, rng=0)), ("relu", L.ReLU()),
         ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(4, 3, rng=1))],
        class_names=["circle", "square", "triangle"], input_size=(16, 16))


def _npz(path, meta, arrays, raw_meta=None):
    """A model file as ``model.save`` writes it, from any meta (NaN allowed) and arrays."""
    blob = json.dumps(meta).encode() if raw_meta is None else raw_meta
    np.savez(path, __meta__=np.frombuffer(blob, np.uint8), **arrays)
    return path


def _good(tmp_path):
    m = _model()
    return m.file_meta(), {k: np.array(v) for k, v in m.state_dict().items()}


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(a, header=None):
    """The bytes of ``a`` as .npy, or of ``a``'s data under another header dict."""
    buf = io.BytesIO()
    if header is None:
        np.save(buf, a)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(a.tobytes())
    return buf.getvalue()


# --------------------------------------------------------------------------- bad model files
def _meta_case(change):
    def make(tmp_path):
        meta, arrays = _good(tmp_path)
        change(meta, arrays)
        return _npz(tmp_path / "bad.npz", meta, arrays)
    return make


def _set_arg(layer, key, value):
    def change(meta, arrays):
        dict(meta["architecture"]["layers"])[layer][key] = value
    return change


def _nested(depth):
    cfg = {"type": "Sequential", "layers": []}
    for _ in range(depth):
        cfg = {"type": "Sequential", "layers": [["s", cfg]]}
    return cfg


def _deep_json(tmp_path):
    meta, arrays = _good(tmp_path)
    raw = b'{"format": "minicnn", "version": 1, "architecture": ' + b"[" * 100_000 \
        + b"]" * 100_000 + b"}"
    return _npz(tmp_path / "bad.npz", meta, arrays, raw_meta=raw)


def _huge_header(tmp_path):
    """A member whose .npy header declares 400 GB (10**11 float32) over 16 bytes of data."""
    meta, arrays = _good(tmp_path)
    members = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
    members["fc.weight.npy"] = _npy(np.zeros(4, np.float32), {
        "descr": "<f4", "fortran_order": False, "shape": (10 ** 11,)})
    members["__meta__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return _zip(tmp_path / "bad.npz", members)


def _deflated_bomb(tmp_path):
    """A deflated member that expands about 1000-fold (4 MB of zeros in a few KB)."""
    meta, arrays = _good(tmp_path)
    members = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
    members["zeros.npy"] = _npy(np.zeros(2 ** 20, np.float32))
    members["__meta__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return _zip(tmp_path / "bad.npz", members, zipfile.ZIP_DEFLATED)


def _nan_weight(meta, arrays):
    arrays["fc.weight"][1, 2] = np.nan


def _inf_bias(meta, arrays):
    arrays["conv.bias"][0] = -np.inf


def _pickled_member(tmp_path):
    meta, arrays = _good(tmp_path)
    np.savez(tmp_path / "bad.npz", __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
             evil=np.array([{"a": 1}], dtype=object), **arrays)
    return tmp_path / "bad.npz"


def _truncated(tmp_path):
    meta, arrays = _good(tmp_path)
    data = _npz(tmp_path / "good.npz", meta, arrays).read_bytes()
    (tmp_path / "bad.npz").write_bytes(data[: len(data) // 2])
    return tmp_path / "bad.npz"


def _empty(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"")
    return tmp_path / "bad.npz"


# name -> (make(tmp_path) -> path, text of the one error line)
MODEL_FILES = {
    "architecture is a list": (_meta_case(lambda m, a: m.update(architecture=[1, 2])),
                               "architecture must be a Sequential or Residual object, got [1, 2]"),
    "architecture is a string": (_meta_case(lambda m, a: m.update(architecture="Sequential")),
                                 "architecture must be a Sequential or Residual object"),
    "architecture is null": (_meta_case(lambda m, a: m.update(architecture=None)),
                             "architecture must be a Sequential or Residual object, got None"),
    "class_names is an int": (_meta_case(lambda m, a: m.update(class_names=3)),
                              "bad metadata 'class_names' (must be null or a list of strings"),
    "class_names is a dict": (_meta_case(lambda m, a: m.update(class_names={"0": "cat"})),
                              "bad metadata 'class_names' (must be null or a list of strings"),
    "JSON nested 100,000 deep": (_deep_json, "'__meta__' JSON is nested too deeply"),
    "containers nested 40 deep": (_meta_case(lambda m, a: m.update(architecture=_nested(40))),
                                  "containers nest deeper than 32"),
    "a 400 GB layer": (_meta_case(_set_arg("fc", "out_features", 10 ** 11)),
                       f"over the limit of {MAX_PARAMETERS}"),
    "in_channels -3": (_meta_case(_set_arg("conv", "in_channels", -3)),
                       "layer 'conv': Conv2d in_channels must be a positive integer, got -3"),
    "in_channels '3'": (_meta_case(_set_arg("conv", "in_channels", "3")),
                        "layer 'conv': Conv2d in_channels must be a positive integer, got '3'"),
    "in_channels 3.5": (_meta_case(_set_arg("conv", "in_channels", 3.5)),
                        "layer 'conv': Conv2d in_channels must be a positive integer, got 3.5"),
    "padding 4096": (_meta_case(_set_arg("conv", "padding", 4096)),
                     "layer 'conv': Conv2d padding must be an integer in [0, 64]"),
    "unknown argument": (_meta_case(_set_arg("conv", "rng", 5)), "Conv2d takes no argument 'rng'"),
    "dtype object": (_meta_case(lambda m, a: m.update(dtype="object")), "bad metadata 'dtype'"),
    "input_size 10**9": (_meta_case(lambda m, a: m.update(input_size=[10 ** 9, 16])),
                         "bad metadata 'input_size'"),
    "a NaN weight": (_meta_case(_nan_weight),
                     "parameter 'fc.weight' holds 1 non-finite value(s) (NaN or inf)"),
    "an inf bias": (_meta_case(_inf_bias), "parameter 'conv.bias' holds 1 non-finite value(s)"),
    "a .npy header declaring 400 GB": (_huge_header, "'fc.weight.npy' declares shape"),
    "a deflated member expanding 1000-fold": (_deflated_bomb, "over 100-fold (a zip bomb?)"),
    # categories that already held: kept so the table covers every kind of bad model file
    "unknown layer type": (_meta_case(_set_arg("relu", "type", "Conv3d")),
                           "unknown layer type 'Conv3d'"),
    "a pickled object array": (_pickled_member, "refusing pickled data"),
    "truncated file": (_truncated, "truncated or corrupt .npz"),
    "empty file": (_empty, "not an .npz weight file"),
}


@pytest.mark.parametrize("case", MODEL_FILES)
def test_minicnn_load_refuses_each_bad_model_file_with_one_line(tmp_path, case):
    make, text = MODEL_FILES[case]
    path = make(tmp_path)
    with pytest.raises(WeightFileError) as err:
        minicnn.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and text in msg and "\n" not in msg, msg
    assert len(msg) < 400, msg


# --------------------------------------------------------------------------- the command line
def _inputs(folder):
    """A 64x64 PNG, a heatmap and a preprocessed input for ``compare``, in ``folder``."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "img.png")
    np.save(folder / "heat.npy", rng.random((64, 64)))
    np.save(folder / "x.npy", rng.random((3, 64, 64)).astype(np.float32))
    return folder


def _argv(sub, model, inputs, out, weights=None):
    argv = {"explain": ["explain", str(inputs / "img.png"), "--model", model, "--out", str(out)],
            "layers": ["layers", "--model", model],
            "evaluate": ["evaluate", "--models", model, "--n", "1"],
            "demo": ["demo", "--model", model, "--out", str(out)],
            "compare": ["compare", str(inputs / "heat.npy"), str(inputs / "x.npy"),
                        "--model", model]}[sub]
    return argv + (["--weights", str(weights)] if weights else [])


def _run_clean_error(capsys, tmp_path, argv, status, text):
    before = files(tmp_path)
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert_clean_error(rc, err, status, text, tmp_path / "out")
    assert files(tmp_path) == before  # no temporary or partial file anywhere


@pytest.mark.parametrize("sub", list(STATUS))
@pytest.mark.parametrize("case", MODEL_FILES)
def test_every_subcommand_gives_one_line_for_each_bad_model_file(tmp_path, capsys, case, sub):
    make, text = MODEL_FILES[case]
    inputs, path = _inputs(tmp_path / "in"), make(tmp_path)
    argv = _argv(sub, str(path), inputs, tmp_path / "out")
    _run_clean_error(capsys, tmp_path, argv, STATUS[sub], text)


def test_the_good_files_load_and_run(tmp_path, capsys):
    """The control: the files the rows change load, run, and give finite heatmaps."""
    meta, arrays = _good(tmp_path)
    path = _npz(tmp_path / "good.npz", meta, arrays)
    model = minicnn.load(path)
    assert model.class_names == ["circle", "square", "triangle"]
    assert np.array_equal(model["fc"].weight, arrays["fc.weight"])
    inputs, out = _inputs(tmp_path / "in"), tmp_path / "out"
    assert cli.main(_argv("layers", str(path), inputs, out)) == 0
    assert cli.main(_argv("explain", str(path), inputs, out) + ["--method", "gradcam"]) == 0
    written = [f for f in files(out) if f.endswith(".npz")]
    assert written and all(np.isfinite(np.load(out / f)["heatmap"]).all() for f in written)
    pth = tmp_path / "good.pth"
    pth.write_bytes(_state_zip(SHAPES))
    loaded = torch_import.load_torch_weights(zoo.shapes_cnn(seed=1), pth)
    assert np.array_equal(loaded["conv1"].weight, SHAPES["conv1.weight"])
    assert cli.main(_argv("compare", "shapes_cnn", inputs, out, weights=pth)) in (0, 1, 2)
    assert "gradcam: error" not in capsys.readouterr().err


# --------------------------------------------------------------------------- .pth files
def _state_zip(state, replace=None):
    """A zip-format .pth of ``state`` (name -> array); ``replace``: name -> raw pickle bytes
    put where that tensor's record would be."""
    arrays = {k: np.array(v) for k, v in state.items()}
    specs = _specs(arrays)
    storages = {specs[k][0]: a.ravel() for k, a in arrays.items()}
    body = b"".join(_str(k) + ((replace or {}).get(k) or _tensor(*specs[k], legacy=False))
                    for k in arrays)
    pkl = b"\x80\x02" + b"ccollections\nOrderedDict\n)R(" + body + b"u."
    return zip_bytes(storages, specs, main=pkl)


def _pth(tmp_path, data):
    (tmp_path / "bad.pth").write_bytes(data)
    return tmp_path / "bad.pth"


def _pickle_zip(pkl, extra=None, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        zf.writestr("archive/data.pkl", pkl)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


SHAPES = zoo.shapes_cnn(seed=0).state_dict()


def _with_nan():
    state = {k: np.array(v) for k, v in SHAPES.items()}
    state["conv1.weight"][0, 0, 0, 0] = np.nan
    return _state_zip(state)


def _storage_bomb():
    n = 2 ** 20  # 4 MB of zeros, a few KB deflated
    pkl = _state_pickle({"w": ("0", np.float32, n, 0, (n,), (1,))}, legacy=False)
    return _pickle_zip(pkl, {"archive/data/0": bytes(4 * n)}, zipfile.ZIP_DEFLATED)


SELF_LIST = b"\x80\x02]q\x00h\x00a."  # l = []; l.append(l)
SELF_DICT = b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."  # d = {}; d["a"] = d

# name -> (bytes of the file, exception of load_torch_weights, text of the message)
PTH_FILES = {
    "a list that contains itself": (_pickle_zip(SELF_LIST), WeightFileError,
                                    "the pickled list contains itself"),
    "a dict that contains itself": (_pickle_zip(SELF_DICT), WeightFileError,
                                    "the pickled dict contains itself"),
    "lists nested 100,000 deep": (_pickle_zip(b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999
                                              + b"."), WeightFileError,
                                  "nests deeper than 64 containers"),
    "a deflated storage expanding 1000-fold": (_storage_bomb(), WeightFileError,
                                                "over 100-fold (a zip bomb?)"),
    "a deflated data.pkl expanding 1000-fold": (
        _pickle_zip(b"\x80\x02" + b"N0" * 2 ** 20 + b"N.", compression=zipfile.ZIP_DEFLATED),
        WeightFileError, "over 100-fold (a zip bomb?)"),
    "a storage larger than the pickle says": (
        _pickle_zip(_state_pickle({"w": ("0", np.float32, 4, 0, (4,), (1,))}, legacy=False),
                    {"archive/data/0": bytes(4000)}), WeightFileError,
        "zip member 'archive/data/0' declares 4000 bytes, not 16..16"),
    "a list smuggled in as a weight": (
        _state_zip(SHAPES, {"conv1.weight": b"](" + _int(1) + _int(2) + b"e"}),
        WeightFileError, "entry 'conv1.weight' is a list, not a tensor"),
    "a NaN weight": (_with_nan(), StateDictMismatch,
                     "1 arrays with non-finite values (conv1.weight: 1 NaN/inf)"),
    # categories that already held
    "a malicious global": (_pickle_zip(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR."),
                           WeightFileError, "refusing to load global os.system"),
    "a truncated zip": (_state_zip(SHAPES)[:3000], WeightFileError, "corrupt"),
}


@pytest.mark.parametrize("case", PTH_FILES)
def test_load_torch_weights_refuses_each_bad_pth_with_one_line(tmp_path, case):
    data, error, text = PTH_FILES[case]
    path = _pth(tmp_path, data)
    with pytest.raises(error) as err:
        torch_import.load_torch_weights(zoo.shapes_cnn(seed=1), path)
    msg = str(err.value)
    assert text in msg and "\n" not in msg and len(msg) < 400, msg


@pytest.mark.parametrize("case", PTH_FILES)
def test_compare_weights_gives_one_line_for_each_bad_pth(tmp_path, capsys, case):
    data, _, text = PTH_FILES[case]
    inputs, path = _inputs(tmp_path / "in"), _pth(tmp_path, data)
    argv = _argv("compare", "shapes_cnn", inputs, tmp_path / "out", weights=path)
    _run_clean_error(capsys, tmp_path, argv, STATUS["compare"], text)


def test_load_state_dict_requires_arrays():
    model = _model()
    state = {k: np.array(v) for k, v in model.state_dict().items()}
    state["fc.bias"] = [0.0, 0.0, 0.0]  # the right length: only its type is wrong
    with pytest.raises(TypeError, match="layer 'fc': fc.bias is a list, not an array"):
        model.load_state_dict(state)
    state["fc.bias"] = np.zeros(3)  # the control: as an array it loads
    assert np.array_equal(model.load_state_dict(state)["fc"].bias, np.zeros(3))
    with pytest.raises(TypeError, match="entry 'fc.bias' is a list, not a tensor"):
        torch_import.load_torch_weights(model, {**state, "fc.bias": [0.0, 0.0, 0.0]})


# --------------------------------------------------------------------------- the size checks
def test_parameters_are_counted_from_the_architecture_alone():
    """The shapes are those of the built models' state dicts, in order (grouped and depthwise
    convs, batch norm, bias-free layers included), and the cap is exact at its boundary:
    2**14 x 2**14 = MAX_PARAMETERS numbers pass, one row more does not."""
    assert 2 ** 28 == MAX_PARAMETERS
    for name, build in zoo.MODELS.items():
        if name == "vgg16":  # 138 M numbers: built in seconds, and nothing new to count
            continue
        model = build()
        shapes = {k: a.shape for k, a in model.state_dict().items()}
        assert list(check_architecture(model.config()).items()) == list(shapes.items()), name
    grouped = minicnn.Sequential([("c", L.Conv2d(4, 6, 3, groups=2, bias=False, rng=0)),
                                  ("bn", L.BatchNorm2d(6))])
    got = check_architecture(grouped.config())
    assert got["c.weight"] == (6, 2, 3, 3) and "c.bias" not in got  # groups and bias count
    assert got == {"c.weight": (6, 2, 3, 3), **dict.fromkeys(
        ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"], (6,))}

    def linear(n_in, n_out):
        return {"type": "Sequential", "layers": [
            ["fc", {"type": "Linear", "in_features": n_in, "out_features": n_out,
                    "bias": False}]]}
    assert check_architecture(linear(2 ** 14, 2 ** 14)) == {"fc.weight": (2 ** 14, 2 ** 14)}
    with pytest.raises(ArchitectureError, match="layer 'fc' takes the model to"):
        check_architecture(linear(2 ** 14, 2 ** 14 + 1))


def _peak_rss_of_load(path, loader):
    """Peak RSS growth (MiB) of ``loader(path)`` in a fresh interpreter, and its outcome."""
    code = (f"import resource, sys\nfrom {loader[0]} import {loader[1]} as load\n"
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load(sys.argv[1]); out = 'loaded'\n"
            "except ValueError as e:\n    out = str(e)\n"
            "r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print((r1 - r0) // 1024); print(out)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(os.path.dirname(os.path.dirname(minicnn.__file__)))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, env=env, timeout=120, check=True)
    mib, out = done.stdout.splitlines()[:2]
    return int(mib), out


@pytest.mark.parametrize("kind", ["pth", "npz"])
def test_a_zip_bomb_is_refused_before_it_reaches_memory(tmp_path, kind):
    """A 256 MB member deflated to ~250 KB: refused with the RSS unchanged (it used to load,
    at twice its size in RSS)."""
    n = 2 ** 26  # float32 zeros: 256 MB
    if kind == "pth":
        pkl = _state_pickle({"w": ("0", np.float32, n, 0, (n,), (1,))}, legacy=False)
        members, loader = {"archive/data.pkl": pkl}, ("minicnn.pth", "load_pth")
        name, path = "archive/data/0", tmp_path / "bomb.pth"
    else:
        meta, _ = _good(tmp_path)
        members = {"__meta__.npy": _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))}
        name, path, loader = "w.npy", tmp_path / "bomb.npz", ("minicnn", "load")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
        with zf.open(name, "w", force_zip64=True) as f:
            if kind == "npz":
                np.lib.format.write_array_header_1_0(f, {
                    "descr": "<f4", "fortran_order": False, "shape": (n,)})
            for _ in range(16):
                f.write(bytes(4 * n // 16))
    assert path.stat().st_size < 2 ** 20
    mib, out = _peak_rss_of_load(path, loader)
    assert "over 100-fold (a zip bomb?)" in out, out
    assert mib < 32, mib
