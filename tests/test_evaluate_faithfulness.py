"""``gradcam evaluate --faithfulness`` / ``--photos`` / ``--protocol``: the faithfulness columns,
the fast protocol's n column, the photos table, and one-line errors (gradcam.evaluate_family,
gradcam.evaluate_faithfulness, gradcam/cli/evaluate.py)."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import gradcam
from gradcam import cli
from gradcam import evaluate as E
from gradcam import evaluate_family as F
from gradcam.evaluate_faithfulness import FAITHFULNESS, faithfulness_scores, occlusion_reference
from gradcam.registry import _REGISTRY
from minicnn import zoo
from minicnn.data import make_shapes


@pytest.fixture(scope="module")
def shapes_cnn():
    return zoo.shapes_cnn(pretrained=True)


def test_protocol_caps_only_the_costly_methods():
    names = list(gradcam.methods())
    fast, full = F.protocol_n(names, 200), F.protocol_n(names, 200, "full")
    assert set(full.values()) == {200}
    assert fast["sscam"] == 4 and fast["iscam"] == 4 and fast["occlusion"] == 10
    assert fast["smoothgrad"] == 10 and fast["scorecam"] == 25 and fast["gradcam"] == 200
    assert F.protocol_n(["sscam", "gradcam"], 3) == {"sscam": 3, "gradcam": 3}  # n below a cap
    # the registry's fields are the caps: every capped method, and only those
    assert F.fast_caps() == {"eigencam": 25, "eigengradcam": 25, "scorecam": 25, "sscam": 4,
                             "iscam": 4, "smoothgrad": 10, "integrated-gradients": 10,
                             "occlusion": 10}
    assert F.photo_slow() == ("sscam", "iscam")
    with pytest.raises(ValueError, match="unknown protocol 'quick'"):
        F.protocol_n(names, 200, "quick")
    with pytest.raises(ValueError, match="n must be >= 1"):
        F.protocol_n(names, 0)


def test_the_method_names_kept_outside_the_registry_are_registered():
    # NOTE: the fast protocol's caps and the photos' skips are fields of the registry's methods
    # (Method.fast_n, photo_fast); the selections below are lists, so a renamed method would
    # silently drop out of them: every such name must exist
    from gradcam.cli import sanity as cli_sanity

    registered = set(gradcam.methods())
    kept = {"PAPER_METHODS": set(E.PAPER_METHODS), "sanity": set(cli_sanity.DEFAULT_METHODS)}
    assert {k: v - registered for k, v in kept.items()} == {k: set() for k in kept}
    assert {"score-cam", "ss-cam"} - registered == {"score-cam", "ss-cam"}  # control: misspelt


def test_protocol_runs_one_evaluate_per_n_and_keeps_the_registry_order(monkeypatch):
    calls = []

    def fake(model, n_single, n_scenes, seed, methods=None, name=None, options=None,
             faithfulness=False, road=False, occlusion=None):
        calls.append((n_single, tuple(methods), faithfulness))
        titles = E.scored(methods)
        return {"model": name, "accuracy": n_single, "notes": {},
                "methods": {t: {"pointing": float(n_single)} for t in titles.values()}}

    monkeypatch.setattr(F, "evaluate", fake)
    res = F.evaluate_protocol(None, 30, methods=["iscam", "gradcam", "scorecam"], name="m",
                              faithfulness=True)
    assert calls == [(30, ("gradcam",), True), (25, ("scorecam",), True), (4, ("iscam",), True)]
    assert list(res["methods"]) == ["Grad-CAM", "Score-CAM", "IS-CAM"]  # the registry's order
    assert res["n"] == {"Grad-CAM": 30, "Score-CAM": 25, "IS-CAM": 4}
    assert res["methods"]["IS-CAM"] == {"pointing": 4.0} and res["accuracy"] == 30


def count_reference_runs(monkeypatch):
    """The occlusion reference's own runs (``explain`` called by gradcam.evaluate_faithfulness)."""
    import gradcam.evaluate_faithfulness as EF

    runs, explain = [], EF.explain
    monkeypatch.setattr(EF, "explain", lambda *a, **k: runs.append(len(a[1])) or explain(*a, **k))
    return runs


def test_protocol_equals_per_group_evaluate_bit_for_bit(shapes_cnn, monkeypatch):
    """The merged fast-protocol result is, bit for bit, the per-group ``evaluate`` runs whose
    occlusion reference is run on its own: the Occlusion row's S^c, reused as the reference in
    its group, changes nothing. Control: a reference of another window changes the Occlusion
    row's occl. rho and nothing else, so the equality would catch a wrong shared map."""
    # two groups: Grad-CAM on 3, Occlusion on 2
    monkeypatch.setitem(_REGISTRY, "occlusion", replace(_REGISTRY["occlusion"], fast_n=2))
    ref = {"window": 16, "stride": 16}  # 16 windows at 64 x 64: milliseconds
    runs = count_reference_runs(monkeypatch)
    res = F.evaluate_protocol(shapes_cnn, 3, seed=5, methods=["occlusion", "gradcam"],
                              faithfulness=True, options={"occlusion": dict(ref)}, occlusion=ref)
    assert runs == [3]  # the Grad-CAM group's reference only; the Occlusion row's was reused
    # NOTE: the same options spelled out (0.0 is the default baseline) are not the reference's
    # dict, so these runs compute the reference on their own
    own = {**ref, "baseline": 0.0}
    a = E.evaluate(shapes_cnn, 3, 3, 5, methods=["gradcam"], faithfulness=True, occlusion=ref)
    b = E.evaluate(shapes_cnn, 2, 2, 5, methods=["occlusion"], faithfulness=True, occlusion=ref,
                   options={"occlusion": own})
    assert runs == [3, 3, 2]
    assert res["methods"] == {**a["methods"], **b["methods"]}
    assert res["n"] == {"Grad-CAM": 3, "Occlusion": 2} and res["accuracy"] == a["accuracy"]
    c = E.evaluate(shapes_cnn, 2, 2, 5, methods=["occlusion"], faithfulness=True,
                   occlusion={**ref, "stride": 8}, options={"occlusion": own})
    got, other = res["methods"]["Occlusion"], c["methods"]["Occlusion"]
    assert other != got and {k for k in got if got[k] != other[k]} == {"occlusion_rho"}


def test_gradcam_is_more_faithful_than_a_random_map(shapes_cnn):
    """Negative control: a random map deletes the class more slowly, inserts it more slowly and
    correlates less with occlusion than Grad-CAM on the shipped model."""
    d = make_shapes(6, seed=11)
    gc = gradcam.grad_cam(shapes_cnn, d.images, d.labels).heatmap
    rand = np.random.default_rng(0).random(gc.shape)
    occ = occlusion_reference(shapes_cnn, d.images, d.labels)
    s = faithfulness_scores(shapes_cnn, d.images, {"gc": gc, "rand": rand}, d.labels, occ)
    assert set(s["gc"]) == set(FAITHFULNESS) - {"road_morf", "road_lerf"}
    g, r = ({k: v.mean() for k, v in s[t].items()} for t in ("gc", "rand"))
    assert g["deletion"] < r["deletion"] and g["insertion"] > r["insertion"]
    assert g["occlusion_rho"] > r["occlusion_rho"] + 0.1
    assert all(v.shape == (6,) for v in s["gc"].values())
    assert set(np.unique(s["gc"]["increase"])) <= {0.0, 1.0}


def test_cli_faithfulness_table_with_n_column(capsys):
    assert cli.main(["evaluate", "--models", "shapes_gap", "--n", "5", "--methods", "gradcam",
                     "sscam", "--faithfulness", "--markdown",
                     "--option", "num_samples=1"]) == 0  # one noisy copy: seconds
    lines = capsys.readouterr().out.splitlines()
    head = [c.strip() for c in lines[2].strip("|").split("|")]
    assert head[:3] == ["method", "n", "pointing game"]
    assert head[-5:] == ["deletion AUC", "insertion AUC", "avg. drop %", "incr. in conf.",
                         "occl. rho"]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")]
            for r in lines[4:6]}
    assert rows["Grad-CAM"][1] == "5" and rows["SS-CAM"][1] == "4"  # the fast protocol's cap
    for r in rows.values():
        assert 0 <= float(r[-5]) <= 1 and 0 <= float(r[-4]) <= 1  # AUCs of probabilities
        assert 0 <= float(r[-3]) <= 100 and -1 <= float(r[-1]) <= 1


def test_format_table_faithfulness_cells():
    row = {**dict.fromkeys(E.METRICS, 0.5), "deletion": 0.1234, "insertion": 0.9, "avg_drop": 42.71,
           "increase": 0.25, "occlusion_rho": 0.281}
    res = {"model": "m", "layer": "relu3", "map_size": (16, 16), "tolerance": 4.3,
           "n_single": 2, "n_scenes": 2, "seed": 0, "accuracy": 1.0, "ceiling": None,
           "seconds": 0.1, "methods": {"Grad-CAM": row, "CAM": None},
           "n": {"Grad-CAM": 2, "CAM": 2}}
    md = E.format_table(res).splitlines()
    assert md[4].endswith("| 0.123 | 0.900 | 42.7 | 25.0% | +0.28 |")
    assert md[4].startswith("| Grad-CAM | 2 | 50.0% |")
    assert md[5] == "| CAM | 2 |" + " n/a |" * (len(E.METRICS) + 5)


def test_photos_table_on_a_folder(tmp_path, shapes_cnn, monkeypatch):
    d = make_shapes(2, seed=3)
    for i, img in enumerate(d.images):
        Image.fromarray((255 * img.transpose(1, 2, 0)).astype(np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    paths = F.photo_paths(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["0.png", "1.png"]
    runs = count_reference_runs(monkeypatch)
    res = F.evaluate_photos(shapes_cnn, paths, methods=["gradcam", "saliency", "scorecam",
                                                       "sscam", "occlusion"],
                            name="net", occlusion={"window": 16, "stride": 16},
                            options={"occlusion": {}, "gradcam": {}})  # as the CLI passes them
    # the Occlusion row ran with the reference's window: it ranks the pixels as the reference
    # (measured 0.93; its default 8 px window, the control below, 0.50)
    assert res["methods"]["Occlusion"]["occlusion_rho"] > 0.85
    assert runs == []  # that row's S^c was the reference: no run of its own
    other = F.evaluate_photos(shapes_cnn, paths, methods=["occlusion"], options={
        "occlusion": {"window": 8, "stride": 4}}, occlusion={"window": 16, "stride": 16})
    assert other["methods"]["Occlusion"]["occlusion_rho"] < 0.7 and runs == [2]
    # the same options spelled out (baseline 0.0, the default) run the reference on its own:
    # the same numbers, bit for bit
    own = F.evaluate_photos(shapes_cnn, paths, methods=["occlusion"], options={
        "occlusion": {"baseline": 0.0}}, occlusion={"window": 16, "stride": 16})
    assert runs == [2, 2] and own["methods"]["Occlusion"] == res["methods"]["Occlusion"]
    assert res["title"].startswith("net on 2 photos (0.png, 1.png)")
    titles = [gradcam.methods()[m].title for m in ("gradcam", "saliency", "scorecam", "sscam")]
    assert list(res["methods"])[:4] == titles
    assert res["methods"]["SS-CAM"] is None  # the fast protocol leaves it out, with a note
    assert "left out by the fast protocol" in res["notes"]["SS-CAM"]
    assert set(res["notes"]) == {"SS-CAM"}  # Score-CAM runs in the fast protocol
    assert all(0 <= res["methods"][t]["deletion"] <= 1 for t in titles[:3])
    assert "| Grad-CAM | " in E.format_table(res)
    assert F.photo_paths(F.photo_folder())[0].endswith("Minduka_Present_Blue_Pack.png")


@pytest.mark.parametrize("argv, message", [
    (["--road"], "gradcam: error: --road needs --faithfulness or --photos\n"),
    (["--models"], "gradcam: error: nothing to evaluate: give --models or --photos\n"),
    (["--photos", "/nonexistent/folder"], "gradcam: error: --photos: not a folder: "
     "/nonexistent/folder\n"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    assert cli.main(["evaluate", "--n", "2", "--models", "shapes_gap"] + argv) == 1
    assert capsys.readouterr().err == message


def test_bad_protocol_and_empty_photo_folder(tmp_path, capsys):
    assert cli.main(["evaluate", "--protocol", "quick"]) == 2  # argparse: usage error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'quick'" in err
    assert cli.main(["evaluate", "--n", "2", "--photos", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"gradcam: error: --photos: no photos (.jpg, .jpeg, .png) " \
                                      f"in {tmp_path}\n"


def test_cli_curves_figure(tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert cli.main(["evaluate", "--models", "shapes_cnn", "--n", "1", "--methods", "gradcam",
                     "saliency", "--curves", str(out)]) == 0
    assert capsys.readouterr().out.endswith(f"wrote:\n  {out}\n")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]  # two panels side by side


def test_road_columns_most_relevant_first_drops_faster(shapes_cnn):
    """``--road``: removing Grad-CAM's most relevant pixels first lowers the class probability
    more than removing its least relevant first (Rong et al.'s MoRF < LeRF); a reversed map
    swaps them (the control)."""
    d = make_shapes(2, seed=11)
    gc = gradcam.grad_cam(shapes_cnn, d.images, d.labels).heatmap
    occ = np.zeros(gc.shape)
    s = faithfulness_scores(shapes_cnn, d.images, {"gc": gc, "rev": 1 - gc}, d.labels, occ,
                            with_road=True)
    assert s["gc"]["road_morf"].mean() < s["gc"]["road_lerf"].mean() - 0.1
    assert s["rev"]["road_morf"].mean() > s["rev"]["road_lerf"].mean()
    assert np.isnan(s["gc"]["occlusion_rho"]).all()  # a constant reference: no ranking
