"""The faithfulness metrics against torchcam 0.5.0 and pytorch-grad-cam 1.5.7: same model (the
shapes CNN's torch twin, float64, weights shared), same inputs, same maps, with ``variant``.

Convention differences, each reproduced by the variant and named where it is tested:
- torchcam DeletionInsertionMetric: counts 0, s, 2s, ... then P with s = ceil(P / steps) (so
  fewer than steps + 1 points when P is not a multiple), trapezoid on the actual fractions, a
  zero canvas for insertion too, logits unless ``logits_fn`` (its ``baseline=None``).
- torchcam ClassificationMetric: Average Drop as a fraction with Y + 1e-7 in the denominator,
  logits by default.
- pytorch-grad-cam: DropInConfidence = max(0, Y - O), not divided by Y; IncreaseInConfidence as
  float32 0/1; ROAD MoRF(p) removes the (100 - p) % most relevant (a threshold), the official
  code removes the p % (an exact count); its imputation noise is fresh per call.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the peers need it")

import gradcam  # noqa: E402
from gradcam import metrics  # noqa: E402
from gradcam.peers.torchcam import MapsExtractor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def case():
    """Two scenes, each with its Grad-CAM heatmap and with half of it (a map that loses
    confidence, so Average Drop is not 0): 4 images, float64."""
    import torch_twins as T

    model, twin, x, target, layer = T.case("shapes_cnn")
    maps = gradcam.explain(model, x, list(target), "gradcam", layer=layer).heatmap
    return (model, twin, np.concatenate([x, x]), np.concatenate([target, target]),
            np.concatenate([maps, 0.5 * maps]))


@pytest.fixture(scope="module")
def case32(case):
    """The same in float32 (pytorch-grad-cam's imputation writes float32 into the input)."""
    model, twin, x, target, maps = case
    return (copy.deepcopy(model).astype("float32"), copy.deepcopy(twin).float(),
            x.astype(np.float32), target, maps.astype(np.float32))


# --------------------------------------------------------------------------- torchcam
@pytest.mark.parametrize("steps, softmax", [(20, True), (7, False)])
def test_torchcam_deletion_insertion(case, steps, softmax):
    tm = pytest.importorskip("torchcam.metrics", reason="torchcam not installed")
    model, twin, x, target, maps = case
    x, target, maps = x[:2], target[:2], maps[:2]  # half a map has the same order: skip it
    fn = functools.partial(torch.softmax, dim=-1) if softmax else None
    scores = "softmax" if softmax else "logits"
    d = metrics.deletion(model, x, maps, target, steps, "zeros", scores, variant="torchcam")
    i = metrics.insertion(model, x, maps, target, steps, "zeros", scores, variant="torchcam")
    for n in range(x.shape[0]):  # one image per update: torchcam keeps only sums
        metric = tm.DeletionInsertionMetric(MapsExtractor(twin, maps[n:n + 1]), fn, steps=steps)
        metric.update(torch.from_numpy(x[n:n + 1]), class_idx=int(target[n]))
        s = metric.summary()
        np.testing.assert_allclose(d.auc[n], s["deletion_auc"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(i.auc[n], s["insertion_auc"], rtol=1e-6, atol=1e-7)
    # P = 4096: steps=7 gives torchcam's 8 points 0, 586, ..., 3516, 4096 (not 0, 585, 1170, ...)
    assert d.curve.shape[1] == len(d.counts) == (21 if steps == 20 else 8)
    # negative control: the paper's counts and AUC are a different number here
    paper = metrics.deletion(model, x, maps, target, steps, "zeros", scores)
    assert np.abs(paper.auc - d.auc).max() > 1e-5  # 10x the tolerance above


def test_torchcam_classification_metric(case):
    tm = pytest.importorskip("torchcam.metrics", reason="torchcam not installed")
    model, twin, x, target, maps = case
    drop = metrics.average_drop(model, x, maps, target, variant="torchcam")  # logits
    up = metrics.increase_in_confidence(model, x, maps, target, variant="torchcam")
    for n in range(x.shape[0]):
        metric = tm.ClassificationMetric(MapsExtractor(twin, maps[n:n + 1]))
        metric.update(torch.from_numpy(x[n:n + 1]), class_idx=int(target[n]))
        s = metric.summary()
        np.testing.assert_allclose(drop[n], s["avg_drop"], rtol=1e-6, atol=1e-7)
        assert bool(up[n]) == bool(s["conf_increase"])
    # the same with torchcam's softmax: our scores="softmax" with its fraction
    sm = metrics.average_drop(model, x, maps, target, scores="softmax", variant="torchcam")
    metric = tm.ClassificationMetric(MapsExtractor(twin, maps), functools.partial(torch.softmax,
                                                                                   dim=-1))
    metric.update(torch.from_numpy(x), class_idx=[int(t) for t in target])
    np.testing.assert_allclose(sm.mean(), metric.summary()["avg_drop"], rtol=1e-6)
    # negative control: the paper's percentage is 100x torchcam's fraction (same scores)
    paper = metrics.average_drop(model, x, maps, target, scores="softmax")
    assert drop.max() > 1e-3 and sm.max() > 1e-3  # not the trivial 0 = 0
    assert np.abs(paper.mean() - metric.summary()["avg_drop"]) > 1e-3


# --------------------------------------------------------------------------- pytorch-grad-cam
def pgc_metrics():
    from test_conventions import _import_pytorch_grad_cam

    _import_pytorch_grad_cam()
    pytest.importorskip("scipy.sparse", reason="pytorch-grad-cam's ROAD needs scipy")
    import pytorch_grad_cam.metrics.cam_mult_image as cmi
    import pytorch_grad_cam.metrics.road as road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return cmi, road, ClassifierOutputTarget


def test_pytorch_grad_cam_cam_mult_image(case):
    cmi, _, Target = pgc_metrics()
    model, twin, x, target, maps = case
    args = (torch.from_numpy(x), maps.astype(np.float32), [Target(int(t)) for t in target], twin)
    change = cmi.CamMultImageConfidenceChange()(*args)
    np.testing.assert_allclose(metrics.confidence_change(model, x, maps, target, "logits"), change,
                               rtol=1e-6, atol=1e-5)  # their np.float32 scores
    drop = cmi.DropInConfidence()(*args)
    ours = metrics.average_drop(model, x, maps, target, variant="pytorch-grad-cam")
    np.testing.assert_allclose(ours, drop, rtol=1e-6, atol=1e-5)
    up = cmi.IncreaseInConfidence()(*args)
    pgc_ic = metrics.increase_in_confidence(model, x, maps, target, variant="pytorch-grad-cam")
    np.testing.assert_array_equal(pgc_ic.astype(np.float32), up)
    # negative control: torchcam's division by Y is another number (the same logits)
    assert drop.max() > 1e-3
    assert np.abs(metrics.average_drop(model, x, maps, target, variant="torchcam") - drop).max() \
        > 1e-4


@pytest.mark.parametrize("order, p", [("morf", 80), ("lerf", 20), ("morf", 30)])
def test_pytorch_grad_cam_road_without_noise(case32, order, p):
    _, road, Target = pgc_metrics()
    model, twin, x, target, maps = case32
    cls = road.ROADMostRelevantFirst if order == "morf" else road.ROADLeastRelevantFirst
    metric = cls(percentile=p)
    metric.perturbation.imputer.noise = 0.0  # deterministic: compared with noise = 0 below
    theirs = metric(torch.from_numpy(x), maps.astype(np.float32),
                    [Target(int(t)) for t in target], twin)
    ours = metrics.road(model, x, maps.astype(np.float32), target, percentiles=(p,), order=order,
                        noise=np.zeros_like(x), variant="pytorch-grad-cam")
    np.testing.assert_allclose(ours.change[:, 0], theirs, rtol=1e-5, atol=2e-5)
    if order == "morf":  # their MoRF(p) removes about (100 - p) %, the official one p %
        assert abs(ours.removed_fraction.mean() - (100 - p) / 100) < 0.05
        official = metrics.road(model, x, maps, target, percentiles=(p,), order=order,
                                scores="logits", noise=np.zeros_like(x))
        np.testing.assert_allclose(official.removed_fraction, p / 100, atol=1e-3)
        assert np.abs(official.change[:, 0] - theirs).max() > 5 * 2e-5


def test_pytorch_grad_cam_road_noise_as_given(case32):
    """Their noise is 0.01 * torch.randn_like(values) per image, in the order of the removed
    pixels (pytorch_grad_cam/metrics/road.py:137-138); drawn the same way here and passed as
    ``noise``, it reproduces their number, which shows the noise is added as given."""
    _, road, Target = pgc_metrics()
    model, twin, x, target, maps = case32
    m32 = maps.astype(np.float32)
    removed = metrics.removal_masks(m32, (60,), "morf", variant="pytorch-grad-cam")[:, 0]
    torch.manual_seed(123)
    noise = np.zeros_like(x)
    for n in range(x.shape[0]):
        idx = np.flatnonzero(removed[n].ravel())
        z = 0.01 * torch.randn(x.shape[1], len(idx), dtype=torch.float32).numpy()
        noise[n].reshape(x.shape[1], -1)[:, idx] = z
    torch.manual_seed(123)
    theirs = road.ROADMostRelevantFirst(percentile=60)(
        torch.from_numpy(x), m32, [Target(int(t)) for t in target], twin)
    ours = metrics.road(model, x, m32, target, percentiles=(60,), noise=noise,
                        variant="pytorch-grad-cam")
    np.testing.assert_allclose(ours.change[:, 0], theirs, rtol=1e-5, atol=2e-5)
    quiet = metrics.road(model, x, m32, target, percentiles=(60,), noise=np.zeros_like(x),
                         variant="pytorch-grad-cam")
    assert np.abs(quiet.change[:, 0] - theirs).max() > 1e-4  # the noise mattered


def test_pytorch_grad_cam_imputer_equals_ours(case32):
    _, road, _ = pgc_metrics()
    _, _, x, _, maps = case32
    removed = metrics.removal_masks(maps, (70,), "lerf")[0, 0]
    theirs = road.NoisyLinearImputer(noise=0.0)(torch.from_numpy(x[0]),
                                                torch.from_numpy((~removed).astype(np.float32)))
    ours = metrics.linear_imputation(x[:1], removed[None])[0]
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-6)  # their float32 solve
