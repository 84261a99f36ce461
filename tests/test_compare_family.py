"""``gradcam.compare_family.compare_method`` and ``gradcam compare --method``: which formula and
which rendering made a user's map, for any registered method (no torch needed: the peers'
renderings are ours, tested against the libraries in tests/test_peers_family.py)."""

import numpy as np
import pytest

import gradcam
from gradcam import cli
from gradcam import conventions as C
from gradcam.compare_family import compare_method
from gradcam.registry import variants
from minicnn import zoo


TARGET = 3  # the maps of the methods below are positive everywhere: min-max and / max differ


@pytest.fixture(scope="module")
def case():
    model = zoo.shapes_cnn(pretrained=True).astype("float64")
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64))
    return model, x


def check(case, user_map, method, status, *phrases):
    model, x = case
    c = compare_method(user_map, model, x, method, TARGET, "relu4")
    text = c.format()
    assert c.status == status, text
    for p in phrases:
        assert p in text, f"{p!r} not in:\n{text}"
    return c


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_our_maps_are_ours_and_peer_renderings_are_named(case, method):
    if method not in gradcam.methods():
        pytest.skip(f"method {method!r} is not registered in this tree")
    model, x = case
    r = gradcam.explain(model, x, TARGET, method, "relu4")
    assert r.coarse.min() > 0, "min-max would equal / max: the test could not tell them apart"
    check(case, r.heatmap[0], method, 0, "matches minicnn's")
    check(case, r.coarse[0], method, 0, "paper + minicnn-coarse")
    check(case, C.from_result("pytorch-grad-cam", r)[0], method, 1,
          "closest convention: paper + pytorch-grad-cam")
    check(case, C.from_result("torchcam", r, None)[0], method, 1, "paper + torchcam")
    # an affine change of our map: named as a normalisation, not as ours
    check(case, 3 * r.heatmap[0] + 1, method, 1, "up to a normalisation")


def test_a_peer_formula_is_named_with_its_departure(case):
    if "gradcam++" not in gradcam.methods():
        pytest.skip("method 'gradcam++' is not registered in this tree")
    assert "pytorch-grad-cam" in variants("gradcam++")
    model, x = case
    r = gradcam.explain(model, x, TARGET, "gradcam++", "relu4", variant="pytorch-grad-cam")
    c = check(case, C.from_result("pytorch-grad-cam", r)[0], "gradcam++", 1,
              "pytorch-grad-cam + pytorch-grad-cam", "1e-6")
    assert "paper + pytorch-grad-cam" not in c.closest


def test_no_match_and_cli(case, tmp_path, capsys):
    model, x = case
    noise = np.random.default_rng(1).random((64, 64))
    check(case, noise, "gradcam", 2, "no formula or rendering matches")
    r = gradcam.explain(model, x, TARGET, "gradcam", "relu4")
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x[0])
    np.save(tmp_path / "pgc.npy", C.from_result("pytorch-grad-cam", r)[0])
    rc = cli.main(["compare", str(tmp_path / "pgc.npy"), str(tmp_path / "x.npy"),
                   "--model", str(tmp_path / "m.npz"), "--target", str(TARGET), "--layer", "relu4",
                   "--method", "gradcam"])
    assert rc == 1 and "pytorch-grad-cam" in capsys.readouterr().out
    # --method other than gradcam goes through compare_method (its table names formulas)
    np.save(tmp_path / "ours.npy", r.heatmap[0])
    rc = cli.main(["compare", str(tmp_path / "ours.npy"), str(tmp_path / "x.npy"),
                   "--model", str(tmp_path / "m.npz"), "--target", str(TARGET), "--layer", "relu4",
                   "--method", "guided-gradcam"])
    out = capsys.readouterr().out
    assert rc == 2 and "paper + minicnn" in out, out
