"""What a model file's ``architecture`` may say, checked in full before any layer is built.

    shapes = check_architecture(cfg)   # {"conv1.weight": (16, 3, 3, 3), ...}: what it holds

``model.config()`` writes the dict and ``minicnn.load`` rebuilds it with ``from_config``; a
file is not trusted, so ``minicnn.load`` calls this first, and nothing is built unless every
layer is what ``config()`` writes:

    {"type": "Sequential" | "Residual", "layers": [[name, cfg], ...]}
    {"type": "Conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": [3, 3], ...}

Each argument is checked for its type and range (a channel count of -3, "3" or 3.5 is refused
here, with the layer's name, not deep inside a constructor), containers may nest at most
``MAX_DEPTH`` deep (the walk itself is a loop, not a recursion), and the shapes of all weights
are worked out from the arguments BEFORE any array exists: at most ``MAX_PARAMETERS`` numbers
(2**28, 1 GiB as float32; VGG16 holds 138 M), so a crafted file cannot ask for hundreds of GB;
``minicnn.load`` then builds the model only if the file's arrays have exactly these shapes
(so building allocates no more than the file's own arrays hold).
Kernel sizes, strides, dilations and pooled sizes are at most ``MAX_EXTENT`` (256), paddings
at most ``MAX_PADDING`` (64): a forward pass of a loaded model cannot be made to allocate GB.
"""

from __future__ import annotations

import math
import numbers

from .io import short_repr

MAX_DEPTH = 32  # containers inside containers (EfficientNet-Lite0 needs 3)
MAX_LAYERS = 100_000  # layers in one model, containers included
MAX_PARAMETERS = 2 ** 28  # numbers in all weights and buffers together
MAX_EXTENT = 256  # largest kernel size, stride, dilation or pooled size
MAX_PADDING = 64  # largest padding: a crafted 4096 would make every forward allocate GB


class ArchitectureError(ValueError):
    """An architecture dict that ``from_config`` must not build (one line naming the layer)."""


def _int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _count(v):
    if not _int(v) or v < 1:
        return "must be a positive integer"
    return None


def _extents(v, lengths=(2,), low=1, high=MAX_EXTENT):
    """An int, or a list of ``lengths`` ints, each in [low, high]."""
    items = [v] if _int(v) else v
    if not isinstance(items, (list, tuple)) or (not _int(v) and len(items) not in lengths) or \
            not all(_int(t) and low <= t <= high for t in items):
        sizes = " or ".join(str(n) for n in lengths)
        return f"must be an integer in [{low}, {high}] or a list of {sizes} of them"
    return None


def _pair(v):
    return _extents(v)


def _conv_padding(v):
    if isinstance(v, str):
        return None if v in ("same", "valid") else "must be an integer, a list, 'same' or 'valid'"
    return _extents(v, (2, 4), low=0, high=MAX_PADDING)


def _pool_padding(v):
    return _extents(v, (2,), low=0, high=MAX_PADDING)


def _optional_pair(v):
    return None if v is None else _pair(v)


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _probability(v):
    return None if _real(v) and 0 <= v < 1 else "must be a number in [0, 1)"


def _seed(v):
    return None if v is None or (_int(v) and v >= 0) else "must be null or an integer >= 0"


def _eps(v):
    return None if _real(v) and v > 0 else "must be a finite number > 0"


def _momentum(v):
    return None if _real(v) and 0 <= v <= 1 else "must be a number in [0, 1]"


# type -> (required arguments, optional arguments), each name -> check (None: fine, else why)
LAYER_ARGUMENTS = {
    "Conv2d": ({"in_channels": _count, "out_channels": _count, "kernel_size": _pair},
               {"stride": _pair, "padding": _conv_padding, "dilation": _pair, "groups": _count,
                "bias": _bool}),
    "Linear": ({"in_features": _count, "out_features": _count}, {"bias": _bool}),
    "ReLU": ({}, {}), "ReLU6": ({}, {}), "GlobalAvgPool2d": ({}, {}), "Flatten": ({}, {}),
    "MaxPool2d": ({"kernel_size": _pair}, {"stride": _optional_pair, "padding": _pool_padding}),
    "AvgPool2d": ({"kernel_size": _pair}, {"stride": _optional_pair, "padding": _pool_padding}),
    "AdaptiveAvgPool2d": ({"output_size": _pair}, {}),
    "Dropout": ({}, {"p": _probability, "seed": _seed}),
    "BatchNorm2d": ({"num_features": _count}, {"eps": _eps, "momentum": _momentum}),
}
CONTAINERS = ("Sequential", "Residual")


def _shapes(kind, c):
    """The shapes of a checked layer config's weights and buffers, by their state-dict names."""
    if kind == "Conv2d":
        k = c["kernel_size"]
        kh, kw = (k, k) if _int(k) else k
        n_in, n_out, groups = c["in_channels"], c["out_channels"], c.get("groups", 1)
        if n_in % groups or n_out % groups:
            raise ArchitectureError(f"in_channels {n_in} and out_channels {n_out} must be "
                                    f"divisible by groups {groups}")
        bias = {"bias": (n_out,)} if c.get("bias", True) else {}
        return {"weight": (n_out, n_in // groups, kh, kw), **bias}
    if kind == "Linear":
        bias = {"bias": (c["out_features"],)} if c.get("bias", True) else {}
        return {"weight": (c["out_features"], c["in_features"]), **bias}
    if kind == "BatchNorm2d":
        return dict.fromkeys(("weight", "bias", "running_mean", "running_var"),
                             (c["num_features"],))
    return {}


def _check_layer(kind, c):
    """The shapes one (non-container) layer config holds; ArchitectureError if it is bad."""
    if not isinstance(kind, str) or kind not in LAYER_ARGUMENTS:
        raise ArchitectureError(f"unknown layer type {short_repr(kind)}; known: "
                                f"{', '.join(CONTAINERS + tuple(LAYER_ARGUMENTS))}")
    required, optional = LAYER_ARGUMENTS[kind]
    args = {k: v for k, v in c.items() if k != "type"}
    missing = [k for k in required if k not in args]
    if missing:
        raise ArchitectureError(f"{kind} needs {', '.join(missing)}")
    for key, value in args.items():
        check = required.get(key) or optional.get(key)
        if check is None:
            raise ArchitectureError(f"{kind} takes no argument {short_repr(key)}")
        why = check(value)
        if why:
            raise ArchitectureError(f"{kind} {key} {why}, got {short_repr(value)}")
    return _shapes(kind, c)


def _children(c):
    """The (name, config) pairs of a container config, checked for form."""
    layers = c.get("layers")
    if set(c) != {"type", "layers"} or not isinstance(layers, list):
        raise ArchitectureError(f"{c['type']} needs exactly 'layers', a list of [name, layer]")
    seen = set()
    for item in layers:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict)):
            raise ArchitectureError(f"a layer entry must be [name, {{...}}], got "
                                    f"{short_repr(item)}")
        name = item[0]
        if not name or "." in name or name in seen:
            raise ArchitectureError(f"layer names must be unique, non-empty and dot-free: "
                                    f"{short_repr(name)}")
        seen.add(name)
    return layers


def check_architecture(cfg):
    """Check an architecture dict (``model.config()``'s form) before ``from_config`` builds it,
    and say what its state dict will hold.

    n = sum over the shapes of prod(shape)   (n <= MAX_PARAMETERS)

    Parameters
    ----------
    cfg : the decoded JSON of a model file's ``architecture``
    Returns
    -------
    shapes : dict state-dict key ("features.0.weight") -> shape tuple, in the order of the
        built model's ``state_dict()``
    Raises
    ------
    ArchitectureError (a ValueError): one line naming the layer and what is wrong with it
    """
    if not isinstance(cfg, dict) or cfg.get("type") not in CONTAINERS:
        raise ArchitectureError(f"architecture must be a Sequential or Residual object, got "
                                f"{short_repr(cfg)}")
    shapes, total, count = {}, 0, 0
    stack = [("", cfg, 1)]  # NOTE: a loop, not a recursion: depth is checked, never exhausted
    while stack:
        where, c, depth = stack.pop()
        count += 1
        if count > MAX_LAYERS:
            raise ArchitectureError(f"more than {MAX_LAYERS} layers")
        try:
            if not isinstance(c, dict):
                raise ArchitectureError(f"a layer must be a JSON object, got {short_repr(c)}")
            kind = c.get("type")
            if kind in CONTAINERS:
                if depth > MAX_DEPTH:
                    raise ArchitectureError(f"containers nest deeper than {MAX_DEPTH}")
                stack += [((where + "." if where else "") + n, sub, depth + 1)
                          for n, sub in reversed(_children(c))]
                continue
            own = _check_layer(kind, c)
        except ArchitectureError as e:
            raise ArchitectureError(f"layer {where!r}: {e}" if where else str(e)) from None
        shapes.update((f"{where}.{k}", shape) for k, shape in own.items())
        total += sum(math.prod(shape) for shape in own.values())
        if total > MAX_PARAMETERS:
            raise ArchitectureError(
                f"layer {where!r} takes the model to {total} numbers, over the limit of "
                f"{MAX_PARAMETERS} (minicnn.architecture.MAX_PARAMETERS); nothing was allocated")
    return shapes
