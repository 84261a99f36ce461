"""gradcam.conventions: each preset reproduces its anchor's pipeline.

Without extra packages: ``minicnn`` and ``minicnn-coarse`` are ``GradCAMResult.heatmap`` and
``.coarse``; the Lua preset is Z times Eq. (1)'s map resized with a transcription of Torch7's
``image.scale`` loop; the Keras tutorial's ReLU(x)/max(x) is NaN on a zero-max map;
Pillow's bilinear upsampling is half-pixel. Where installed (the developer venv; CI skips
them): PyTorch's F.interpolate for every resize kind, scipy's ``zoom(order=1)`` (tf-keras-vis),
OpenCV's ``cv2.resize`` and the real pytorch-grad-cam library.
"""

import sys
import types

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam import conventions as C
from minicnn import layers as L
from minicnn.model import Sequential

EXACT = 1e-12


@pytest.fixture(scope="module")
def result():
    """A small net whose Grad-CAM map has positive, zero and (before the ReLU) negative cells."""
    rng = np.random.default_rng(3)
    model = Sequential([
        ("conv1", L.Conv2d(3, 8, 3, padding=1, rng=rng, dtype="float64")), ("relu1", L.ReLU()),
        ("pool1", L.MaxPool2d(2)),
        ("conv2", L.Conv2d(8, 8, 3, padding=1, rng=rng, dtype="float64")), ("relu2", L.ReLU()),
        ("flatten", L.Flatten()), ("fc", L.Linear(8 * 5 * 7, 4, rng=rng, dtype="float64"))]).eval()
    x = rng.standard_normal((2, 3, 10, 14))
    for c in range(4):
        r = gradcam.grad_cam(model, x, [c, c], "relu2")
        if (r.linear_map < 0).any() and (r.linear_map > 0).all(axis=(1, 2)).sum() == 0 \
                and (r.coarse.max(axis=(1, 2)) > 0).all():
            return r
    raise AssertionError("no target with a mixed-sign map")  # pragma: no cover


def test_presets_cite_formula_and_source():
    for name, fn in C.PRESETS.items():
        assert fn.__doc__ and "=" in fn.__doc__, name
        assert fn.spec.source, name
        assert C.describe(fn.spec)


def test_minicnn_preset_is_the_heatmap_and_coarse(result):
    np.testing.assert_allclose(C.from_result("minicnn", result), result.heatmap, rtol=0, atol=EXACT)
    np.testing.assert_array_equal(C.apply("minicnn-coarse", result.activations, result.gradients),
                                  result.coarse)


def test_resize_to_the_coarse_size_is_the_identity(result):
    m = result.linear_map
    for kind in C.RESIZE_MODES:
        np.testing.assert_array_equal(C.upsample(m, m.shape[-2:], kind), m)


def test_lua_preset_is_z_times_eq1(result):
    A, dA = result.activations, result.gradients
    Z = A.shape[2] * A.shape[3]
    lua = C.apply("grad-cam-lua", A, dA, (10, 14))
    ours = C.upsample(result.coarse, (10, 14), "bilinear-corners")
    np.testing.assert_allclose(lua, Z * ours, rtol=1e-12, atol=1e-15)


def _torch7_scale_linear(src, n_out):
    """Torch7 image.scale's bilinear rows (THIMG Main_scaleLinear_rowcol, upsampling branch)."""
    n_in = len(src)
    out = np.empty(n_out)
    scale = (n_in - 1) / (n_out - 1)
    for di in range(n_out - 1):
        s = di * scale
        i = int(s)
        f = s - i
        out[di] = (1 - f) * src[i] + f * src[min(i + 1, n_in - 1)]
    out[-1] = src[-1]
    return out


def test_corner_aligned_bilinear_is_torch7_image_scale(result):
    m = result.coarse[0]
    rows = np.stack([_torch7_scale_linear(r, 14) for r in m])
    both = np.stack([_torch7_scale_linear(c, 10) for c in rows.T]).T
    np.testing.assert_allclose(C.upsample(m[None], (10, 14), "bilinear-corners")[0], both,
                               rtol=0, atol=1e-12)


def test_keras_tutorial_nan_on_zero_max_and_minus_zero_on_negative():
    A = np.zeros((1, 2, 3, 3))
    dA = np.ones_like(A)
    out = C.apply("keras-tutorial", A, dA)
    assert np.isnan(out).all()
    out = C.apply("keras-tutorial", np.ones((1, 2, 3, 3)), -np.ones((1, 2, 3, 3)))
    assert (out == 0).all() and np.signbit(out).all()
    assert not np.isnan(C.apply("minicnn", A, dA, (6, 6))).any()  # ours: zeros stay zeros


def test_keras_tutorial_is_ours_at_coarse_size_when_max_positive(result):
    keras = C.from_result("keras-tutorial", result)
    np.testing.assert_allclose(keras, C.apply("minicnn", result.activations, result.gradients),
                               rtol=0, atol=EXACT)


def test_pytorch_grad_cam_and_tf_keras_vis_are_min_max(result):
    """Both are min-max of the upsampled ReLU map, up to their eps = 1e-7 (absolute, so its
    relative effect is 1e-7 / the map's range: ~1e-5 on these small maps)."""
    tfkv = C.from_result("tf-keras-vis", result, (10, 14))
    up = C.upsample(result.coarse, (10, 14), "bilinear-corners")
    span = up.max(axis=(1, 2), keepdims=True) - up.min(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(tfkv, (up - up.min(axis=(1, 2), keepdims=True)) / (span + 1e-7),
                               rtol=1e-14, atol=0)
    pgc = C.from_result("pytorch-grad-cam", result, (10, 14))
    np.testing.assert_allclose(pgc, C.minmax(C.upsample(result.coarse, (10, 14), "bilinear")),
                               rtol=0, atol=1e-4)
    for m in (tfkv, pgc):
        assert m.min() == 0 and 1 - 1e-4 < m.max() < 1


def test_captum_preset_is_signed_and_nearest(result):
    m = C.from_result("captum", result, (10, 14))
    assert (m < 0).any()
    np.testing.assert_array_equal(m, C.upsample(result.linear_map, (10, 14), "nearest"))


def test_pillow_bilinear_upsampling_is_half_pixel(result):
    m = result.coarse[0].astype(np.float32)
    pil = np.asarray(Image.fromarray(m, mode="F").resize((14, 10), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(pil, C.upsample(m[None], (10, 14), "bilinear")[0], atol=1e-6)


def test_resize_kinds_match_torch_interpolate(result):
    torch = pytest.importorskip("torch", reason="torch not installed")
    F = torch.nn.functional
    t = torch.from_numpy(result.linear_map)[:, None]
    for kind, kw in (("bilinear", {"mode": "bilinear", "align_corners": False}),
                     ("bilinear-corners", {"mode": "bilinear", "align_corners": True}),
                     ("nearest", {"mode": "nearest"})):
        ref = F.interpolate(t, size=(10, 14), **kw)[:, 0].numpy()
        np.testing.assert_allclose(C.upsample(result.linear_map, (10, 14), kind), ref,
                                   rtol=0, atol=1e-12)


def test_tf_keras_vis_zoom_order1_is_corner_aligned(result):
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy not installed")
    m = result.coarse
    z = ndimage.zoom(m, (1, 10 / m.shape[1], 14 / m.shape[2]), order=1)
    np.testing.assert_allclose(z, C.upsample(m, (10, 14), "bilinear-corners"), atol=1e-12)


def test_opencv_inter_linear_is_half_pixel(result):
    cv2 = pytest.importorskip("cv2", reason="OpenCV not installed")
    m = result.coarse[0].astype(np.float32)
    ours = C.upsample(m[None], (10, 14), "bilinear")[0]
    np.testing.assert_allclose(cv2.resize(m, (14, 10)), ours, atol=1e-5)


def _import_pytorch_grad_cam():
    """pytorch-grad-cam imports torchvision (for image helpers GradCAM does not use); where only
    a CPU torch without torchvision is installed, stand-ins let the import through."""
    pytest.importorskip("torch", reason="torch not installed")
    pytest.importorskip("cv2", reason="OpenCV not installed")
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 (a CUDA torchvision on CPU torch raises RuntimeError)
        names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
        tv, tr, fn = (types.ModuleType(n) for n in names)
        tr.Compose = tr.Normalize = tr.ToTensor = fn.resize = None
        tv.transforms, tr.functional = tr, fn
        for mod in (tv, tr, fn):
            sys.modules.setdefault(mod.__name__, mod)
    return pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam not installed")


def test_pytorch_grad_cam_library_matches_preset():
    pgc = _import_pytorch_grad_cam()
    import torch_twins as T
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, twin, x, target, layer = T.case("vgg16")
    with pgc.GradCAM(model=twin, target_layers=[twin.get_submodule(layer)]) as cam:
        theirs = cam(input_tensor=T.torch.tensor(x),
                     targets=[ClassifierOutputTarget(int(c)) for c in target])
    r = gradcam.grad_cam(model, x, list(target), layer)
    ours = C.from_result("pytorch-grad-cam", r)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=2e-6)  # their float32
    from gradcam.compare import compare

    c = compare(theirs[0], model, x[:1], int(target[0]), layer)
    assert c.status in (0, 1) and "pytorch-grad-cam" in c.closest, c.format()


# --------------------------------------------------------------------------- the shipped fixture
def test_reference_fixture_is_reproducible_and_json_equals_npz():
    """The shipped values are exactly what the generator gives today, and the JSON carries the
    same numbers (so users without NumPy read identical values)."""
    import json

    from gradcam import fixtures

    ref = fixtures.load_reference()
    fresh = fixtures.make_reference()
    assert set(fresh) == set(ref) - {"layer"}
    for k, v in fresh.items():
        if v.dtype.kind in "fc":
            np.testing.assert_allclose(ref[k], v, rtol=0, atol=1e-13, err_msg=k)
        else:  # a method's non-numeric detail (e.g. FullGrad's layer names)
            np.testing.assert_array_equal(ref[k], v, err_msg=k)
    doc = json.loads(fixtures.JSON.read_text())
    for k, entry in doc["arrays"].items():
        arr = np.array(entry["data"], dtype=entry["dtype"]).reshape(entry["shape"])
        np.testing.assert_array_equal(arr, ref[k], err_msg=k)
    kink, tie = fixtures.margins(ref, ref["input"])
    assert kink >= fixtures.MARGIN and tie >= fixtures.MARGIN
