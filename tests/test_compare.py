"""gradcam.compare: deliberately mis-conventioned maps are diagnosed correctly.

The model is VGG16's topology at 1/16 width at 224 x 224, so Grad-CAM's layer (features.29,
relu5_3) is 14 x 14, as in the paper, and summed gradients are 196x the averaged ones.
"""

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam import cli
from gradcam import conventions as C
from gradcam.compare import CompareError, affine_fit, compare
from gradcam.userfiles import load_map
from minicnn import layers as L
from minicnn import torch_import, zoo
from minicnn.model import Sequential

MIXED, POSITIVE = 7, 5  # targets whose linear map has both signs / is positive everywhere


@pytest.fixture(scope="module")
def vgg():
    model = zoo.vgg16(num_classes=10, width=1 / 16, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224))
    r = gradcam.grad_cam(model, x, MIXED)
    assert (r.linear_map < 0).any() and (r.linear_map > 0).any() and r.coarse.shape[1:] == (14, 14)
    return model, x, r


def check(vgg, user_map, status, *phrases, target=MIXED, **kw):
    model, x, _ = vgg
    c = compare(user_map, model, x, target, **kw)
    text = c.format()
    assert c.status == status, text
    for p in phrases:
        assert p in text, f"{p!r} not in:\n{text}"
    return c


def test_our_heatmap_and_coarse_map_are_ours(vgg):
    _, _, r = vgg
    check(vgg, r.heatmap[0], 0, "matches minicnn's reference")
    check(vgg, r.coarse[0], 0, "closest convention: minicnn-coarse")


def test_captum_default_signed_nearest(vgg):
    _, _, r = vgg
    m = C.from_result("captum", r)[0]
    check(vgg, m, 1, "closest convention: captum", "ReLU off", "upsampled with nearest",
          "no normalisation")


def test_tf_keras_vis_corner_aligned(vgg):
    _, _, r = vgg
    check(vgg, C.from_result("tf-keras-vis", r)[0], 1, "closest convention: tf-keras-vis",
          "corner-aligned bilinear")


def test_lua_summed_gradients_196x(vgg):
    _, _, r = vgg
    check(vgg, C.from_result("grad-cam-lua", r)[0], 1, "grad-cam-lua",
          "alphas are 196x ours: gradients summed, not averaged", "corner-aligned bilinear")


def test_nearest_upsampling(vgg):
    _, _, r = vgg
    m = gradcam.normalize(C.upsample(r.coarse, (224, 224), "nearest"))[0]
    check(vgg, m, 1, "matches minicnn except: upsampled with nearest")


def test_a_before_the_relu(vgg):
    model, x, _ = vgg
    r28 = gradcam.grad_cam(model, x, MIXED, "features.28")
    m = gradcam.normalize(C.upsample(r28.coarse, (224, 224), "bilinear"))[0]
    check(vgg, m, 1, "A taken at features.28 (Conv2d), the layer before features.29 (ReLU)")


def test_a_after_the_pool(vgg):
    model, x, _ = vgg
    r30 = gradcam.grad_cam(model, x, MIXED, "features.30")
    m = gradcam.normalize(C.upsample(r30.coarse, (224, 224), "bilinear"))[0]
    check(vgg, m, 1, "A taken at features.30 (MaxPool2d), the layer after features.29")


def test_relu_off(vgg):
    _, _, r = vgg
    up = C.upsample(r.linear_map, (224, 224), "bilinear")
    check(vgg, (up / np.abs(up).max())[0], 1, "ReLU off (negative values kept)")


def test_min_max_normalisation(vgg):
    """Where the map is positive everywhere, min-max differs from / max: diagnosed."""
    model, x, _ = vgg
    r = gradcam.grad_cam(model, x, POSITIVE)
    assert (r.linear_map > 0).all()
    m = C.minmax(C.upsample(r.coarse, (224, 224), "bilinear"))[0]
    check(vgg, m, 1, "closest convention: pytorch-grad-cam", "matches up to min-max normalisation",
          target=POSITIVE)
    m = (m - m.min()) / (m.max() - m.min()) * 0.5 + 0.25  # some other affine map
    check(vgg, m, 1, "matches up to a scale", target=POSITIVE)
    m = gradcam.normalize(r.coarse)  # normalised BEFORE resizing
    check(vgg, C.upsample(m, (224, 224), "bilinear")[0], 1,
          "matches up to max normalisation before resizing", target=POSITIVE)


def test_alphas_ratio(vgg):
    _, _, r = vgg
    check(vgg, r.heatmap[0], 0, alphas=r.weights[0])
    c = check(vgg, C.from_result("tf-keras-vis", r)[0], 1, "alphas are 196x ours",
              alphas=196 * r.weights[0])
    assert "summed" in c.alpha_note


def test_unrelated_map_is_status_2(vgg):
    check(vgg, np.random.default_rng(1).random((224, 224)), 2, "no convention matches")
    other = gradcam.grad_cam(vgg[0], vgg[1], 2).heatmap[0]  # another class
    check(vgg, other, 2, "no convention matches")


def test_png_grayscale_and_colour(vgg, tmp_path):
    _, _, r = vgg
    path = tmp_path / "heat.png"
    Image.fromarray(np.uint8(np.round(255 * r.heatmap[0]))).save(path)
    m, tol = load_map(path)
    assert tol == 2 / 255
    model, x, _ = vgg
    assert compare(m, model, x, MIXED, tol=tol).status == 0
    rgb = np.stack([np.uint8(255 * r.heatmap[0]), np.zeros((224, 224), np.uint8),
                    np.uint8(255 - 255 * r.heatmap[0])], axis=-1)
    Image.fromarray(rgb).save(path)
    with pytest.raises(CompareError, match="colour-mapped"):
        load_map(path)


def test_keras_nan_on_an_all_zero_map(tmp_path):
    """A layer whose output is all zero: Keras' ReLU(x)/max(x) is 0/0 = NaN, ours stays 0."""
    rng = np.random.default_rng(0)
    model = Sequential([("conv", L.Conv2d(3, 2, 3, padding=1, rng=rng, dtype="float64")),
                        ("relu", L.ReLU()), ("gap", L.GlobalAvgPool2d()),
                        ("fc", L.Linear(2, 2, rng=rng, dtype="float64"))]).eval()
    model["conv"].params["bias"][:] = -100.0  # every unit off
    x = rng.standard_normal((1, 3, 6, 6))
    c = compare(np.full((6, 6), np.nan), model, x, 0)
    assert c.status == 1 and "keras-tutorial" in c.closest, c.format()
    assert compare(np.zeros((6, 6)), model, x, 0).status == 0


def test_affine_fit_recovers_scale_and_offset():
    M = np.random.default_rng(0).random((5, 7))
    a, b, res = affine_fit(3.0 * M - 0.5, M)
    assert abs(a - 3) < 1e-12 and abs(b + 0.5) < 1e-12 and res < 1e-12


def test_cli_exit_status_and_errors(tmp_path, capsys):
    """0 ours, 1 another convention, 2 no match; bad input: one error line and 3. The model
    comes as a saved model file, and as torch-style weights (--weights) for a zoo name."""
    model = zoo.shapes_cnn(seed=0).eval()
    x = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    r = gradcam.grad_cam(model, x, 1)
    model.save(tmp_path / "m.npz")
    torch_import.save_npz(model.state_dict(), tmp_path / "w.npz")
    np.save(tmp_path / "x.npy", x[0])
    np.save(tmp_path / "ours.npy", r.heatmap[0])
    np.save(tmp_path / "nearest.npy", gradcam.normalize(C.upsample(r.coarse, 64, "nearest"))[0])
    np.save(tmp_path / "noise.npy", np.random.default_rng(1).random((64, 64)))
    base = ["compare", "--target", "1"]
    for heat, want in (("ours", 0), ("nearest", 1), ("noise", 2)):
        for how in (["--model", str(tmp_path / "m.npz")],
                    ["--model", "shapes_cnn", "--weights", str(tmp_path / "w.npz")]):
            rc = cli.main(base + [str(tmp_path / f"{heat}.npy"), str(tmp_path / "x.npy")] + how)
            out = capsys.readouterr().out
            assert rc == want, out
    assert "upsampled with nearest" in cli.main(base + [str(tmp_path / "nearest.npy"),
                                                        str(tmp_path / "x.npy"), "--model",
                                                        str(tmp_path / "m.npz")]) * "" + \
        capsys.readouterr().out
    rc = cli.main(base + [str(tmp_path / "missing.npy"), str(tmp_path / "x.npy"),
                          "--model", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and err.startswith("gradcam: error:")
    bad = dict(model.state_dict())
    bad["fc.weight"] = np.zeros((3, 256), np.float32)
    torch_import.save_npz(bad, tmp_path / "bad.npz")
    rc = cli.main(base + [str(tmp_path / "ours.npy"), str(tmp_path / "x.npy"), "--model",
                          "shapes_cnn", "--weights", str(tmp_path / "bad.npz")])
    err = capsys.readouterr().err
    assert rc == 3 and "fc.weight: file (3, 256) vs model (4, 256)" in err


def test_cli_with_an_image_input(tmp_path, capsys):
    """An image INPUT is loaded as ``gradcam explain`` loads it, so its map compares as ours."""
    from gradcam.images import load_image

    model = zoo.shapes_cnn(seed=0).eval()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)).save(
        tmp_path / "photo.png")
    x, _ = load_image(tmp_path / "photo.png", (64, 64))
    np.save(tmp_path / "ours.npy", gradcam.grad_cam(model, x, 2).heatmap[0])
    model.save(tmp_path / "m.npz")
    rc = cli.main(["compare", str(tmp_path / "ours.npy"), str(tmp_path / "photo.png"),
                   "--model", str(tmp_path / "m.npz"), "--target", "2"])
    assert rc == 0, capsys.readouterr().out
