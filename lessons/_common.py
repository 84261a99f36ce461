"""Helpers shared by the lessons: the SMOKE switch, the output folder, figures, showing code.

    import _common as C
    n = C.pick(full=2000, smoke=64)       # sizes shrink when SMOKE=1
    C.show(minicnn.naive.conv2d_forward)  # print the library's source, with its file and line
    fig = C.figure(8, 3)                  # a matplotlib Figure on the Agg canvas (no pyplot)
    C.save(fig, "01_edges.png")           # -> $LESSONS_OUT or lessons/out/, written atomically;
                                          #    in a notebook it also shows inline
    C.check("dx", err, about=1e-9, below=1e-6)   # print an error and stop the lesson if too big
    C.colorbar(C.im(ax, counts, cmap="viridis"), ticks=[1, 2, 4])   # values readable off colours

Each lesson imports this module as ``_common``: found beside the script (``python
lessons/NN.py``, or a notebook opened in lessons/), else beside the installed ``minicnn``
checkout (a notebook executed from another folder; see the lessons' first code cell).

Environment variables:
    SMOKE=1          reduced sizes (the test suite runs every lesson this way)
    LESSONS_OUT=DIR  where figures go (default: lessons/out/, which git ignores)
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:  # a reader who has not run `pip install -e .` can still run a lesson from a checkout
    import minicnn  # noqa: F401
except ImportError:  # pragma: no cover - depends on the reader's setup
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gradcam.viz import save_png  # noqa: E402

SMOKE = os.environ.get("SMOKE", "").strip() not in ("", "0", "false", "False", "no")
OUT = Path(os.environ.get("LESSONS_OUT") or HERE / "out")
_START = time.perf_counter()
np.set_printoptions(precision=4, suppress=True, linewidth=100)


def pick(full, smoke):
    """``smoke`` when SMOKE=1, else ``full``."""
    return smoke if SMOKE else full


def first(data, n):
    """The first ``n`` images of a ``make_shapes`` / ``make_scenes`` result (every array field).

    Lessons draw the full-size data set and take a prefix in SMOKE mode, so both modes show
    the same first images.
    """
    return type(data)(*(a[:n] if isinstance(a, np.ndarray) else a for a in data))


def rng(seed):
    """A seeded NumPy generator (every lesson draws its numbers from these)."""
    return np.random.default_rng(seed)


def show(obj, title=None):
    """Print the source of a library function or class, headed by its file and first line."""
    src, line = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    print(f"# ---- {title or obj.__qualname__}  ({path}:{line})")
    print("".join(src).rstrip())
    print("# ----")


def figure(width, height):
    """A Figure of ``width`` x ``height`` inches on the Agg canvas, constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, name):
    """Save a Figure (or an (H, W, 3) image) as ``OUT/name``, print where it went, and show it
    inline when the lesson runs under IPython (a Jupyter notebook).

    NOTE: the lessons draw on Agg Figures, not pyplot, so Jupyter's inline backend never sees
    them; displaying the PNG just written shows exactly the saved file. Returns None, so a cell
    ending in ``C.save(...)`` does not echo a path under the picture.
    """
    path = save_png(fig, OUT / name)
    print(f"saved {path}")
    _display_inline(path)


def _display_inline(path):
    """Display the PNG at ``path`` in the running IPython session, if there is one."""
    ipython = sys.modules.get("IPython")  # never import IPython just to learn it is absent
    if ipython is None or ipython.get_ipython() is None:
        return
    from IPython.display import Image, display

    display(Image(filename=str(path)))


def check(label, value, about, below):
    """Print ``label: value (should be about ABOUT)`` and stop the lesson if value >= below.

    The lesson states the size to expect; ``below`` is the bound that makes it a real check
    (the test suite runs every lesson, so a broken backward fails the suite, not just a print).
    """
    print(f"{label}: {value:.1e}   (should be about {about:.0e})")
    if not value < below:
        raise SystemExit(f"CHECK FAILED: {label} = {value:.3e}, expected below {below:.0e}")


def expect(label, condition):
    """Stop the lesson with a clear message when a stated fact does not hold."""
    if not condition:
        raise SystemExit(f"CHECK FAILED: {label}")


def im(ax, img, title=None, **kw):
    """imshow without ticks; ``img`` is (H, W), (H, W, 3) or a (3, H, W) model input."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    ax.imshow(img, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def colorbar(ax, ticks=None, label=None):
    """A colour bar beside ``ax`` for the image last drawn on it (``C.im``), so the values the
    text cites can be read off the colours; ``ticks`` marks those values."""
    bar = ax.figure.colorbar(ax.images[-1], ax=ax, shrink=0.8, ticks=ticks)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)
    return bar


@atexit.register
def _done():
    mode = "SMOKE" if SMOKE else "full"
    print(f"[{Path(sys.argv[0]).name}] ran for {time.perf_counter() - _START:.1f} s ({mode} mode)")
