"""pytorch-grad-cam 1.5.7's ``eigen_smooth`` and ``aug_smooth`` options (``BaseCAM.__call__``,
pytorch_grad_cam/base_cam.py:207-218), run on the float64 torch twins, against this library.

eigen_smooth (base_cam.py:76-91): X = alpha * A (``weights[:, :, None, None] * activations``;
LayerCAM's own ``get_cam_image``, layer_cam.py:28-31, uses ReLU(dA) * A), then
``get_2d_projection(X)`` (utils/svd_on_activations.py:5-21): each image's (u*v, K) matrix
centred per channel (lines 15-16), ``np.linalg.svd(full_matrices=True)`` (line 17), the
projection on VT[0] (line 18), in float32 (line 21), with the sign LAPACK returns: no
correction (the sign-corrected ``get_2d_projection_with_sign_correction``, lines 41-81, serves
only SegEigenCAM, seg_eigen_cam.py:62). Then the usual ReLU and min-max (base_cam.py:171-181).
Reproduced by ``gradcam.peers.pytorch_grad_cam.first_component(alpha * A)`` (the library's own
per-image SVD call) + ``conventions.from_result``; controls: the negated projection (the other
sign an SVD may return) and the uncentred one. This library's ``eigen_smooth=True`` keeps
Eigen-CAM's convention (A not centred, the sign that makes the map's sum positive): a measured
departure, docs/crosscheck.md.

aug_smooth (base_cam.py:183-205): for each of ttach's transforms ``Compose([HorizontalFlip(),
Multiply(factors=[0.9, 1, 1.1])])`` (base_cam.py:40-46; ttach 0.0.3 base.py:95 orders them as
``itertools.product``), the map of the augmented input (ReLU, min-max, cv2 resize, min-max),
un-flipped (transforms.py:20-23; Multiply is image-only, transforms.py:220-237), then the mean
(base_cam.py:204). ``conventions.from_result("pytorch-grad-cam", r)`` of our ``aug_smooth``
result reproduces it from the per-run maps; controls: another factor set, no flips.
"""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; the peer cross-checks need torch (CPU): "
    "pip install torch==2.13.0 (CI installs it, see .ci/run)")

import torch_twins as T
from test_conventions import _import_pytorch_grad_cam

import gradcam
from gradcam import conventions as C
from gradcam import smoothing
from gradcam.family.eigen import principal_projection
from gradcam.peers.pytorch_grad_cam import first_component

PGC = "pytorch-grad-cam"
PEER_ATOL = 2e-6  # final maps in [0, 1]; pytorch-grad-cam's are float32
MISS = 1e-3  # a control misses the library's map by more than this (500x PEER_ATOL)
MODELS = ("shapes_gap", "shapes_cnn")
# method -> (pytorch-grad-cam class, our variant): a channel method, a position method, and a
# channel method through its pytorch-grad-cam variant
METHODS = {"gradcam": ("GradCAM", None), "layercam": ("LayerCAM", None),
           "gradcam++": ("GradCAMPlusPlus", PGC)}


@pytest.fixture(scope="module")
def pgc():
    return _import_pytorch_grad_cam()


def case(name):
    model, twin, x, target, layer = T.case(name)
    return model, twin, x, [int(c) for c in target], layer


def run_pgc(pgc, cls_name, name, **call):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, twin, x, target, layer = case(name)
    with T.single_thread(), getattr(pgc, cls_name)(
            model=twin, target_layers=[twin.get_submodule(layer)]) as cam:
        return cam(input_tensor=torch.tensor(x),
                   targets=[ClassifierOutputTarget(c) for c in target], **call)


def explain(name, method, **options):
    model, _, x, target, layer = case(name)
    return gradcam.explain(model, x, target, method, layer, variant=METHODS[method][1],
                           **options)


def post(r, linear_map):
    """pytorch-grad-cam's post-processing of another raw map for the same result."""
    return C.from_result(PGC, dataclasses.replace(r, linear_map=linear_map))


def worst(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b))))


# --------------------------------------------------------------------------- eigen_smooth
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", list(METHODS))
def test_eigen_smooth_is_the_centred_component_with_lapack_sign(pgc, method, name):
    theirs = run_pgc(pgc, METHODS[method][0], name, eigen_smooth=True)
    assert theirs.max() > 0.5, "an all-zero map would prove nothing"
    r = explain(name, method)
    alpha = r.weights if r.weights.ndim == 4 else r.weights[:, :, None, None]
    X = alpha * r.activations
    P, _ = first_component(X)
    np.testing.assert_allclose(post(r, P), theirs, rtol=0, atol=PEER_ATOL)
    # controls: the other sign of the same component; the component of X not centred
    assert worst(post(r, -P), theirs) > MISS
    uncentred, _, _ = principal_projection(X, centre=False, sign=None)
    assert worst(post(r, uncentred), theirs) > MISS
    # the departure docs/crosscheck.md measures: ours is uncentred, with a positive sum
    ours = explain(name, method, eigen_smooth=True)
    assert worst(C.from_result(PGC, ours), theirs) > MISS


# --------------------------------------------------------------------------- aug_smooth
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_aug_smooth_reproduced(pgc, method, name):
    theirs = run_pgc(pgc, METHODS[method][0], name, aug_smooth=True)
    assert theirs.max() > 0.4, "an all-zero map would prove nothing"
    r = explain(name, method, aug_smooth=True)
    np.testing.assert_allclose(C.from_result(PGC, r), theirs, rtol=0, atol=PEER_ATOL)
    # control: pytorch-grad-cam's map without the augmentations
    assert worst(C.from_result(PGC, explain(name, method)), theirs) > MISS


@pytest.mark.parametrize("flips, factors", [((False, True), (0.8, 1.0, 1.2)),
                                            ((False, False), (0.9, 1.0, 1.1))])
def test_aug_smooth_controls(pgc, monkeypatch, flips, factors):
    """The same assertion fails for another factor set and for six runs without a flip."""
    theirs = run_pgc(pgc, "GradCAM", "shapes_cnn", aug_smooth=True)
    monkeypatch.setattr(smoothing, "AUG_FLIPS", flips)
    monkeypatch.setattr(smoothing, "AUG_FACTORS", factors)
    r = explain("shapes_cnn", "gradcam", aug_smooth=True)
    assert r.details["aug_factors"].tolist() == list(factors) * 2
    assert worst(C.from_result(PGC, r), theirs) > MISS


def test_aug_smooth_heatmap_departure(pgc):
    """Our heatmap divides each run by its maximum and normalises the mean; the library
    min-max normalises each run and not the mean: the sizes docs/crosscheck.md quotes."""
    theirs = run_pgc(pgc, "GradCAM", "shapes_cnn", aug_smooth=True)
    r = explain("shapes_cnn", "gradcam", aug_smooth=True)
    assert r.details["aug_coarse"].min(axis=(-2, -1)).max() > 0.1  # a run positive everywhere
    assert worst(r.heatmap, theirs / theirs.max(axis=(1, 2), keepdims=True)) > 0.1


def measure(pgc):
    """(option, method, model, max |repro - theirs|, max |ours - theirs|) for docs/crosscheck.md:
    the reproduction's error and our default option's departure (eigen_smooth: both through
    pytorch-grad-cam's post-processing; aug_smooth: our heatmap against theirs over its max)."""
    rows = []
    for name in MODELS:
        for method, (cls_name, _) in METHODS.items():
            theirs = run_pgc(pgc, cls_name, name, eigen_smooth=True)
            r = explain(name, method)
            alpha = r.weights if r.weights.ndim == 4 else r.weights[:, :, None, None]
            repro = post(r, first_component(alpha * r.activations)[0])
            ours = C.from_result(PGC, explain(name, method, eigen_smooth=True))
            rows.append(("eigen_smooth", method, name, worst(repro, theirs), worst(ours, theirs)))
            theirs = run_pgc(pgc, cls_name, name, aug_smooth=True)
            r = explain(name, method, aug_smooth=True)
            peak = theirs.max(axis=(1, 2), keepdims=True)
            rows.append(("aug_smooth", method, name, worst(C.from_result(PGC, r), theirs),
                         worst(r.heatmap, theirs / peak)))
    return rows


def correlations():
    """(method, model, theirs, ours): per image, the Pearson correlation of the library's and
    our eigen_smooth linear maps with the plain linear map (is the component inverted?)."""
    def corr(a, b):
        a, b = (m.reshape(len(m), -1) - m.reshape(len(m), -1).mean(1, keepdims=True)
                for m in (a, b))
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))

    rows = []
    for name in MODELS:
        for method in METHODS:
            r = explain(name, method)
            alpha = r.weights if r.weights.ndim == 4 else r.weights[:, :, None, None]
            theirs = first_component(alpha * r.activations)[0]
            ours = explain(name, method, eigen_smooth=True).linear_map
            rows.append((method, name, corr(theirs, r.linear_map), corr(ours, r.linear_map)))
    return rows


if __name__ == "__main__":
    for row in measure(_import_pytorch_grad_cam()):
        print("%-12s %-9s %-10s  reproduced %.1e   ours departs %.2e" % row)
    for method, name, theirs, ours in correlations():
        print(f"eigen_smooth {method:9s} {name:10s}  corr with the plain map: theirs "
              f"{np.round(theirs, 2)}, ours {np.round(ours, 2)}")
