"""gradcam.viz: colour maps, the overlay formula, pixel-space maps, Figure 1 and atomic PNGs."""

import os
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import gradcam
from gradcam import viz
from minicnn import zoo
from minicnn.data import make_scenes


def _rows(n=2, size=16, seed=0):
    """Figure-1 panel rows with random maps (no model needed)."""
    rng = np.random.default_rng(seed)
    return [{"label": f"class {i}\np = 0.50", "gradcam": rng.random((size, size)),
             "counterfactual": rng.random((size, size)),
             "guided_backprop": rng.standard_normal((3, size, size)),
             "guided_gradcam": rng.standard_normal((3, size, size))} for i in range(n)]


def test_colorize_range_shape():
    h = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    out = viz.colorize(h)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    jet = matplotlib.colormaps["jet"]
    for v, px in ((0.0, out[0, 0]), (1.0, out[2, 3])):
        np.testing.assert_array_equal(px, np.rint(255 * np.array(jet(v)[:3])))
    # values outside [0, 1] and NaN are clipped / drawn as 0, never an error
    np.testing.assert_array_equal(viz.colorize(np.array([[-1.0, np.nan, 2.0]]))[0],
                                  viz.colorize(np.array([[0.0, 0.0, 1.0]]))[0])


def test_colorize_unknown_cmap_is_value_error():
    with pytest.raises(ValueError, match="unknown colormap"):
        viz.colorize(np.zeros((2, 2)), cmap="no-such-map")


def test_overlay_formula_at_a_pixel():
    image = np.zeros((4, 5, 3), np.uint8)
    image[2, 3] = (200, 100, 50)
    heat = np.zeros((4, 5))
    heat[2, 3] = 0.75
    out = viz.overlay(image, heat, alpha=0.3)
    colour = np.rint(255 * np.array(matplotlib.colormaps["jet"](0.75)[:3]))  # by hand
    expected = np.rint(0.7 * np.array([200.0, 100.0, 50.0]) + 0.3 * colour)
    np.testing.assert_array_equal(out[2, 3], expected)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    # a float image in [0, 1] is the same picture; alpha 0 / 1 give the image / the colours
    np.testing.assert_array_equal(viz.overlay(image / 255.0, heat, 0.3), out)
    np.testing.assert_array_equal(viz.overlay(image, heat, 0.0), image)
    np.testing.assert_array_equal(viz.overlay(image, heat, 1.0), viz.colorize(heat))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image, heat, 1.5)


def test_overlay_resizes_heatmap_to_image():
    out = viz.overlay(np.full((6, 8, 3), 255, np.uint8), np.ones((2, 2)), alpha=1.0)
    assert out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, viz.colorize(np.ones((6, 8))))


def test_to_uint8_gradient_zeros_is_grey_and_finite():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning
        for g in (np.zeros((3, 5, 7)), np.zeros((1, 5, 7), np.float32)):
            out = viz.to_uint8_gradient(g)
            assert out.shape == (5, 7, 3) and out.dtype == np.uint8
            assert (out == 128).all()


def test_to_uint8_gradient_sign_and_scale():
    g = np.zeros((3, 4, 4))
    g[:, 0, 0], g[:, 1, 1] = 1.0, -1.0
    out = viz.to_uint8_gradient(g)
    assert (out[0, 0] > 128).all() and (out[1, 1] < 128).all() and (out[2, 2] == 128).all()
    # scaling by 3 RMS: a map and 1000 times it look the same
    np.testing.assert_array_equal(viz.to_uint8_gradient(1000 * g), out)
    with pytest.raises(ValueError):
        viz.to_uint8_gradient(np.zeros((4, 4)))


def test_figure1_writes_a_png(tmp_path):
    image = np.random.default_rng(1).random((16, 16, 3))
    path = viz.figure1(image, _rows(2), tmp_path / "fig" / "f1.png", title="test")
    assert path == str(tmp_path / "fig" / "f1.png")
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w2, h2 = im.size
    with Image.open(viz.figure1(image, _rows(1), tmp_path / "f1_one.png")) as im:
        w1, h1 = im.size
    assert w1 == w2 and w2 > h2 > h1 > 0  # five columns; a second row adds height
    assert sorted(os.listdir(tmp_path / "fig")) == ["f1.png"]  # no temp file left behind


def test_figure1_rejects_incomplete_rows():
    rows = _rows(1)
    del rows[0]["guided_gradcam"]
    with pytest.raises(ValueError, match="guided_gradcam"):
        viz.figure1(np.zeros((16, 16, 3)), rows)


def test_explain_figure1_on_a_random_model():
    model = zoo.shapes_cnn(seed=0)
    x = make_scenes(1, seed=3).images
    panels = viz.explain_figure1(model, x, targets=["circle", 1])
    assert [r["target"] for r in panels["rows"]] == [0, 1]
    assert panels["image"].shape == (64, 64, 3)
    assert panels["layer"] == gradcam.grad_cam(model, x).layer  # the default layer
    for r in panels["rows"]:
        assert r["gradcam"].shape == r["counterfactual"].shape == (64, 64)
        assert r["guided_backprop"].shape == r["guided_gradcam"].shape == (3, 64, 64)
        assert 0.0 <= r["prob"] <= 1.0 and r["class_name"] in zoo.SHAPES_CLASSES
    np.testing.assert_allclose(panels["probs"].sum(), 1.0)
    fig = viz.figure1(panels["image"], panels["rows"])
    assert isinstance(fig, Figure)


@pytest.mark.parametrize("what", ["array", "figure"])
def test_save_png_leaves_nothing_when_the_write_fails(tmp_path, monkeypatch, what):
    def broken(self, f, *args, **kwargs):
        f.write(b"\x89PNG half")  # a partial file ...
        raise OSError("disk full")  # ... then the failure

    if what == "array":
        monkeypatch.setattr(Image.Image, "save", broken)
        obj = np.zeros((4, 4, 3), np.uint8)
    else:
        monkeypatch.setattr(Figure, "savefig", broken)
        obj = viz.figure1(np.zeros((8, 8, 3)), _rows(1, size=8))
    target = tmp_path / "out" / "x.png"
    with pytest.raises(OSError, match="disk full"):
        viz.save_png(obj, target)
    assert os.listdir(tmp_path / "out") == []  # neither x.png nor a temp file


def test_save_png_array_roundtrip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = viz.save_png(a, tmp_path / "a" / "b" / "img.png")
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), a)
