"""The command line's error promise under bad input, as ONE table (``BAD``).

Each row is a bad command line: an image, an output folder, a target, a layer, a model, an
option, or a file given to ``gradcam compare``. Each must end with exactly one
``gradcam: error: ...`` line on stderr that says what is wrong, no traceback, the documented
exit status (``STATUS``: 1 a runtime error, 2 a usage error, 3 any error of ``compare``, whose
0/1/2 are verdicts), and no file left in the output folder (``badinput.assert_clean_error``).
Below the table: the cases that used to fail and now work, and the library-level checks the
command line relies on.
"""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badinput import assert_clean_error, png_header
from gradcam import cli
from gradcam.cli import common
from minicnn import zoo
from minicnn.data import make_scenes

REAL_RESOLVE_MODEL = common.resolve_model
RUNTIME, USAGE, COMPARE = 1, 2, 3  # the documented statuses (README, ``gradcam compare -h``)


def _random_model(spec, weights=None, pretrained=True):
    """Random-weight zoo models (the shipped weights may be absent or being retrained)."""
    if spec in zoo.MODELS and weights is None:
        return zoo.MODELS[spec](seed=0).eval()
    return REAL_RESOLVE_MODEL(spec, weights, pretrained)


@pytest.fixture
def random_models(monkeypatch):
    monkeypatch.setattr(common, "resolve_model", _random_model)


# --------------------------------------------------------------------------- bad files
def _scene(path):
    rgb = (make_scenes(1, seed=0).images[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return str(path)




def _npy(path, a):
    np.save(path, a)
    return str(path)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _truncated(path, source):
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return str(path)


def _empty(path):
    Path(path).write_bytes(b"")
    return str(path)


def _huge_npy(path):
    """A 100-byte .npy whose header declares 10^10 float64 (80 GB)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)})
    Path(path).write_bytes(buf.getvalue() + b"\0" * 64)
    return str(path)


def _f_tiff_with_nan(path):
    a = np.full((16, 16), 0.5, np.float32)
    a[3, 4] = np.nan
    Image.fromarray(a, mode="F").save(path)
    return str(path)


def _heatmap(nan=0, inf=0):
    m = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    m.flat[:nan] = np.nan
    m.flat[nan:nan + inf] = np.inf
    return m


# --------------------------------------------------------------------------- the table
def _text(path):
    Path(path).write_text("hello, not an image or an array")
    return str(path)


def _out(t):
    return ["--out", str(t / "out")]


def _ex(t, *extra):
    """``gradcam explain GOOD --model shapes_cnn --out OUT`` + ``extra``."""
    return ["explain", _scene(t / "good.png"), "--model", "shapes_cnn", *_out(t), *extra]


def _cmp(t, heatmap=None, input=None, *extra):
    """``gradcam compare HEATMAP INPUT --model shapes_cnn`` + ``extra`` (sound defaults)."""
    heatmap = heatmap or _npy(t / "map.npy", _heatmap())
    return ["compare", heatmap, input or _scene(t / "good.png"), "--model", "shapes_cnn", *extra]


def _big_input_model(path, side):
    model = zoo.shapes_cnn(seed=0)
    model.input_size = (side, side)
    model.save(path)
    return str(path)


def _weights(t):
    return _npz(t / "w.npz", **{"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)})


# (case, exit status, text in the one error line, argv made in the test's folder t)
ROWS = [
    # images
    ("missing file", RUNTIME, "no such file",
     lambda t: ["explain", str(t / "nope.png"), "--model", "shapes_cnn", *_out(t)]),
    ("text file", RUNTIME, "not an image",
     lambda t: ["explain", _text(t / "t.png"), "--model", "shapes_cnn", *_out(t)]),
    ("truncated png", RUNTIME, "truncated",
     lambda t: ["explain", _truncated(t / "cut.png", _scene(t / "s.png")), "--model",
                "shapes_cnn", *_out(t)]),
    ("over Pillow's limit (2 x 89 M)", RUNTIME, "over the limit of 50,000,000",
     lambda t: ["explain", str(png_header(t / "h.png", 20000, 20000)), "--model", "shapes_cnn",
                *_out(t)]),
    ("between Pillow's warning and error", RUNTIME, "over the limit of 50,000,000",
     lambda t: ["explain", str(png_header(t / "h.png", 10000, 10000)), "--model", "shapes_cnn",
                *_out(t)]),
    ("over our 50 M limit only", RUNTIME, "over the limit of 50,000,000",
     lambda t: ["explain", str(png_header(t / "h.png", 8000, 8000)), "--model", "shapes_cnn",
                *_out(t)]),
    ("F-mode TIFF with NaN", RUNTIME, "NaN or inf pixel",
     lambda t: ["explain", _f_tiff_with_nan(t / "f.tiff"), "--model", "shapes_cnn", *_out(t)]),
    ("second image bad", RUNTIME, "nope.png",  # nothing written for the good first image
     lambda t: _ex(t)[:2] + [str(t / "nope.png")] + _ex(t)[2:]),
    # output folders
    ("output folder is a file", RUNTIME, "out.txt",
     lambda t: _ex(t)[:-2] + ["--out", _text(t / "out.txt")]),
    # targets
    ("unknown class", RUNTIME, "unknown class name 'dog'", lambda t: _ex(t, "--target", "dog")),
    ("class index out of range", RUNTIME, "out of range",
     lambda t: _ex(t, "--target", "circle,7")),
    ("empty class", RUNTIME, "empty class", lambda t: _ex(t, "--target", "circle,,cross")),
    # layers
    ("unknown layer", RUNTIME, "unknown layer 'conv9'", lambda t: _ex(t, "--layer", "conv9")),
    ("cam on shapes_cnn", RUNTIME, "global average pooling",
     lambda t: _ex(t, "--method", "cam")),
    # models
    ("unknown model", RUNTIME, "unknown model 'resnet9'",
     lambda t: _ex(t, "--model", "resnet9")),
    ("corrupt model file", RUNTIME, "m.npz",
     lambda t: _ex(t, "--model", _text(t / "m.npz"))),
    # a file may declare up to 4096 (minicnn.serialize's cap); the command line runs up to 1024
    ("model file declaring a 2048 x 2048 input", RUNTIME, "each side must be 1..1024",
     lambda t: ["layers", "--model", _big_input_model(t / "big.npz", 2048)]),
    ("model file declaring a 30000 x 30000 input", RUNTIME, "<= 4096, got [30000, 30000]",
     lambda t: ["layers", "--model", _big_input_model(t / "big.npz", 30000)]),
    # options
    ("unknown method", USAGE, "invalid choice", lambda t: _ex(t, "--method", "lime")),
    ("bad alpha", USAGE, "[0, 1]", lambda t: _ex(t, "--alpha", "1.5")),
    ("no command", USAGE, "required", lambda t: []),
    ("explain --size 30000", USAGE, "argument --size: must be at most 1024",
     lambda t: _ex(t, "--size", "30000", "30000")),
    ("layers --size 30000", USAGE, "argument --size: must be at most 1024",
     lambda t: ["layers", "--model", "shapes_cnn", "--size", "30000", "30000"]),
    ("demo --seed -1", USAGE, "argument --seed: must be a non-negative integer",
     lambda t: ["demo", "--model", "shapes_cnn", "--seed", "-1", *_out(t)]),
    ("evaluate --seed -1", USAGE, "argument --seed: must be a non-negative integer",
     lambda t: ["evaluate", "--seed", "-1"]),
    ("evaluate --n 0", RUNTIME, "--n must be >= 1",
     lambda t: ["evaluate", "--n", "0", "--methods", "gradcam"]),
    ("demo --count 100", USAGE, "argument --count: must be at most 64",
     lambda t: ["demo", "--model", "shapes_cnn", "--count", "100", *_out(t)]),
    ("empty --option array", RUNTIME, "empty file",
     lambda t: _ex(t, "--method", "sscam", "--option", f"noise=@{_empty(t / 'noise.npy')}")),
    # compare: its files (0 bytes, truncated, declaring 80 GB), non-finite values, options
    ("compare: empty heatmap", COMPARE, "empty file",
     lambda t: _cmp(t, _empty(t / "e.npy"))),
    ("compare: truncated .npz heatmap", COMPARE, "not a readable",
     lambda t: _cmp(t, _truncated(t / "c.npz", _npz(t / "m.npz", heatmap=_heatmap())))),
    ("compare: truncated .npy heatmap", COMPARE, "truncated",
     lambda t: _cmp(t, _truncated(t / "c.npy", _npy(t / "m.npy", _heatmap())))),
    ("compare: heatmap declares 80 GB", COMPARE, "over the limit",
     lambda t: _cmp(t, _huge_npy(t / "h.npy"))),
    ("compare: one NaN pixel", COMPARE, "1 of 4096 pixels are NaN",
     lambda t: _cmp(t, _npy(t / "n.npy", _heatmap(nan=1)))),
    ("compare: an inf pixel", COMPARE, "contains inf",
     lambda t: _cmp(t, _npy(t / "i.npy", _heatmap(inf=1)))),
    ("compare: empty input", COMPARE, "empty file",
     lambda t: _cmp(t, None, _empty(t / "x.npy"))),
    ("compare: truncated .npz input", COMPARE, "not a readable",
     lambda t: _cmp(t, None, _truncated(t / "xc.npz", _npz(t / "x.npz",
                                                             x=np.zeros((3, 64, 64)))))),
    ("compare: uint8 input", COMPARE, "/ 255",
     lambda t: _cmp(t, None, _npy(t / "u8.npy", np.zeros((3, 64, 64), np.uint8)))),
    ("compare: NaN input", COMPARE, "NaN or inf",
     lambda t: _cmp(t, None, _npy(t / "xn.npy", np.full((3, 64, 64), np.nan)))),
    ("compare: empty --alphas", COMPARE, "empty file",
     lambda t: _cmp(t, None, None, "--alphas", _empty(t / "a.npy"))),
    ("compare: truncated --alphas", COMPARE, "not a readable",
     lambda t: _cmp(t, None, None, "--alphas",
                    _truncated(t / "ac.npz", _npz(t / "a.npz", alpha=np.ones(64))))),
    ("compare: all-NaN --alphas", COMPARE, "64 of 64 alphas are NaN or inf",
     lambda t: _cmp(t, None, None, "--alphas", _npy(t / "an.npy", np.full(64, np.nan)))),
    ("compare: empty --weights", COMPARE, "empty file",
     lambda t: _cmp(t, None, None, "--weights", _empty(t / "e.npz"))),
    ("compare: truncated --weights", COMPARE, "not a readable .npz state dict",
     lambda t: _cmp(t, None, None, "--weights", _truncated(t / "wc.npz", _weights(t)))),
    ("compare: --tol -1", COMPARE, "argument --tol: must be a finite",
     lambda t: _cmp(t, None, None, "--tol", "-1")),
    ("compare: --tol nan", COMPARE, "argument --tol: must be a finite",
     lambda t: _cmp(t, None, None, "--tol", "nan")),
    ("compare: --tol 0", COMPARE, "argument --tol: must be a finite",
     lambda t: _cmp(t, None, None, "--tol", "0")),
    ("compare: missing file", COMPARE, "no such file",
     lambda t: _cmp(t, str(t / "no.npy"))),
    ("compare: no INPUT", COMPARE, "required",
     lambda t: ["compare", _npy(t / "map.npy", _heatmap()), "--model", "shapes_cnn"]),
    ("compare: unknown option", COMPARE, "unrecognized arguments",
     lambda t: _cmp(t, None, None, "--bogus")),
    ("compare: colour-mapped PNG", COMPARE, "colour-mapped",
     lambda t: _cmp(t, _scene(t / "rgb.png"))),
    ("compare: --size 30000", COMPARE, "argument --size: must be at most 1024",
     lambda t: _cmp(t, None, None, "--size", "30000", "30000")),
]


@pytest.mark.parametrize("case, status, text, make", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_with_its_status_and_leaves_no_file(tmp_path, random_models,
                                                                  capsys, case, status, text,
                                                                  make):
    rc = cli.main(make(tmp_path))
    assert_clean_error(rc, capsys.readouterr().err, status, text, tmp_path / "out")


def test_the_table_names_every_case_once():
    assert len({r[0] for r in ROWS}) == len(ROWS)


# --------------------------------------------------------------------------- statuses
def test_compare_documents_its_statuses_and_errors_never_take_a_verdicts(capsys):
    """``compare -h`` lists 0/1/2 as verdicts and 3 as error; the error status is none of them."""
    from gradcam.cli import compare

    assert compare.ERROR_STATUS == compare.USAGE_STATUS == COMPARE
    assert COMPARE not in compare.VERDICTS
    assert cli.main(["compare", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for k, v in compare.VERDICTS.items():
        assert f"{k} {v}" in text
    assert f"{COMPARE} error" in text
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| `compare` | 0 the map is ours" in readme and f"{COMPARE} any error" in readme


def test_other_subcommands_keep_1_for_runtime_and_2_for_usage_errors(tmp_path, capsys):
    missing = str(tmp_path / "missing.png")
    assert cli.main(["explain", missing, "--model", "shapes_cnn"]) == RUNTIME
    assert cli.main(["layers"]) == USAGE
    assert cli.main(["compare", missing, missing, "--model", "shapes_cnn"]) == COMPARE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(e.startswith("gradcam: error:") for e in err)


def test_a_bug_under_compare_shows_its_traceback_but_never_a_verdicts_status(tmp_path,
                                                                          monkeypatch, capsys):
    """Python's own exit status for a crash is 1, compare's "another convention": a bug there
    ends with 3 (its traceback still shown); elsewhere the bug propagates (control)."""
    def bug(spec, weights=None, pretrained=True):
        raise TypeError("a genuine bug")

    monkeypatch.setattr(common, "resolve_model", bug)
    assert cli.main(_cmp(tmp_path)) == COMPARE
    err = capsys.readouterr().err
    assert "Traceback" in err and "TypeError: a genuine bug" in err
    assert err.splitlines()[-1].startswith("gradcam: error: internal error")
    with pytest.raises(TypeError, match="genuine bug"):
        cli.main(["layers", "--model", "shapes_cnn"])


# --------------------------------------------------------------------------- now working
def test_photo_demo_with_a_shapes_model_uses_that_models_layers(tmp_path, random_models,
                                                                capsys):
    """``demo --model shapes_cnn --image x.png`` once failed with "unknown layer '_blocks.4'"
    (EfficientNet's layers): the three depths are now the shapes model's own."""
    good = _scene(tmp_path / "x.png")
    rc = cli.main(["demo", "--model", "shapes_cnn", "--image", good, "--out",
                   str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["depths_x.png",
                                                                    "figure1_x.png"]


def test_photo_depths_are_the_models_layers_at_three_resolutions():
    from gradcam.cli.demo import PHOTO_DEPTHS, photo_depths

    model = zoo.shapes_cnn(seed=0)
    model.forward(np.zeros((1, 3, 64, 64), np.float32))
    assert photo_depths(model) == (("relu1", "64x64"), ("relu2", "32x32"), (None, "16x16"))
    assert PHOTO_DEPTHS[0][0] not in model.layer_names()  # the EfficientNet names would fail


def test_an_all_nan_map_is_still_the_keras_diagnosis(tmp_path, random_models, capsys):
    """The one NaN map a convention makes (Keras' 0/0 on an all-zero map) is still compared,
    so refusing partial NaN maps is not refusing every NaN (control for the table's row)."""
    good = _scene(tmp_path / "x.png")
    rc = cli.main(["compare", _npy(tmp_path / "n.npy", np.full((64, 64), np.nan)), good,
                   "--model", "shapes_cnn"])
    out = capsys.readouterr().out
    assert rc == 2 and "all NaN" in out


# --------------------------------------------------------------------------- the library
def test_grad_cam_refuses_uint8_input_and_says_how_to_scale():
    from gradcam import grad_cam

    model = zoo.shapes_cnn(seed=0)
    x8 = (make_scenes(1, seed=0).images * 255).round().astype(np.uint8)
    with pytest.raises(ValueError, match=r"uint8.*/ 255"):
        grad_cam(model, x8)
    r = grad_cam(model, x8.astype(np.float32) / 255)  # the scaling the message names works
    assert np.isfinite(np.asarray(r.heatmap)).all()


def test_compare_library_refuses_non_finite_maps_alphas_and_tolerances():
    from gradcam.compare import compare
    from gradcam.userfiles import CompareError

    model = zoo.shapes_cnn(seed=0)
    x = make_scenes(1, seed=0).images
    with pytest.raises(CompareError, match="NaN"):
        compare(_heatmap(nan=1), model, x)
    with pytest.raises(CompareError, match="alphas"):
        compare(_heatmap(), model, x, alphas=np.full(64, np.nan))
    for tol in (-1, float("nan"), 0, float("inf")):
        with pytest.raises(CompareError, match="tolerance"):
            compare(_heatmap(), model, x, tol=tol)


def test_read_array_checks_the_declared_size_before_allocating(tmp_path):
    from gradcam.userfiles import CompareError, read_array

    with pytest.raises(CompareError, match="over the limit"):
        read_array(_huge_npy(tmp_path / "h.npy"), "map")
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as z:
        z.write(tmp_path / "h.npy", "heatmap.npy")
    with pytest.raises(CompareError, match="over the limit"):
        read_array(tmp_path / "h.npz", "map", ("heatmap",))
    ok = np.arange(6.0).reshape(2, 3)  # control: a sound file reads back exactly
    np.testing.assert_array_equal(read_array(_npz(tmp_path / "ok.npz", heatmap=ok), "map",
                                             ("heatmap",)), ok)
