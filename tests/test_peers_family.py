"""pytorch-grad-cam 1.5.7 and torchcam 0.5.0, run on torch twins of the zoo models with the same
weights, reproduced by ``gradcam.explain(..., variant=peer)`` + ``conventions.from_result(peer)``.

Two levels, for every method the libraries have (one layer, float64 twins):

- the raw map (or weights), the library's own formula function fed the twin's A and dA (torch
  autograd), against our variant's, in float64 (RAW_RTOL);
- the library's final output, end to end, against ours at float32 round-off (PEER_ATOL;
  pytorch-grad-cam rounds its maps to float32).

Where docs/crosscheck.md claims a departure from the paper, the paper's formula
(``variant=None``) misses the library by more than the tolerance: the negative control that
shows the variant is needed and that each comparison can fail. Noise is drawn the way torchcam
draws it (torch's global generator, seeded here) and passed to ours as ``noise``.
"""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; the peer cross-checks need torch (CPU): "
    "pip install torch==2.13.0 (CI installs it, see .ci/run)")

import torch_twins as T
from test_conventions import _import_pytorch_grad_cam

import gradcam
from gradcam import conventions as C
from gradcam.peers import PEER_CLASSES
from gradcam.registry import methods, variants

PGC, TC = "pytorch-grad-cam", "torchcam"
PEER_ATOL = 2e-6  # final maps in [0, 1]; pytorch-grad-cam's are float32
RAW_RTOL = 1e-10  # the same formula on the same float64 A and dA
CONTROL = 10 * RAW_RTOL  # a paper's raw map or weights miss the peer's by more than this
MODELS = ("shapes_gap", "shapes_cnn")


def need(method):
    assert method in methods(), f"method {method!r} is not registered"


def case(name):
    model, twin, x, target, layer = T.case(name)
    return model, twin, x, [int(c) for c in target], layer


def explain(name, method, variant, layer=None, **options):
    """``gradcam.explain`` on the case (at its layer by default; FullGrad takes none)."""
    model, _, x, target, default = case(name)
    if methods()[method].layer_rule == "network":
        default = None
    return gradcam.explain(model, x, target, method, default if layer is None else layer,
                           variant=variant, **options)


def rel(a, b):
    return T.rel_error(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def direction(w):
    """Each image's weights over their largest magnitude: a positive factor per image changes
    no map (the paper's Grad-CAM++ w carries exp(y^c)), so a control must not count one."""
    w = np.asarray(w, dtype=np.float64)
    return w / np.abs(w).max(axis=tuple(range(1, w.ndim)), keepdims=True)


def worst(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b))))


@pytest.fixture(scope="module")
def twin_grads():
    """name -> (A, dA) at the case's layer from torch autograd on the twin (float64)."""
    out = {}
    for name in MODELS:
        _, twin, x, target, layer = case(name)
        with T.single_thread():
            q = T.torch_quantities(twin, x, target, layer)
        out[name] = q["activations"], q["gradients"]
    return out


# --------------------------------------------------------------------------- pytorch-grad-cam
# method -> (class, our variant name or None where it follows the paper, departs on MODELS)
PGC_METHODS = {
    "gradcam": ("GradCAM", None, False),
    "hirescam": ("HiResCAM", None, False),
    "gradcam-elementwise": ("GradCAMElementWise", None, False),
    "layercam": ("LayerCAM", None, False),
    "gradcam++": ("GradCAMPlusPlus", PGC, True),
    "xgradcam": ("XGradCAM", PGC, False),  # 1e-7: visible in the raw weights only
    "scorecam": ("ScoreCAM", PGC, True),
    "ablationcam": ("AblationCAM", PGC, False),  # min(A) = 0 here: see the EfficientNet test
    "eigencam": ("EigenCAM", PGC, True),
    "eigengradcam": ("EigenGradCAM", PGC, True),
}


@pytest.fixture(scope="module")
def pgc():
    return _import_pytorch_grad_cam()


def run_pgc(pgc, cls_name, name, layer=None):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, twin, x, target, default = case(name)
    layer = default if layer is None else layer
    with T.single_thread(), getattr(pgc, cls_name)(
            model=twin, target_layers=[twin.get_submodule(layer)]) as cam:
        return cam(input_tensor=torch.tensor(x),
                   targets=[ClassifierOutputTarget(c) for c in target])


ABLATION_BELOW_ZERO = "_blocks.2"  # a residual block's output, min(A) < 0, 24 channels
# NOTE: Ablation-CAM's map on shapes_gap is empty (its linear map is negative everywhere)
PGC_CASES = [(m, n) for m in PGC_METHODS for n in MODELS
             if (m, n) != ("ablationcam", "shapes_gap")]


@pytest.mark.parametrize("method, name", PGC_CASES)
def test_pytorch_grad_cam_output_reproduced(pgc, method, name):
    need(method)
    cls_name, variant, departs = PGC_METHODS[method]
    assert (PGC in variants(method)) == (variant is not None), variants(method)
    theirs = run_pgc(pgc, cls_name, name)
    assert theirs.max() > 0.5, "an all-zero map would prove nothing"
    got = C.from_result(PGC, explain(name, method, variant))
    np.testing.assert_allclose(got, theirs, rtol=0, atol=PEER_ATOL)
    if departs:
        assert worst(C.from_result(PGC, explain(name, method, None)), theirs) > 1e-3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method, cls_name", [("gradcam", "GradCAM"),
                                              ("gradcam++", "GradCAMPlusPlus"),
                                              ("xgradcam", "XGradCAM")])
def test_pytorch_grad_cam_weights_exact(pgc, twin_grads, method, cls_name, name):
    """The library's ``get_cam_weights`` on the twin's float64 A and dA equals our weights to
    round-off; the paper's weights (for Grad-CAM++ and XGrad-CAM) do not."""
    need(method)
    A, dA = twin_grads[name]
    theirs = getattr(pgc, cls_name).get_cam_weights(None, None, None, None, A, dA)
    variant = PGC if PGC in variants(method) else None
    assert rel(explain(name, method, variant).weights, theirs) < RAW_RTOL
    if variant is not None:
        assert rel(direction(explain(name, method, None).weights), direction(theirs)) > CONTROL


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method, cls_name", [("hirescam", "HiResCAM"),
                                              ("gradcam-elementwise", "GradCAMElementWise"),
                                              ("layercam", "LayerCAM")])
def test_pytorch_grad_cam_position_maps_exact(pgc, twin_grads, method, cls_name, name):
    """``get_cam_image`` (the raw map before the ReLU) equals our linear map."""
    need(method)
    A, dA = twin_grads[name]
    theirs = getattr(pgc, cls_name).get_cam_image(None, None, None, None, A, dA, False)
    assert rel(explain(name, method, None).linear_map, theirs) < RAW_RTOL


@pytest.mark.parametrize("shift", [0.0, -2.0])
def test_pytorch_grad_cam_ablation_values(pgc, shift):
    """``AblationLayer`` itself: 0 when min(A) == 0 (after a ReLU); otherwise min(A) - 1e7 for
    the first row and 1e7 less for each next row of the batch (its min includes the rows
    already ablated), as ``ablation_values`` says."""
    from pytorch_grad_cam.ablation_layer import AblationLayer

    from gradcam.peers.pytorch_grad_cam import ablation_values

    A = np.maximum(np.random.default_rng(0).standard_normal((1, 5, 3, 3)), 0) + shift
    layer = AblationLayer()
    layer.indices = np.arange(5)
    layer.set_next_batch(0, torch.tensor(A), 5)
    out = layer(None).numpy()
    theirs = [float(out[i, i, 0, 0]) for i in range(5)]
    assert (out[np.arange(5), np.arange(5)] == np.array(theirs)[:, None, None]).all()
    assert theirs == ablation_values(float(A.min()), 5, A.dtype)
    assert len(set(theirs)) == (1 if shift == 0 else 5)  # one value per row below zero


def test_pytorch_grad_cam_ablation_below_zero(pgc):
    """On a layer with negative values (EfficientNet-Lite0's residual block _blocks.2, 24
    channels) the library ablates to min(A) - 1e7 (and more per batch row): our variant
    follows; the paper's zero ablation gives another map."""
    need("ablationcam")
    model, _, x, target, _ = case("efficientnet_lite0")
    layer = ABLATION_BELOW_ZERO
    model.forward(x, keep=[layer])
    assert model.activations[layer].min() < 0
    theirs = run_pgc(pgc, "AblationCAM", "efficientnet_lite0", layer)
    got = C.from_result(PGC, explain("efficientnet_lite0", "ablationcam", PGC, layer=layer))
    np.testing.assert_allclose(got, theirs, rtol=0, atol=PEER_ATOL)
    paper = explain("efficientnet_lite0", "ablationcam", None, layer=layer)
    assert worst(C.from_result(PGC, paper), theirs) > 0.05


@pytest.mark.parametrize("name", MODELS)
def test_pytorch_grad_cam_fullgrad(pgc, name):
    """FullGrad (no layer): every BatchNorm2d's shift and the input gradient, each channel
    min-max normalised on its own; the paper's psi normalises each layer's block at once."""
    need("fullgrad")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, twin, x, target, _ = case(name)
    with T.single_thread(), pgc.FullGrad(model=twin, target_layers=[]) as cam:
        theirs = cam(input_tensor=torch.tensor(x),
                     targets=[ClassifierOutputTarget(c) for c in target])
    got = C.from_result(PGC, gradcam.explain(model, x, target, "fullgrad", variant=PGC))
    np.testing.assert_allclose(got, theirs, rtol=0, atol=PEER_ATOL)
    paper = C.from_result(PGC, gradcam.explain(model, x, target, "fullgrad"))
    assert worst(paper, theirs) > 1e-2


# --------------------------------------------------------------------------- torchcam
# method -> (class, our variant or None, departs on MODELS, constructor options)
TC_METHODS = {
    "gradcam": ("GradCAM", None, False),
    "layercam": ("LayerCAM", None, False),
    "gradcam++": ("GradCAMpp", TC, True),
    "xgradcam": ("XGradCAM", TC, False),  # 1e-8: visible in the raw map only
    "scorecam": ("ScoreCAM", TC, True),
}


def run_torchcam(cls_name, name, normalized=True, **kw):
    from torchcam import methods as tcm

    _, twin, x, target, layer = case(name)
    with T.single_thread(), getattr(tcm, cls_name)(twin, layer, input_shape=x.shape[1:],
                                                   **kw) as extractor:
        scores = twin(torch.tensor(x))
        return extractor(target, scores, normalized=normalized)[0].detach().numpy()


@pytest.fixture(scope="module")
def torchcam():
    return pytest.importorskip("torchcam", reason="torchcam not installed: pip install "
                               "torchcam==0.5.0 (CI installs it, see .ci/run)")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", list(TC_METHODS))
def test_torchcam_reproduced(torchcam, method, name):
    """Raw (normalized=False: ReLU only) and final maps; torchcam stays in float64."""
    need(method)
    cls_name, variant, departs = TC_METHODS[method]
    assert (TC in variants(method)) == (variant is not None), variants(method)
    raw, final = run_torchcam(cls_name, name, False), run_torchcam(cls_name, name)
    assert final.max() > 0.5, "an all-zero map would prove nothing"
    r = explain(name, method, variant)
    assert rel(r.coarse, raw) < RAW_RTOL
    np.testing.assert_allclose(C.from_result(TC, r, None), final, rtol=0, atol=1e-10)
    if variant is not None:
        paper = explain(name, method, None)
        assert rel(direction(paper.coarse), direction(raw)) > CONTROL
        if departs:
            assert worst(C.from_result(TC, paper, None), final) > 1e-3


def test_torchcam_cam(torchcam):
    """CAM: the paper's formula; torchcam applies no ReLU before its min-max (core.py:298)."""
    need("cam")
    from torchcam import methods as tcm

    _, twin, x, target, layer = case("shapes_gap")
    with tcm.CAM(twin, layer, "fc", input_shape=x.shape[1:]) as extractor:
        twin(torch.tensor(x))
        theirs = extractor(target)[0].numpy()
    r = explain("shapes_gap", "cam", None)
    assert r.linear_map.min() < 0  # so the missing ReLU shows
    np.testing.assert_allclose(C.from_result(TC, r, None), theirs, rtol=0, atol=1e-10)
    assert worst(C.minmax(r.coarse, 1e-8), theirs) > 1e-3


def torch_noise(num_samples, shape, std):
    """The noise torchcam draws after ``torch.manual_seed(0)``: Normal(0, std).sample(shape),
    num_samples times (gradient.py:325, activation.py:368)."""
    torch.manual_seed(0)
    d = torch.distributions.normal.Normal(0, std)
    return np.stack([d.sample(shape).numpy() for _ in range(num_samples)]).astype(np.float64)


def test_torchcam_smooth_gradcam_pp(torchcam):
    need("smooth-gradcam++")
    _, _, x, _, _ = case("shapes_cnn")
    torch.manual_seed(0)
    theirs = run_torchcam("SmoothGradCAMpp", "shapes_cnn", num_samples=3, std=0.3)
    noise = torch_noise(3, x.shape, 0.3)
    r = explain("shapes_cnn", "smooth-gradcam++", TC, num_samples=3, noise=noise)
    np.testing.assert_allclose(C.from_result(TC, r, None), theirs, rtol=0, atol=1e-10)
    paper = explain("shapes_cnn", "smooth-gradcam++", None, num_samples=3, noise=noise)
    assert worst(C.from_result(TC, paper, None), theirs) > 1e-3


@pytest.mark.parametrize("method, cls_name", [("sscam", "SSCAM"), ("iscam", "ISCAM")])
def test_torchcam_smoothed_score_cams(torchcam, method, cls_name):
    need(method)
    model, _, x, _, layer = case("shapes_gap")
    model.forward(x, keep=[layer])
    K = model.activations[layer].shape[1]
    options = {"num_samples": 2}
    if method == "sscam":
        torch.manual_seed(0)
        options["noise"] = torch_noise(2, (len(x), K) + x.shape[2:], 2.0)
    torch.manual_seed(0)
    theirs = run_torchcam(cls_name, "shapes_gap", num_samples=2)
    r = explain("shapes_gap", method, TC, **options)
    np.testing.assert_allclose(C.from_result(TC, r, None), theirs, rtol=0, atol=1e-10)
    assert worst(C.from_result(TC, explain("shapes_gap", method, None, **options), None),
                 theirs) > 1e-3


# --------------------------------------------------------------------------- post-processing
def test_torchcam_resize_is_pillow_bicubic():
    """``from_result("torchcam", r, size)`` resizes as ``overlay_mask`` does (Pillow bicubic on
    the float map); torch's bicubic (index clamping at the border) is not it."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
    r = explain("shapes_gap", "gradcam", None)
    coarse = C.from_result(TC, r, None)
    got = C.from_result(TC, r, (40, 52))
    for n in range(len(coarse)):
        pil = Image.fromarray(coarse[n].astype(np.float32), mode="F")
        ref = np.asarray(pil.resize((52, 40), Image.Resampling.BICUBIC))
        np.testing.assert_allclose(got[n], ref, rtol=0, atol=1e-6)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse)[:, None], size=(40, 52),
                                        mode="bicubic", align_corners=False)[:, 0].numpy()
    assert worst(t, got) > 1e-3


def test_peer_post_refuses_pixel_maps():
    r = explain("shapes_gap", "saliency", None, layer="input")
    for peer in (PGC, TC):
        with pytest.raises(ValueError, match="pixel-space"):
            C.from_result(peer, r)


# --------------------------------------------------------------------------- several layers
FUSE_LAYERS = ("relu2", "relu4")  # 32x32 and 16x16 on shapes_cnn


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_peer_fusion_of_layers(pgc, torchcam, method):
    """``conventions.fuse``: pytorch-grad-cam's mean over ``target_layers`` and torchcam's
    ``fuse_cams`` (LayerCAM: tanh(2 m) per layer, then the maximum). The two libraries'
    LayerCAM fusions differ from each other (the negative control)."""
    need(method)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam import methods as tcm

    model, twin, x, target, _ = case("shapes_cnn")
    results = [explain("shapes_cnn", method, None, layer=l) for l in FUSE_LAYERS]
    cls = {"gradcam": ("GradCAM", "GradCAM"), "layercam": ("LayerCAM", "LayerCAM")}[method]
    with T.single_thread(), getattr(pgc, cls[0])(
            model=twin, target_layers=[twin.get_submodule(l) for l in FUSE_LAYERS]) as cam:
        theirs_pgc = cam(input_tensor=torch.tensor(x),
                         targets=[ClassifierOutputTarget(c) for c in target])
    with T.single_thread(), getattr(tcm, cls[1])(twin, list(FUSE_LAYERS),
                                                 input_shape=x.shape[1:]) as extractor:
        theirs_tc = extractor.fuse_cams(extractor(target, twin(torch.tensor(x)))).numpy()
    ours_pgc, ours_tc = C.fuse(PGC, results), C.fuse(TC, results)
    np.testing.assert_allclose(ours_pgc, theirs_pgc, rtol=0, atol=PEER_ATOL)
    np.testing.assert_allclose(ours_tc, theirs_tc, rtol=0, atol=1e-10)
    assert worst(C.upsample(ours_tc, x.shape[2:], "bilinear"), theirs_pgc) > 1e-2


# --------------------------------------------------------------------------- the table
def departures(name="shapes_cnn"):
    """(method, peer, max |paper - variant| of the final maps, relative error of the weights
    scaled to max 1 per image) for every registered variant; docs/crosscheck.md quotes it."""
    rows = []
    for peer in (PGC, TC):
        for method in methods():
            if peer not in variants(method):
                continue
            options = {"num_samples": 2} if method in ("sscam", "iscam", "smooth-gradcam++") \
                else {}
            v, p = explain(name, method, peer, **options), explain(name, method, None, **options)
            size = None if peer == TC else v.heatmap.shape[-2:]
            maps = worst(C.from_result(peer, v, size), C.from_result(peer, p, size))
            w = rel(direction(v.weights), direction(p.weights)) if v.weights is not None \
                else float("nan")
            rows.append((method, peer, maps, w))
    return rows


if __name__ == "__main__":
    import sys

    for model_name in sys.argv[1:] or ["shapes_cnn"]:
        print(f"{model_name}: the paper's formula against each peer's (final maps in [0, 1])")
        for method, peer, maps, w in departures(model_name):
            print(f"  {method:18s} {peer:17s} max |map diff| {maps:.2e}   weights rel {w:.2e}")


def test_the_peer_classes_the_readme_names_exist_and_are_checked_here(pgc, torchcam):
    """``gradcam.peers.PEER_CLASSES`` (the README's peers column) names classes the installed
    libraries have, and only methods this file reproduces; its variants are the registry's."""
    import torchcam.methods as tc

    covered = {"pytorch-grad-cam": set(PGC_METHODS) | {"hirescam", "gradcam-elementwise",
                                                        "layercam", "fullgrad"},
               "torchcam": set(TC_METHODS) | {"cam", "smooth-gradcam++", "sscam", "iscam"}}
    modules = {"pytorch-grad-cam": pgc, "torchcam": tc}
    for peer, classes in PEER_CLASSES.items():
        for method, cls_name in classes.items():
            assert method in methods() and method in covered[peer], (peer, method)
            assert isinstance(getattr(modules[peer], cls_name), type), (peer, cls_name)
    assert PEER_CLASSES["torchcam"]["scorecam"] == "ScoreCAM"
    # control: the existence check can fail (torchcam has no HiResCAM, and lists none)
    assert getattr(tc, "HiResCAM", None) is None and "hirescam" not in PEER_CLASSES["torchcam"]
