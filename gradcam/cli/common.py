"""What every ``gradcam`` subcommand shares: the parser class, the one-line error policy, the ONE
place a model spec becomes a model, the input size, the list of methods, and safe writing.

NOTE: subcommands call ``common.resolve_model`` and ``common.save_npz`` through this module
(not ``from .common import ...``), so a test can monkeypatch them in one place.
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np

ERROR_STATUS = 1  # a runtime error; a subcommand may set its own (``compare``: 3)
USAGE_STATUS = 2  # a bad option or argument (argparse); a subcommand may set its own
MAX_SIDE = 1024  # --size: each side of the model input at most this (memory bounded up front)
DEFAULT_SIZE = (64, 64)  # input size of a model that carries none
DISPLAY_MAX_SIDE = 512  # overlays are drawn on the original image shrunk to this long side


class CLIError(ValueError):
    """A runtime error of the command line: reported as one line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"gradcam: error: {message} (see '{self.prog} --help')\n")


def one_line(e):
    """An exception as the one line after ``gradcam: error:`` (a KeyError without its quotes)."""
    msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else e
    text = " ".join(s.strip() for s in str(msg).splitlines() if s.strip())
    return text or type(e).__name__


# --------------------------------------------------------------------------- models
def resolve_model(spec, weights=None, pretrained=True):
    """The model ``spec`` names (``minicnn.zoo.resolve_model``: a zoo name or a model file, and
    with ``weights`` a state dict for a zoo architecture).

    NOTE: every subcommand gets its model through this one function, so a test can monkeypatch it.
    """
    from minicnn import zoo

    return zoo.resolve_model(spec, weights, pretrained)


def input_size(model, size=None):
    """(H, W) of the model input: ``--size`` if given, else the model's own ``input_size``
    (saved in its file), else 64 x 64; each side at most MAX_SIDE (a model file's size too)."""
    hw = tuple(size) if size else tuple(model.input_size or DEFAULT_SIZE)
    if not all(1 <= int(v) <= MAX_SIDE for v in hw):
        raise CLIError(f"input size {hw[0]}x{hw[1]}: each side must be 1..{MAX_SIDE} "
                       "(give --size H W)")
    return hw


def input_channels(model):
    """Channels the model expects: those of the first 4-D (conv) weight; 3 if there is none."""
    for _, lay in model.named_layers():
        w = lay.params.get("weight")
        if w is not None and w.ndim == 4:
            return int(w.shape[1])
    return 3


def image_mode(model):
    """The Pillow mode the model's input is read in: "L" for one channel, else "RGB"."""
    return "L" if input_channels(model) == 1 else "RGB"


def cam_layer(model):
    """The layer CAM explains (the input of the GAP), or None if the model has no CAM head."""
    from ..core import cam_head

    try:
        return cam_head(model)[0]
    except ValueError:
        return None


def logits(model, x):
    """The model's logits for ``x`` in eval mode, as float64 NumPy."""
    from ..core import eval_mode

    with eval_mode(model):
        return np.asarray(model.forward(x), dtype=np.float64)


# --------------------------------------------------------------------------- methods
def methods():
    """The methods of the command line: ``gradcam.methods()``, the registry (name -> Method,
    with ``.title`` and ``.kind``: "pixel" maps are drawn as images, the others as overlays)."""
    from ..registry import methods as registry

    return registry()


def chosen(names, model=None, layer=None):
    """The registry entries ``names`` asks for ("all" or a list of names, in the registry's
    order for "all"); with ``model``, "all" leaves out CAM-like methods (layer rule "gap-input")
    where they are undefined: no GAP head, or a ``layer`` other than the GAP's input."""
    table = methods()
    if names != "all" and names != ["all"]:
        unknown = [n for n in names if n not in table]
        if unknown:
            raise CLIError(f"unknown method(s) {', '.join(map(repr, unknown))}; methods are: "
                           f"{', '.join(table)} (or all)")
        return [table[n] for n in dict.fromkeys(names)]
    at = None if model is None else cam_layer(model)
    with_cam = model is None or (at is not None and layer in (None, at))
    return [m for m in table.values() if m.layer_rule != "gap-input" or with_cam]


# --------------------------------------------------------------------------- method options
def option_value(text):
    """One ``--option`` value: an int, a float, true/false, none, ``@file.npy`` (an array, e.g.
    an explicit ``noise``), else the text itself."""
    low = text.strip().lower()
    if re.fullmatch(r"[+-]?\d+", low):
        return int(low)
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if text.startswith("@"):
        from ..userfiles import read_array

        try:
            return read_array(text[1:], "--option array", ())
        except ValueError as e:
            raise CLIError(f"--option value {text!r}: {one_line(e)}") from None
    try:
        return float(low)
    except ValueError:
        return text


def parse_options(values):
    """``--option KEY=VALUE`` values (repeatable) -> {KEY: value} (``option_value``)."""
    out = {}
    for v in values or ():
        key, eq, val = v.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise CLIError(f"--option takes KEY=VALUE (e.g. batch_size=64), got {v!r}")
        out[key] = option_value(val)
    return out


def options_for(chosen_methods, options):
    """{method name: its options} for ``explain(..., **options)``. One method gets every
    option (an unknown one is the registry's OptionError, a one-line error); several (``all``)
    get the options each declares, and an option no chosen method declares is an error."""
    from ..registry import method_options

    if len(chosen_methods) == 1:
        m = chosen_methods[0]
        method_options(m, options)  # fail now, before any long run
        return {m.name: dict(options)}
    unused = sorted(set(options) - {k for m in chosen_methods for k in m.options})
    if unused:
        have = sorted({k for m in chosen_methods for k in m.options})
        raise CLIError(f"no chosen method takes option(s) {', '.join(map(repr, unused))}; "
                       f"their options: {', '.join(have) or 'none'}")
    return {m.name: {k: v for k, v in options.items() if k in m.options}
            for m in chosen_methods}


def add_options(parser):
    """The repeatable ``--option KEY=VALUE`` (a method's options, ``Method.options``)."""
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="a method option (repeatable), e.g. batch_size=64, seed=0; values "
                        "are read as int, float, true/false, none, @file.npy or text; with "
                        "several methods each gets the options it declares")


# --------------------------------------------------------------------------- report lines
def class_label(model, c):
    """Class ``c`` by name where the model has names, else "class c"."""
    names = getattr(model, "class_names", None)
    return str(names[c]) if names is not None and c < len(names) else f"class {c}"


def method_line(method, result, label, seconds):
    """The line printed when one method has explained one class: name, title and short
    citation, class, layer, wall time."""
    from ..catalog import short_citation

    where = "whole network" if method.kind == "network" else f"layer {result.layer}"
    return (f"  {method.name:<20} {method.title} ({short_citation(method)}), {label}, "
            f"{where}: {seconds:.2f} s")


def failed_line(method, label, error):
    """The line printed when a method of several could not explain one class (skipped)."""
    from ..catalog import short_citation

    return (f"  {method.name:<20} {method.title} ({short_citation(method)}), {label}: "
            f"n/a: {one_line(error)}")


def safe(text):
    """A class name as a file-name part: letters, digits, '-', '.', '_' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def top(probs, model, k=5):
    """'  1. circle      0.912' lines for the k most probable classes."""
    order = np.argsort(-probs)[:k]
    return [f"  {i + 1}. {class_label(model, c):<12} {probs[c]:.3f}" for i, c in enumerate(order)]


# --------------------------------------------------------------------------- writing
def save_npz(path, arrays):
    """Write ``arrays`` to ``path`` atomically (temp file + rename); return the absolute path."""
    from minicnn.io import atomic_write

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def write_all(jobs):
    """Run ``(path, write_fn)`` jobs in order; if one fails, remove what this run wrote.
    Returns the paths written."""
    done = []
    try:
        for path, write in jobs:
            done.append(write(path))
    except BaseException:
        for p in done:
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    return done


def print_written(paths):
    """The "wrote:" block: one absolute path a line."""
    print("wrote:")
    print("\n".join(f"  {p}" for p in paths))


# --------------------------------------------------------------------------- option types
def unit_float(text):
    """argparse type: a number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {v}")
    return v


def positive_int(text):
    """argparse type: an integer >= 1 (digits only)."""
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def seed_int(text):
    """argparse type: a seed, an integer >= 0 (what ``numpy.random.default_rng`` takes).

    NOTE: argparse puts the option's name before the message ("argument --seed: ...")."""
    if not re.fullmatch(r"\+?\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def side_int(text):
    """argparse type: one side of ``--size``, an integer in [1, MAX_SIDE]: a 30000 x 30000
    input would need tens of GB per activation, so it is refused before any allocation."""
    v = positive_int(text)
    if v > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SIDE} pixels a side, got {v}")
    return v


def tolerance(text):
    """argparse type: ``--tol``, a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def colormap(name):
    """argparse type: the name of a matplotlib colormap."""
    import matplotlib

    if name not in matplotlib.colormaps:
        raise argparse.ArgumentTypeError(f"unknown colormap {name!r} (see matplotlib.colormaps)")
    return name


def add_model(parser):
    """The required ``--model NAME_OR_PATH`` option."""
    parser.add_argument("--model", required=True, help="zoo name or model file")


def add_size(parser, text="model input size (default: the one saved with the model, else 64 64)"):
    """The ``--size H W`` option (two integers in [1, MAX_SIDE])."""
    parser.add_argument("--size", nargs=2, type=side_int, metavar=("H", "W"),
                        help=f"{text}; each side 1..{MAX_SIDE}")
