"""The device path of what came after the first device workloads (issue 16, "a third xp
parameter over every workload"): the faithfulness metrics, ROAD, the similarity measures, the
occlusion correlation, the sanity checks, the permuted-label model, the curves figure and
``evaluate --faithfulness``.

Each workload runs on the host (NumPy, the reference) and on ``device_xp`` (the strict fake of
tests/fakecupy.py everywhere, real CuPy where a GPU is present) and must give the same numbers:
the fake computes with NumPy underneath, so float32 results match to round-off (``RTOL`` =
1e-5 relative, the issue's target for real CuPy) and integer results (orders, masks) exactly.

On the fake only (it counts), each workload keeps a stated budget of host syncs and
host-to-device transfers per call, the reason beside each number: a perturbation metric runs
many forwards, and a sync or copy per batch (or per CG step) costs a GPU round trip each.
Every budget has a negative control: it fails once a per-batch (per-step) sync is put back.
"""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from gradcam import metrics, sanity
from gradcam.metrics import perturbation
from minicnn import zoo
from minicnn.backend import to_numpy

from fakecupy import FAKE
from test_device_workloads import RTOL, same

road_module = importlib.import_module("gradcam.metrics.road")  # (metrics.road: the function)
multigrid = importlib.import_module("gradcam.metrics.multigrid")
imputation = importlib.import_module("gradcam.metrics.imputation")

T = np.array([3, 3])  # the classes explained (both images' top-1)


def budget(counts, syncs, transfers, what=""):
    """The call stayed within (syncs, transfers) on the fake; the log names every site."""
    assert counts.syncs <= syncs and counts.transfers <= transfers, (what, counts.log)


def counted(fake, fn, *args, **kwargs):
    """fn's result and what it alone synced and moved (None on real CuPy: nothing counts
    there): the models and inputs moved before are not counted, the checks after are not."""
    if fake is None:
        return fn(*args, **kwargs), None
    fake.reset()
    r = fn(*args, **kwargs)
    return r, SimpleNamespace(syncs=fake.syncs, transfers=fake.transfers, log=list(fake.log))


@pytest.fixture(scope="module")
def host():
    return zoo.shapes_gap(pretrained=True)


@pytest.fixture(scope="module")
def case(host):
    """16 x 16 inputs and maps of 4 levels in 4 x 4 blocks: many pixels tie (the salience
    order's ties, broken in raster order, are part of the test)."""
    rng = np.random.default_rng(20)
    x = rng.uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    maps = np.kron(rng.integers(0, 4, (2, 4, 4)), np.ones((4, 4))).astype(np.float32) / 3
    assert (host(x).argmax(axis=1) == T).all()  # the top-1 classes: scores far from 0
    return x, maps


@pytest.fixture
def dev(device_xp, request):
    """(device module, the counters or None, shapes_gap on the device)."""
    fake = request.getfixturevalue("fake_device") if device_xp is FAKE else None
    return device_xp, fake, zoo.shapes_gap(pretrained=True).to("cupy")


@pytest.fixture
def counting(dev):
    """``dev`` on the fake only: the budgets' negative controls read its counts."""
    if dev[1] is None:
        pytest.skip("the counts are the fake's")
    return dev


# --------------------------------------------------------------------------- deletion, insertion
CURVES = [("deletion", "zeros", None), ("deletion", "blur", "torchcam"),
          ("insertion", "blur", None), ("insertion", "zeros", "torchcam"),
          ("deletion", "mean", None)]


@pytest.mark.parametrize("kind,baseline,variant", CURVES)
def test_deletion_and_insertion_match_the_host_within_budget(dev, host, case, kind, baseline,
                                                             variant):
    """Budget: 2 syncs per call, whatever the steps and batches: the input's finiteness check
    (``as_batch``) and the maps' (``prepare``). Transfers: 3 (targets, job images, job counts:
    once each) + 1 for the blur kernel + 1 for torchcam's trapezoid widths."""
    xp, fake, model = dev
    x, maps = case
    fn = getattr(metrics, kind)
    ref = fn(host, x, maps, T, steps=8, baseline=baseline, variant=variant, batch_size=2)
    xd, md = xp.asarray(x), xp.asarray(maps)
    r, cost = counted(fake, fn, model, xd, md, T, steps=8, baseline=baseline, variant=variant,
                batch_size=2)  # 7 forwards of 2 (deletion: 16 jobs / 2 = 8 batches)
    for f in ("curve", "auc", "score"):
        same(getattr(r, f), getattr(ref, f), what=f)
    np.testing.assert_array_equal(to_numpy(r.order), ref.order)  # ties in raster order
    if cost is not None:
        budget(cost, 2, 3 + (baseline == "blur") + (variant == "torchcam"), kind)


def test_a_sync_per_batch_breaks_the_deletion_budget(counting, case, monkeypatch):
    """Negative control: class scores read back per batch (a float() of each batch's sum)."""
    xp, fake, model = counting
    scores = perturbation.class_scores
    monkeypatch.setattr(perturbation, "class_scores",
                        lambda *a: (lambda s: (float(s.sum()), s)[1])(scores(*a)))
    x, maps = case
    _, cost = counted(fake, metrics.deletion, model, xp.asarray(x), xp.asarray(maps), T, steps=8,
            batch_size=2)
    with pytest.raises(AssertionError):
        budget(cost, 2, 3)


@pytest.mark.parametrize("fn,variant", [("average_drop", None), ("average_drop", "torchcam"),
                                        ("average_drop", "pytorch-grad-cam"),
                                        ("increase_in_confidence", None),
                                        ("confidence_change", None)])
def test_map_as_mask_metrics_match_the_host_within_budget(dev, host, case, fn, variant):
    """Budget: the 2 finiteness syncs and 1 transfer (the targets), one forward per image."""
    xp, fake, model = dev
    x, maps = case
    kw = {} if fn == "confidence_change" else {"variant": variant}
    ref = getattr(metrics, fn)(host, x, maps, T, batch_size=1, **kw)
    r, cost = counted(fake, getattr(metrics, fn), model, xp.asarray(x), xp.asarray(maps), T,
                batch_size=1, **kw)
    if ref.dtype == bool:
        np.testing.assert_array_equal(to_numpy(r), ref)
    else:
        same(r, ref, what=fn)
    if cost is not None:
        budget(cost, 2, 1, fn)


# --------------------------------------------------------------------------- ROAD
def _pcg_counter(monkeypatch):
    """Count the multigrid solves and their top-level V-cycles (one before the first step,
    one per CG step: a solve of k steps makes k + 1 residual checks and k + 1 V-cycles)."""
    seen = {"solves": 0, "vcycles": 0}
    pcg, vcycle = multigrid._pcg, multigrid.vcycle

    def counting_pcg(*a):
        seen["solves"] += 1
        return pcg(*a)

    def counting_vcycle(levels, pinv, r, l=0):
        seen["vcycles"] += l == 0
        return vcycle(levels, pinv, r, l)
    monkeypatch.setattr(multigrid, "_pcg", counting_pcg)
    monkeypatch.setattr(multigrid, "vcycle", counting_vcycle)
    return seen


def _road_budget(fake, seen, variant):
    """Outside the solver: 2 finiteness checks, the official masks' ranking on the host (1),
    the "every pixel removed" flags read once (1). Inside: one residual check per CG step
    (k + 1 per solve, as many as its V-cycles), none per batch."""
    cg = [w for k, _, w in fake.log if k == "sync" and w.startswith("multigrid.py")]
    assert fake.syncs - len(cg) <= 3 + (variant is None), fake.log
    assert len(cg) <= seen["vcycles"], (len(cg), seen)
    # the noise (drawn on the host, as on the host), the targets, the official masks
    assert fake.transfers <= 2 + (variant is None), fake.log


@pytest.mark.filterwarnings("ignore:ROAD. .* remove every pixel")  # the threshold variant's NaN
@pytest.mark.parametrize("order,variant,side", [("morf", None, 16), ("lerf", None, 16),
                                                ("morf", "pytorch-grad-cam", 16),
                                                ("lerf", None, 32)])
def test_road_matches_the_host_within_budget(dev, host, case, monkeypatch, order, variant, side):
    """32 x 32 takes a deeper multigrid hierarchy than 16 x 16."""
    xp, fake, model = dev
    x, maps = case
    if side == 32:
        x, maps = np.tile(x, (1, 1, 2, 2)), np.tile(maps, (1, 2, 2))
    kw = dict(order=order, variant=variant, percentiles=(20, 50, 80), batch_size=3)
    ref = metrics.road(host, x, maps, T, **kw)
    xd, md = xp.asarray(x), xp.asarray(maps)
    seen = _pcg_counter(monkeypatch)
    r, cost = counted(fake, metrics.road, model, xd, md, T, **kw)  # 2 groups of 3 imputed inputs
    for f in ("curve", "score", "removed_fraction", "noise"):
        same(getattr(r, f), getattr(ref, f), what=f)
    if cost is not None:
        _road_budget(cost, seen, variant)


def test_a_check_per_batch_breaks_the_road_budget(counting, case, monkeypatch):
    """Negative control: road calling the public solver, which checks its masks ("every pixel
    removed", a sync) on every batch, as before issue 16's follow-up."""
    xp, fake, model = counting
    seen = _pcg_counter(monkeypatch)
    monkeypatch.setattr(road_module, "impute_multigrid", lambda x, R, noise:
                        multigrid.linear_imputation_multigrid(x, R[:, 0], noise))
    x, maps = case
    _, cost = counted(fake, metrics.road, model, xp.asarray(x), xp.asarray(maps), T, batch_size=3,
                      percentiles=(20, 50, 80))
    with pytest.raises(AssertionError):
        _road_budget(cost, seen, None)


def test_plain_solver_checks_every_cg_check_steps(counting, case, monkeypatch):
    """The plain (reference-tier) solver on the device: the host's values, and one residual
    check per CG_CHECK steps plus the last of each solve (3 neighbour sums to set up, one per
    step); control: CG_CHECK = 1, a check per step, exceeds the same count."""
    xp, fake, _ = counting
    x, maps = np.tile(case[0], (1, 1, 2, 2)), np.tile(case[1], (1, 2, 2))
    removed = maps > np.median(maps)
    ref = metrics.linear_imputation(x, removed)
    checks, stated = [], imputation.CG_CHECK
    for every in (stated, 1):
        monkeypatch.setattr(imputation, "CG_CHECK", every)
        seen = {"calls": 0}
        ns = imputation.neighbour_sum
        monkeypatch.setattr(imputation, "neighbour_sum",
                            lambda v: seen.__setitem__("calls", seen["calls"] + 1) or ns(v))
        r, cost = counted(fake, metrics.linear_imputation, xp.asarray(x), xp.asarray(removed))
        monkeypatch.setattr(imputation, "neighbour_sum", ns)
        same(r, ref, what="plain solver")
        solves = 2  # the 16 x 16 coarse start, then 32 x 32
        steps = seen["calls"] - 3 * solves
        cg = [w for k, _, w in cost.log if k == "sync" and w.startswith("imputation.py")]
        checks.append(len(cg) <= steps / stated + 2 * solves)
    assert checks == [True, False], checks


# --------------------------------------------------------------------------- similarity
SIMILARITY = {"spearman": lambda a, b: metrics.spearman(a, b),
              "spearman_abs": lambda a, b: metrics.spearman(a, b, absolute=True),
              "ssim": lambda a, b: metrics.ssim(a, b),
              "ssim_uniform": lambda a, b: metrics.ssim(a, b, window="uniform"),
              "hog": lambda a, b: metrics.hog_correlation(a, b),
              "ranks": lambda a, b: metrics.ranks(a)}


@pytest.mark.parametrize("name", sorted(SIMILARITY))
def test_similarity_measures_stay_on_the_device(dev, case, name):
    """Budget: 0 syncs, 0 transfers: every measure is array operations where the maps are
    (SSIM's window is made there too; it was one host copy per call)."""
    xp, fake, _ = dev
    _, maps = case
    b = np.roll(maps, 3, axis=2) - 0.5 * maps  # signed, not a rescaling of a
    a_d, b_d = xp.asarray(maps), xp.asarray(b)
    r, cost = counted(fake, SIMILARITY[name], a_d, b_d)
    same(r, SIMILARITY[name](maps, b), rtol=1e-9, what=name)  # float64 throughout
    if cost is not None:
        budget(cost, 0, 0, name)


def test_a_host_made_window_breaks_the_similarity_budget(counting, case, monkeypatch):
    """Negative control: SSIM's window built on the host and copied over (the old _kernel)."""
    xp, fake, _ = counting
    from gradcam.metrics import similarity

    kernel = similarity._kernel
    monkeypatch.setattr(similarity, "_kernel",
                        lambda size, sigma, m: m.asarray(to_numpy(kernel(size, sigma, np))))
    a = xp.asarray(case[1])
    _, cost = counted(fake, metrics.ssim, a, a)
    with pytest.raises(AssertionError):
        budget(cost, 0, 0)


# --------------------------------------------------------------------------- occlusion
def test_occlusion_correlation_matches_the_host_within_budget(dev, host, case):
    """Budget: 1 sync (the input's finiteness check) and 1 transfer (the targets) for 9 window
    positions in 10 batches: no sync per batch or window."""
    xp, fake, model = dev
    x, maps = case
    ref = metrics.occlusion_correlation(host, x, maps, T, window=8, stride=4, batch_size=2)
    r, cost = counted(fake, metrics.occlusion_correlation, model, xp.asarray(x), xp.asarray(maps), T,
                window=8, stride=4, batch_size=2)
    same(r.occlusion, ref.occlusion, what="occlusion")
    same(r.rho, ref.rho, what="rho")
    if cost is not None:
        budget(cost, 1, 1, "occlusion")


# --------------------------------------------------------------------------- sanity checks
METHODS = ("gradcam", "guided-backprop")


@pytest.mark.parametrize("mode", ["cascading", "independent", "data"])
def test_sanity_checks_match_the_host_within_budget(dev, host, case, mode):
    """Budget: the input checked once (1 sync), one sync per explanation (its own input
    check: steps x methods of them) and 2 at the end (the four similarity measures in one
    copy, the maps in another), none per step; transfers: the targets per explanation and
    the re-initialised weights (drawn on the host by NumPy's generator, so both backends
    randomise alike), nothing else."""
    xp, fake, model = dev
    x = xp.asarray(case[0])
    groups = sanity.layer_groups(host)[:2]  # fc, then conv4 + bn4: 3 steps
    if mode == "data":
        other = zoo.shapes_gap(seed=9)
        ref = sanity.data_randomisation(host, other, case[0], T, METHODS)
        other_d = zoo.shapes_gap(seed=9).to("cupy")
        r, cost = counted(fake, sanity.data_randomisation, model, other_d, x, T, METHODS)
    else:
        ref = sanity.randomisation(host, case[0], T, METHODS, mode, groups=groups)
        r, cost = counted(fake, sanity.randomisation, model, x, T, METHODS, mode, groups=groups)
    assert r.steps == ref.steps and r.methods == ref.methods
    for f in ("spearman", "spearman_abs", "ssim", "hog", "maps"):
        got = getattr(r, f)
        assert isinstance(got, np.ndarray)  # SanityResult holds NumPy, as documented
        np.testing.assert_allclose(got, getattr(ref, f), rtol=RTOL, atol=RTOL, err_msg=f)
    if cost is not None:
        calls = len(r.steps) * len(METHODS)
        table = dict(host.named_layers())
        weights = 0 if mode == "data" else sum(len(table[n].params) for _, g in groups for n in g)
        budget(cost, 1 + calls + 2, calls + weights, mode)


def test_a_read_back_per_step_breaks_the_sanity_budget(counting, case, monkeypatch):
    """Negative control: each step's Spearman read back and copied over again (as before:
    five read-backs per step and method)."""
    xp, fake, model = counting
    rho = sanity.spearman
    monkeypatch.setattr(sanity, "spearman", lambda *a, **k: xp.asarray(to_numpy(rho(*a, **k))))
    groups = sanity.layer_groups(model)[:2]
    r, cost = counted(fake, sanity.randomisation, model, xp.asarray(case[0]), T, METHODS,
                      groups=groups)
    calls = len(r.steps) * len(METHODS)
    with pytest.raises(AssertionError):
        budget(cost, 1 + calls + 2, calls + 5)  # fc: 2 weights, conv4 + bn4: 3


# --------------------------------------------------------------------------- permuted labels
def test_a_permuted_label_model_trains_on_the_device_like_on_the_host(dev, tmp_path,
                                                                      monkeypatch):
    """``permuted_label_model(device="cupy")``: the same recipe on the device, one step of
    Adam. NOTE: Adam's first step is lr sign(g) (m / sqrt(v) = g / |g|), so a weight whose
    gradient is round-off on one backend may step +lr there and -lr on the other: weights
    agree to 2 lr, the logits to RTOL. Budget: 4 syncs (the epoch's loss and accuracy; the
    three accuracies recorded) and one per array written to the cache (a file is host bytes):
    ``update_bn`` sums on the device (it read each batch's statistics back, 2 syncs per batch
    and batch norm)."""
    from gradcam.permuted import permuted_label_model

    xp, fake, _ = dev
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path))
    kw = dict(name="shapes_gap", seed=1, n_train=32, epochs=1)
    ref = permuted_label_model(cache=False, **kw)
    r, cost = counted(fake, permuted_label_model, device="cupy", **kw)  # and cached
    timeless = ({k: v for k, v in m.permuted.items() if k != "train_seconds"} for m in (r, ref))
    assert r.device == "cupy" and next(timeless) == next(timeless)
    lr = ref.permuted["lr"]
    for (k, a), (_, b) in zip(ref.state_dict().items(), r.state_dict().items()):
        np.testing.assert_allclose(to_numpy(b), a, rtol=0, atol=2 * lr + 1e-6, err_msg=k)
    x = np.random.default_rng(21).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    # real CuPy: its float32 sums round differently, so more gradients may flip sign
    same(r(xp.asarray(x)), ref(x), rtol=RTOL if fake is not None else 1e-3, what="logits")
    again = permuted_label_model(**kw)  # the device run's file, loaded on the host
    for (k, a), (_, b) in zip(again.state_dict().items(), r.state_dict().items()):
        np.testing.assert_array_equal(a, to_numpy(b), err_msg=k)
    if cost is not None:
        # transfers: the weights; the training batch, its labels, the batch order, update_bn's
        # batch (4); each accuracy's labels and batches (32 train images twice, 500 test images in 2 batches of 256): 7
        arrays = len(ref.state_dict())
        budget(cost, 4 + arrays, arrays + 4 + 7, "permuted")


# --------------------------------------------------------------------------- curves figure
def test_curves_figure_of_a_device_model_draws_the_host_lines(dev, host, tmp_path):
    """``evaluate_family.curves_figure`` (host shapes, a device model: it took the host images
    to a device model's metrics) gives the host's curves; ``plot_curves`` draws the device
    curves as the host's, with 2 syncs per curve (its points and its AUC, read once)."""
    from gradcam.curves import plot_curves
    from gradcam.evaluate_family import curves_figure

    _, fake, model = dev
    kw = dict(n=2, methods=["gradcam"])
    ref = curves_figure(host, tmp_path / "h.png", **kw)["Grad-CAM"]
    got = curves_figure(model, tmp_path / "d.png", **kw)["Grad-CAM"]
    fig, cost = counted(fake, plot_curves, {"a": got})
    lines = [(ln.get_xdata(), ln.get_ydata()) for ln in fig.axes[0].lines]
    ref_lines = [(ln.get_xdata(), ln.get_ydata()) for ln in plot_curves({"a": ref}).axes[0].lines]
    assert len(lines) == len(ref_lines) == 2 * 3  # 2 images + the mean, per curve
    for (xs, ys), (rx, ry) in zip(lines, ref_lines):
        np.testing.assert_array_equal(xs, rx)
        np.testing.assert_allclose(ys, ry, rtol=RTOL, atol=RTOL)
    if cost is not None:
        budget(cost, 4, 0, "plot_curves")


# --------------------------------------------------------------------------- evaluate
def test_faithfulness_scores_take_device_inputs_and_maps(dev, host, case):
    """``faithfulness_scores`` (``evaluate --faithfulness``'s columns) with device input and
    device or host maps: the host's numbers, as NumPy. Budget: per method, 2 syncs for each
    of its 4 metric calls (their input checks) and ROAD's CG checks; then 1 at the end for
    the whole table."""
    from gradcam.evaluate_faithfulness import faithfulness_scores

    xp, fake, model = dev
    x, maps = case
    occ = np.random.default_rng(22).uniform(0, 1, maps.shape).astype(np.float32)
    ref = faithfulness_scores(host, x, {"a": maps, "b": 1 - maps}, T, occ)
    r, cost = counted(fake, faithfulness_scores, model, xp.asarray(x),
                      {"a": xp.asarray(maps), "b": 1 - maps}, T, xp.asarray(occ))
    assert list(r) == list(ref) and all(list(r[t]) == list(ref[t]) for t in ref)
    for t in ref:
        for k, v in ref[t].items():
            assert isinstance(r[t][k], np.ndarray) and r[t][k].dtype == np.float64
            np.testing.assert_allclose(r[t][k], v, rtol=RTOL, atol=RTOL, err_msg=f"{t} {k}")
    if cost is not None:
        # transfers per method: deletion's and insertion's 3 + the blur kernel, 1 each for
        # Average Drop and Increase in Confidence (their targets); and the host maps of "b"
        budget(cost, 2 * 2 * 4 + 1, 2 * (4 + 4 + 1 + 1) + 1, "faithfulness")


def test_evaluate_with_faithfulness_on_a_device_model_matches_the_host(dev, host):
    """``evaluate(..., faithfulness=True, road=True)`` on a device model (it took host images
    to the metrics of a device model: ValueError) gives the host's table."""
    from gradcam.evaluate import evaluate

    _, _, model = dev
    kw = dict(n_single=2, n_scenes=1, batch=2, methods=["gradcam"], faithfulness=True,
              road=True, occlusion={"window": 16, "stride": 16})
    ref, r = evaluate(host, **kw), evaluate(model, **kw)
    row, want = r["methods"]["Grad-CAM"], ref["methods"]["Grad-CAM"]
    assert set(row) == set(want) and {"road_morf", "deletion"} <= set(row)
    np.testing.assert_allclose([row[k] for k in want], list(want.values()), rtol=1e-4,
                               atol=1e-6)
