"""Adebayo et al.'s sanity checks (gradcam/sanity.py, arXiv:1810.03292v3), the permuted-label
model (gradcam/permuted.py) and ``gradcam sanity``.

- the layer groups and which weights each step re-initialises (cascading: the top groups down
  to step s; independent: group s only), seeded, the caller's model untouched;
- the paper's finding reproduced on the shipped shapes_cnn: guided backprop's map stays similar
  when the top layers are re-initialised, Grad-CAM's does not;
- negative control: a "method" that ignores the model (an edge map of the input) keeps
  similarity 1 at every step: it passes no sanity check;
- data randomisation with a quickly trained permuted-label model, cached outside the package;
- the permuted-label recipe memorises: 20 epochs fit 32 permuted labels (train accuracy 1,
  true-label test accuracy near chance); the control, 1 epoch, does not fit them.
"""

import numpy as np
import pytest

from gradcam import cli, permuted, sanity
from gradcam.permuted import RECIPES, cache_folder, cache_path, permuted_label_model
from gradcam.registry import _REGISTRY, Method
from minicnn import zoo
from minicnn.data import make_shapes

GROUPS = [("fc", ["fc"]), ("conv4", ["conv4", "bn4"]), ("conv3", ["conv3", "bn3"]),
          ("conv2", ["conv2", "bn2"]), ("conv1", ["conv1", "bn1"])]


@pytest.fixture(scope="module")
def model():
    return zoo.shapes_cnn(pretrained=True)


@pytest.fixture(scope="module")
def data():
    return make_shapes(2, seed=5000)


def _state(m):
    return {k: np.array(v) for k, v in m.state_dict().items()}


def test_layer_groups_top_down(model):
    assert sanity.layer_groups(model) == GROUPS
    eff = sanity.layer_groups(zoo.efficientnet_lite0())
    assert [g for g, _ in eff[:3]] == ["_fc", "_conv_head", "_blocks.15"]
    assert eff[-1] == ("_conv_stem", ["_conv_stem", "_bn0"]) and len(eff) == 19


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_each_step_reinitialises_the_right_groups(model, mode):
    before = _state(model)
    for s, (name, m) in enumerate(sanity.randomised(model, mode, seed=3)):
        assert name == GROUPS[s][0]
        after = _state(m)
        for g, (_, layers) in enumerate(GROUPS):
            hit = g <= s if mode == "cascading" else g == s
            for layer in layers:
                for k in ("weight", "bias"):
                    key = f"{layer}.{k}"
                    if key in before:
                        same = np.array_equal(after[key], before[key])
                        assert same != hit, (mode, s, key)
            if "bn" in layers[-1] and hit:  # batch norm back to gamma 1, beta 0; stats kept
                bn = layers[-1]
                assert (after[f"{bn}.weight"] == 1).all() and (after[f"{bn}.bias"] == 0).all()
                np.testing.assert_array_equal(after[f"{bn}.running_mean"],
                                              before[f"{bn}.running_mean"])
    # the caller's model is unchanged
    for k, v in _state(model).items():
        np.testing.assert_array_equal(v, before[k])


def test_a_group_gets_the_same_weights_in_both_modes_and_the_seed_matters(model):
    casc = dict(sanity.randomised(model, "cascading", seed=3))
    ind = dict(sanity.randomised(model, "independent", seed=3))
    other = dict(sanity.randomised(model, "independent", seed=4))
    w = casc["conv2"]["conv2"].params["weight"]  # conv2 was redrawn at step "conv2"
    # each step is its own copy: the step before still has the trained conv2
    np.testing.assert_array_equal(casc["conv3"]["conv2"].params["weight"],
                                  model["conv2"].params["weight"])
    np.testing.assert_array_equal(w, ind["conv2"]["conv2"].params["weight"])
    assert not np.array_equal(w, other["conv2"]["conv2"].params["weight"])
    # the He-uniform range of a fresh Conv2d(16 -> 32, 3x3): bound sqrt(6 / 144)
    assert np.abs(w).max() <= np.sqrt(6 / 144) and np.abs(w).max() > 0.9 * np.sqrt(6 / 144)


def test_guided_backprop_survives_cascading_randomisation_grad_cam_does_not(model, data):
    """Adebayo et al., Fig. 2 and Sec. 4, on shapes_cnn (2 shapes, seed 5000; measured: guided
    backprop SSIM 0.800 / 0.742 after re-initialising fc / fc..conv4, Spearman 0.82 / 0.73;
    Grad-CAM SSIM 0.045 / 0.351, Spearman -0.20 / 0.23)."""
    before = _state(model)
    res = sanity.randomisation(model, data.images, data.labels,
                               methods=["gradcam", "guided-backprop"])
    assert res.steps == ("trained", "fc", "conv4", "conv3", "conv2", "conv1")
    assert res.ssim.shape == res.spearman.shape == res.hog.shape == (2, 6, 2)
    assert res.maps.shape == (2, 6, 2, 64, 64)
    np.testing.assert_allclose(res.ssim[:, 0], 1.0, rtol=1e-12)
    np.testing.assert_allclose(res.spearman[:, 0], 1.0, rtol=1e-12)
    similar, rho = res.ssim.mean(axis=2)[:, 1:3], res.spearman.mean(axis=2)[:, 1:3]
    assert (similar[1] > 0.65).all() and (rho[1] > 0.6).all()  # guided backprop: still alike
    assert (similar[0] < 0.45).all() and (rho[0] < 0.4).all()  # Grad-CAM: changed
    assert (similar[1] - similar[0] > 0.3).all()
    for k, v in _state(model).items():  # the caller's model is unchanged
        np.testing.assert_array_equal(v, before[k])
    text = sanity.format_table(res)
    assert "guided-backprop  conv4" in text and len(text.splitlines()) == 13


def _edges(ctx):
    """|horizontal| + |vertical| finite differences of the input: ignores the model."""
    x = ctx.x
    e = np.zeros_like(x)
    e[..., 1:, :] += np.abs(np.diff(x, axis=-2))
    e[..., :, 1:] += np.abs(np.diff(x, axis=-1))
    return e


def test_a_map_that_ignores_the_model_passes_no_sanity_check(model, data, monkeypatch):
    monkeypatch.setitem(_REGISTRY, "edges", Method(
        "edges", "Edge detector", "none (a negative control)", "pixel", False, "input", _edges))
    for mode in ("cascading", "independent"):
        res = sanity.randomisation(model, data.images, data.labels,
                                   methods=["edges", "guided-backprop"], mode=mode)
        for a in (res.spearman, res.spearman_abs, res.ssim, res.hog):
            np.testing.assert_allclose(a[0], 1.0, rtol=1e-12)   # the edge map never changes
            assert (a[1, 1:] < 0.999).all()                     # guided backprop does, a bit


def test_data_randomisation_with_a_cached_permuted_label_model(model, data, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path / "c"))
    assert cache_folder() == tmp_path / "c"
    rnd = permuted_label_model("shapes_cnn", seed=1, n_train=64, epochs=1, n_test=50)
    files = list((tmp_path / "c").iterdir())
    assert [f.name for f in files] == ["shapes_cnn-permuted-seed1-n64-e1-lr0.001.npz"]
    assert files[0] == cache_path("shapes_cnn", seed=1, n_train=64, epochs=1)
    assert cache_path("shapes_cnn", 1, 64, 1, lr=3e-3).name.endswith("-e1-lr0.003.npz")
    again = permuted_label_model("shapes_cnn", seed=1, n_train=64, epochs=1)  # from the cache
    for k, v in _state(rnd).items():
        np.testing.assert_array_equal(_state(again)[k], v)
    assert again.permuted == rnd.permuted and rnd.permuted["train_images"] == 64
    res = sanity.data_randomisation(model, rnd, data.images, data.labels,
                                    methods=["gradcam", "guided-backprop"])
    assert res.mode == "data" and res.steps == ("trained", "permuted labels")
    np.testing.assert_allclose(res.ssim[:, 0], 1.0, rtol=1e-12)
    assert (res.ssim[:, 1] < 0.99).all()
    monkeypatch.delenv("GRADCAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "gradcam"
    with pytest.raises(ValueError, match="no training recipe"):
        permuted_label_model("vgg16")


def test_the_permuted_label_recipe_memorises_a_small_set(tmp_path, monkeypatch):
    """The recipe's claim at a small scale: with enough steps the network fits labels that
    carry no information (train accuracy 1) and learns nothing of the shapes (true-label test
    accuracy near chance, 1/4); the control, one epoch, fits far fewer of them."""
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path))
    n, e, _ = RECIPES["shapes_cnn"]
    assert f"{n} images, {e} epochs" in permuted.__doc__   # the docstring states the recipe
    assert n <= 1024 and e >= 20                           # few images, many steps each
    fits = permuted_label_model("shapes_cnn", n_train=32, epochs=20, n_test=200).permuted
    once = permuted_label_model("shapes_cnn", n_train=32, epochs=1, n_test=200).permuted
    assert fits["train_accuracy_permuted"] == 1.0                      # memorised
    assert once["train_accuracy_permuted"] <= 0.75                     # control: not yet
    for f in (fits, once):
        assert f["test_accuracy_true"] < 0.4 and f["chance"] == 0.25   # no shape learned
        assert f["train_accuracy_true"] < 0.6   # the permuted labels agree with 1/4 of the true


# --------------------------------------------------------------------------- command line
def test_cli_writes_the_cascade_figure_and_prints_the_table(tmp_path, capsys):
    rc = cli.main(["sanity", "--model", "shapes_cnn", "--n", "1", "--method", "gradcam",
                   "guided-backprop", "--out", str(tmp_path), "--mode", "independent"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "guided-backprop  conv1" in out and "Spearman abs" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sanity_independent.npz", "sanity_independent_0.png"]
    with np.load(tmp_path / "sanity_independent.npz") as z:
        assert z["ssim"].shape == (2, 6, 1) and list(z["methods"]) == ["gradcam",
                                                                       "guided-backprop"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["sanity", "--model", "shapes_cnn", "--method", "nope",
                     "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradcam: error: unknown method(s) 'nope'") and err.count("\n") == 1
    assert cli.main(["sanity", "--model", "shapes_cnn", "--epochs", "1",
                     "--out", str(tmp_path)]) == 1
    assert "go with --mode data" in capsys.readouterr().err
    assert cli.main(["sanity", "--model", "vgg16", "--mode", "data",
                     "--out", str(tmp_path)]) == 1
    assert "use one of shapes_cnn, shapes_gap, not 'vgg16'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_data_mode_says_how_much_the_network_memorised(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path / "c"))
    args = ["sanity", "--model", "shapes_cnn", "--n", "1", "--method", "gradcam", "--mode",
            "data", "--train-images", "32", "--epochs", "2", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert "training shapes_cnn on permuted labels (32 images, 2 epochs, lr 0.001)" in err
    line = next(s for s in out.splitlines() if s.startswith("permuted-label model:"))
    assert "32 images, 2 epochs" in line and "(chance 0.25)" in line
    facts = permuted_label_model("shapes_cnn", n_train=32, epochs=2).permuted   # cached
    assert f"permuted labels {facts['train_accuracy_permuted']:.3f}" in line
    with np.load(tmp_path / "o" / "sanity_data.npz") as z:
        assert float(z["test_accuracy_true"]) == facts["test_accuracy_true"]
    assert cli.main(args) == 0 and "training" not in capsys.readouterr().err   # from the cache

