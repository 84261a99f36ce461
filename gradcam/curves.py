"""Deletion and insertion curves (``gradcam.metrics.deletion`` / ``insertion``) as a figure: one
panel per method, the score against the fraction of pixels removed or inserted.

    curves = {m: {"deletion": metrics.deletion(...), "insertion": metrics.insertion(...)}
              for m in methods}
    plot_curves(curves, "curves.png")

Each panel draws the mean curve over the images (bold) and every image's curve (faint), with
the mean area under the curve in the legend: a faithful map drops fast on deletion (small
area) and rises fast on insertion (large area).
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minicnn.backend import to_numpy

from .viz import save_png

COLOURS = {"deletion": "tab:red", "insertion": "tab:blue"}
LABELS = {"softmax": "class probability", "logits": "class logit"}


def plot_curves(curves_by_method, path=None, title=None, per_image=True, cols=None):
    """One panel per method with its deletion and insertion curves; returns the Figure.

    Parameters
    ----------
    curves_by_method : {method name: FaithfulnessCurve, or a list or {kind: curve} of them}
    path : where to write the PNG (None: only return the Figure)
    title : the figure's title; per_image : draw each image's curve faintly as well
    cols : panels per row (default: up to 4)
    Returns
    -------
    matplotlib.figure.Figure
    """
    if not curves_by_method:
        raise ValueError("no curves to plot")
    names = list(curves_by_method)
    cols = cols or min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows + (0.4 if title else 0.1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharey=True)).ravel()
    ylabel = None
    for ax, name in zip(axes, names):
        for c in _as_list(curves_by_method[name]):
            curve, fr = to_numpy(c.curve), np.asarray(c.fractions)
            colour = COLOURS.get(c.kind, "black")
            if per_image and curve.shape[0] > 1:
                for row in curve:
                    ax.plot(fr, row, color=colour, alpha=0.15, linewidth=0.7)
            ax.plot(fr, curve.mean(axis=0), color=colour, linewidth=2,
                    label=f"{c.kind}  AUC {float(to_numpy(c.auc).mean()):.3f}")
            ylabel = LABELS.get(c.scores, c.scores)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("fraction of pixels, most salient first", fontsize=8)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ax.tick_params(labelsize=7)
    for ax in axes[::cols]:
        ax.set_ylabel(ylabel or "score", fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    if path is not None:
        save_png(fig, path)
    return fig


def _as_list(entry):
    if isinstance(entry, dict):
        return list(entry.values())
    if isinstance(entry, (list, tuple)):
        return list(entry)
    return [entry]
