"""The lessons as notebooks: figures show inline, and a lesson runs from any folder.

One small lesson (04) is converted with jupytext and executed in SMOKE mode by a real IPython
kernel (nbclient + ipykernel), in a temporary folder, so its ``import _common`` must take the
fallback through minicnn's checkout; the executed notebook must hold one PNG output per figure
the lesson writes. A cheap static check covers the other lessons: every one has the same
import fallback and writes its figures only through ``_common.save`` (which displays them).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOK_LESSON = "04_cam.py"
FALLBACK = re.compile(
    r"try:\n    import _common as C  #[^\n]*\nexcept ModuleNotFoundError:  #[^\n]*\n"
    r"(?:    [^\n]*\n|\n)*?    sys\.path\.append\(str\(pathlib\.Path\(minicnn\.__file__\)"
    r"\.parents\[1\] / \"lessons\"\)\)\n    import _common as C\n")


def _lessons():
    return sorted(LESSONS.glob("[0-9][0-9]_*.py"))


def test_notebook_lesson_shows_its_figures_inline(tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext", reason="converting a lesson needs jupytext")
    nbclient = pytest.importorskip("nbclient", reason="executing a notebook needs nbclient")
    pytest.importorskip("ipykernel", reason="executing a notebook needs an IPython kernel")
    from test_lessons import FIGURES

    nb = jupytext.read(LESSONS / NOTEBOOK_LESSON, fmt="py:percent")
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("LESSONS_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # NOTE: the kernel's working folder is tmp_path, where no _common.py lives
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == len(FIGURES[NOTEBOOK_LESSON])
    for name in FIGURES[NOTEBOOK_LESSON]:
        assert (tmp_path / "out" / name).is_file(), name
    # a cell ending in C.save(...) echoes no path under its picture
    assert not [o for o in outputs if o.output_type == "execute_result"
                and "PosixPath" in o.data.get("text/plain", "")]


@pytest.mark.parametrize("path", _lessons(), ids=lambda p: p.name)
def test_lesson_imports_common_from_any_folder_and_saves_through_it(path):
    text = path.read_text()
    assert len(FALLBACK.findall(text)) == 1, "the first code cell lacks the _common fallback"
    assert "savefig(" not in text and "save_png(" not in text  # those would not show inline
    assert text.count("C.save(") >= 1


def test_the_fallback_pattern_rejects_a_bare_import():
    """Negative control: the static check above fails a lesson that only imports _common."""
    bare = "import numpy as np\n\nimport _common as C\nimport gradcam\n"
    assert not FALLBACK.findall(bare)
    assert len(FALLBACK.findall((LESSONS / NOTEBOOK_LESSON).read_text())) == 1
