"""Every registered method in one picture: the gallery (``gradcam demo --gallery``, and the
overview ``gradcam explain --method all`` writes).

One block of panels per class: the image (with the class as its title), then each method's map
over it, titled with the method's title and a short citation ("Grad-CAM++ (Chattopadhay
2018)"). Maps are drawn by kind: a pixel-space map as a grey signed image
(``viz.to_uint8_gradient``), every other kind as a coloured overlay of its heatmap.

    blocks = explain_blocks(model, x, targets)              # [(class label, [Panel, ...]), ...]
    viz.save_png(gallery_figure(image, blocks), "gallery.png")
"""

from __future__ import annotations

import textwrap
import time
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minicnn.backend import to_numpy

from .catalog import layer_for, short_citation
from .core import explain
from .registry import methods as registry
from .viz import as_rgb, overlay, to_uint8_gradient

COLUMNS = 6  # panels per line of the figure


class Panel(NamedTuple):
    """One method's map for one class: the registry entry, the map to draw ((H, W) heatmap,
    or (C, H, W) for a pixel-space method; None if the method failed, ``note`` says why) and
    the options it ran with that are not its defaults (shown in the panel's title)."""

    method: Any
    map: Any
    options: Any = None
    note: str = ""  # why there is no map (map None): the method's error on this model


def panel_title(method, options=None):
    """'Grad-CAM++\\n(Chattopadhay 2018)': the method's title and short citation, and a third
    line with the options that are not the method's defaults ('num_samples=2')."""
    changed = [f"{k}={_shown(v)}" for k, v in (options or {}).items()
               if k not in method.options or not _same(method.options[k], v)]
    extra = "\n" + ", ".join(changed) if changed else ""
    return f"{method.title}\n({short_citation(method)}){extra}"


def _same(a, b):
    """Whether an option's value is its default (arrays: never assumed so)."""
    if hasattr(a, "shape") or hasattr(b, "shape"):
        return False
    return type(a) is type(b) and a == b


def _shown(v):
    """An option's value in a title: arrays by their shape."""
    return f"array{tuple(v.shape)}" if hasattr(v, "shape") else repr(v) if isinstance(v, str) \
        else str(v)


def explain_blocks(model, x, targets, methods=None, layer=None, options=None, report=None):
    """Run every method for every class on one image: [(class label, [Panel, ...]), ...].

    Parameters
    ----------
    model : minicnn.Sequential; x : (1, C, H, W) input
    targets : classes (ints or names), one block each
    methods : registry entries (default: every registered method)
    layer : the CAM methods' layer (None: each method's default; ``catalog.layer_for``)
    options : {method name: {option: value}} (e.g. a batch size for Score-CAM)
    report : called as report(method, result, seconds) after each run (progress lines); the
        result is the ValueError where the method cannot explain this model (its panel is
        then "n/a" with the message)
    """
    methods = list(registry().values()) if methods is None else list(methods)
    options = options or {}
    blocks = []
    for t in targets:
        panels, label = [], str(t)  # the class's name once a method has resolved it
        for m in methods:
            start = time.perf_counter()
            try:
                r = explain(model, x, [t], method=m.name, layer=layer_for(m, layer),
                            **options.get(m.name, {}))
            except ValueError as e:  # e.g. Grad-CAM++'s exp(y^c) overflowing float32
                r, note = e, " ".join(str(e).split())
            if report is not None:
                report(m, r, time.perf_counter() - start)
            if isinstance(r, ValueError):
                panels.append(Panel(m, None, options.get(m.name), note))
                continue
            label = r.class_names[0] if r.class_names else f"class {int(r.target[0])}"
            drawn = r.pixels[0] if m.kind == "pixel" else r.heatmap[0]
            panels.append(Panel(m, to_numpy(drawn), options.get(m.name)))
        blocks.append((label, panels))
    return blocks


def gallery_figure(image, blocks, columns=COLUMNS, title=None, alpha=0.5, cmap="jet",
                   cell_inches=2.0):
    """The gallery as a matplotlib Figure: per block, the image then one panel per method,
    ``columns`` panels a line.

    Parameters
    ----------
    image : (H, W, 3) or (H, W), uint8 or float in [0, 1]: drawn under every overlay
    blocks : [(label, [Panel, ...]), ...] (``explain_blocks``)
    """
    img = as_rgb(image)
    lines = [-(-(1 + len(panels)) // columns) for _, panels in blocks]
    fig = Figure(figsize=(cell_inches * columns, cell_inches * 1.2 * sum(lines) + 0.4),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(sum(lines), 1), columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    row = 0
    for (label, panels), n_lines in zip(blocks, lines):
        cells = [(img, f"{label}\n(image)", "")]
        for p in panels:
            if p.map is None:
                cells.append((None, panel_title(p.method, p.options) + "\nn/a", p.note))
                continue
            if p.method.kind == "pixel":
                pic = to_uint8_gradient(np.asarray(p.map))
            else:
                pic = overlay(img, np.asarray(p.map), alpha, cmap)
            cells.append((pic, panel_title(p.method, p.options), ""))
        for i, (pic, text, note) in enumerate(cells):
            ax = axes[row + i // columns, i % columns]
            if pic is None:  # the method failed on this model: its message instead of a map
                ax.text(0.5, 0.5, textwrap.fill(note[:200], 28), ha="center", va="center",
                        fontsize=6, transform=ax.transAxes)
            else:
                ax.imshow(pic, interpolation="nearest")
            ax.set_title(text, fontsize=8, fontweight="bold" if i == 0 else "normal")
        row += n_lines
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
