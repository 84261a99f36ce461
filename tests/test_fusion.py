"""gradcam.explain_layers (gradcam/fusion.py): one method at several layers, fused.

Expected maps are computed here from each layer's own ``gradcam.explain`` result (coarse maps),
with numpy and ``gradcam.resize`` (tested in tests/test_resize.py), never by gradcam.fusion:

    mean      fused = minmax(1/L sum_l resize(minmax(L_l)))
    layercam  fused = max_l resize(hat M_l) / its max, hat M_l = tanh(2 L_l / max L_l) for every
              layer but the deepest, L_L / max L_L for the deepest
"""

import warnings

import numpy as np
import pytest

import gradcam
from gradcam.fusion import minmax
from minicnn import zoo

TOL = 1e-12


def mm(a):
    """Per-image min-max, written out (a constant map -> 0)."""
    lo = a.min(axis=(1, 2), keepdims=True)
    span = a.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (a - lo) / np.where(span > 0, span, 1), 0.0)


@pytest.fixture(scope="module")
def case():
    model = zoo.shapes_cnn(seed=1).astype("float64")
    x = np.random.default_rng(21).uniform(0, 1, (2, 3, 64, 64))
    return model, x, [0, 3]


def test_minmax_by_hand_and_a_constant_map():
    m = np.array([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out = minmax(m)
    np.testing.assert_array_equal(out, [[[0, 0.25], [0.5, 1]], [[0, 0], [0, 0]]])


def test_one_layer_mean_fusion_is_the_min_max_normalised_heatmap(case):
    model, x, c = case
    r = gradcam.explain_layers(model, x, c, "gradcam", ("relu3",))
    g = gradcam.grad_cam(model, x, c, "relu3")
    np.testing.assert_allclose(r.fused, mm(g.heatmap), rtol=0, atol=TOL)
    np.testing.assert_array_equal(r.results["relu3"].coarse, g.coarse)
    assert r.maps.shape == (1, 2, 64, 64) and r.layers == ("relu3",)
    # the heatmap itself where its minimum is 0 (here: where the ReLU left zeros)
    zero_min = g.heatmap.min(axis=(1, 2)) == 0
    assert zero_min.any()
    np.testing.assert_allclose(r.fused[zero_min], g.heatmap[zero_min], rtol=0, atol=TOL)
    # control: another layer's heatmap is another map
    assert np.abs(r.fused - mm(gradcam.grad_cam(model, x, c, "relu4").heatmap)).max() > 1e-2


def test_two_layer_mean_fusion_by_hand(case):
    model, x, c = case
    r = gradcam.explain_layers(model, x, c, "gradcam++", ("relu1", "relu3"))
    L1 = gradcam.explain(model, x, c, "gradcam++", "relu1").coarse  # 64 x 64: no resize
    L3 = gradcam.explain(model, x, c, "gradcam++", "relu3").coarse  # 16 x 16
    assert L1.shape[1:] == (64, 64) and L3.shape[1:] == (16, 16)
    m1, m3 = mm(L1), gradcam.resize(mm(L3), (64, 64))
    np.testing.assert_allclose(r.maps, np.stack([m1, m3]), rtol=0, atol=TOL)
    np.testing.assert_allclose(r.fused, mm((m1 + m3) / 2), rtol=0, atol=TOL)
    assert np.abs(r.fused - mm(np.maximum(m1, m3))).max() > 1e-2  # control: max, not mean


def test_layercam_fusion_by_hand(case):
    model, x, c = case
    r = gradcam.explain_layers(model, x, c, "layercam", ("relu2", "relu4"), fusion="layercam")
    L2 = gradcam.explain(model, x, c, "layercam", "relu2").coarse
    L4 = gradcam.explain(model, x, c, "layercam", "relu4").coarse
    peak = lambda m: m / m.max(axis=(1, 2), keepdims=True)  # noqa: E731
    shallow = gradcam.resize(np.tanh(2 * peak(L2)), (64, 64))
    deep = gradcam.resize(peak(L4), (64, 64))
    np.testing.assert_allclose(r.maps, np.stack([shallow, deep]), rtol=0, atol=TOL)
    fused = np.maximum(shallow, deep)
    np.testing.assert_allclose(r.fused, fused / fused.max(axis=(1, 2), keepdims=True),
                               rtol=0, atol=TOL)
    # the deepest layer is found in the model's forward order, whatever order the caller gives
    back = gradcam.explain_layers(model, x, c, "layercam", ("relu4", "relu2"), fusion="layercam")
    np.testing.assert_allclose(back.fused, r.fused, rtol=0, atol=TOL)
    # controls: scaling the deepest layer too, or another gamma, gives other maps
    both = np.maximum(shallow, gradcam.resize(np.tanh(2 * peak(L4)), (64, 64)))
    assert np.abs(r.fused - both / both.max(axis=(1, 2), keepdims=True)).max() > 1e-2
    g3 = gradcam.explain_layers(model, x, c, "layercam", ("relu2", "relu4"), fusion="layercam",
                                gamma=3.0)
    assert np.abs(g3.fused - r.fused).max() > 1e-3


def test_mean_fusion_is_pytorch_grad_cams_aggregation(case):
    """Their per-layer scale_cam_image and aggregate_multi_layers on our per-layer coarse maps."""
    from test_conventions import _import_pytorch_grad_cam

    pgc = _import_pytorch_grad_cam()
    from pytorch_grad_cam.base_cam import BaseCAM
    from pytorch_grad_cam.utils.image import scale_cam_image

    model, x, c = case
    r = gradcam.explain_layers(model, x, c, "hirescam", ("relu2", "relu3", "relu4"))
    per_layer = [scale_cam_image(np.maximum(r.results[n].coarse, 0), (64, 64))[:, None]
                 for n in r.layers]
    theirs = BaseCAM.aggregate_multi_layers(None, per_layer)
    assert pgc is not None and theirs.shape == r.fused.shape
    np.testing.assert_allclose(theirs, r.fused, rtol=0, atol=2e-5)  # their float32 and 1e-7


def test_explain_layers_refuses_bad_arguments(case):
    model, x, c = case
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        gradcam.explain_layers(model, x, c, layers=("relu4",), fusion="sum")
    with pytest.raises(ValueError, match="one or more distinct layers"):
        gradcam.explain_layers(model, x, c, layers=())
    with pytest.raises(ValueError, match="one or more distinct layers"):
        gradcam.explain_layers(model, x, c, layers=("relu4", "relu4"))
    with pytest.raises(ValueError, match="'saliency' gives none"):
        gradcam.explain_layers(model, x, c, "saliency", layers=("input",))
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        gradcam.explain_layers(model, x, c, layers=("relu4", "conv9"))
