"""Model files: ``minicnn.load(path)`` rebuilds what ``model.save(path)`` wrote.

    meta = {"format": "minicnn", "version": 1, "architecture": model.config(),
            "class_names": [...] | None, "dtype": "float32" | ..., "input_size": [H, W] | None,
            "preprocess": {"mean": [...], "std": [...], "crop": f | None, "resample": s} | None}
    model = from_config(meta["architecture"]); model.load_state_dict(arrays); metadata set

The file is read by ``minicnn.io.load_arrays`` (no pickle, bounded sizes; every bad file is one
``WeightFileError``). A file is not trusted: its architecture is checked in full
(``minicnn.architecture.check_architecture``: argument types and ranges, nesting, and at most
``MAX_PARAMETERS`` numbers, counted before anything is allocated), and weights holding NaN or
inf are refused, naming the parameter (they would give NaN logits and all-NaN heatmaps).
Files written before ``input_size`` and ``preprocess`` existed (the shipped shapes weights)
load with both None.
"""

from __future__ import annotations

import os

import numpy as np

from . import io
from .architecture import check_architecture
from .io import WeightFileError, short_repr
from .model import from_config
from .preprocess import Preprocess

FLOAT_DTYPES = ("float16", "float32", "float64")  # what a model file's "dtype" may name
MAX_INPUT_SIDE = 4096  # largest side of a model file's "input_size"


def load(path, device="numpy"):
    """Rebuild a model saved by ``model.save(path)``: ``from_config`` + ``load_state_dict``,
    then its class names, input size and preprocessing.

    The model is returned in eval mode (inference is what a loaded file is for; call
    ``model.train()`` to fine-tune), on ``device``.

    Raises
    ------
    WeightFileError
        one line naming the file: any bad file (see ``io.load_arrays``), a foreign format or
        newer version, an architecture ``check_architecture`` refuses (naming the layer),
        weights that do not fit it or hold NaN/inf (naming the parameter), or metadata
        that are not what ``save`` writes (naming the key).
    """
    name = os.fspath(path)
    arrays, meta = io.load_arrays(name)
    if meta.get("format") != io.FORMAT:
        raise WeightFileError(f"{name}: format {short_repr(meta.get('format'))} is not "
                              f"{io.FORMAT!r}")
    if not isinstance(meta.get("version"), int) or meta["version"] > io.VERSION:
        raise WeightFileError(f"{name}: format version {short_repr(meta.get('version'))} is "
                              f"not supported (this minicnn reads version <= {io.VERSION})")
    if "architecture" not in meta:
        raise WeightFileError(f"{name}: metadata has no 'architecture'")
    try:
        shapes = check_architecture(meta["architecture"])
    except ValueError as e:
        raise WeightFileError(f"{name}: bad architecture: {e}") from None
    _check_shapes(arrays, shapes, name)
    dtype = meta.get("dtype")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise WeightFileError(f"{name}: bad metadata 'dtype' (must be null or one of "
                              f"{', '.join(FLOAT_DTYPES)}, got {short_repr(dtype)})")
    refuse_non_finite(arrays, name)
    try:
        model = from_config(meta["architecture"])
        if dtype:
            model.astype(dtype)
        model.load_state_dict(arrays)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        raise WeightFileError(f"{name}: {msg}") from None
    set_metadata(model, meta, name)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _check_shapes(arrays, shapes, name):
    """The arrays must be what the architecture holds, key for key and shape for shape (checked
    BEFORE the model is built: a crafted architecture cannot make building allocate more)."""
    missing = [k for k in shapes if k not in arrays]
    unexpected = [k for k in arrays if k not in shapes]
    if missing or unexpected:
        raise WeightFileError(f"{name}: the arrays do not match the architecture: missing "
                              f"{short_repr(missing)}, unexpected {short_repr(unexpected)}")
    for k, shape in shapes.items():
        if tuple(arrays[k].shape) != shape:
            raise WeightFileError(f"{name}: {k} has shape {tuple(arrays[k].shape)}, the "
                                  f"architecture says {shape}")


def refuse_non_finite(arrays, name):
    """Raise ``WeightFileError`` naming the first floating array that holds NaN or inf."""
    for key, a in arrays.items():
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise WeightFileError(f"{name}: parameter {key!r:.80} holds {bad} non-finite "
                                  f"value(s) (NaN or inf); refusing weights that give NaN outputs")


def _class_names(v):
    if v is not None and not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
        raise ValueError(f"must be null or a list of strings, got {short_repr(v)}")
    return v


def _input_size(v):
    if v is not None and not (isinstance(v, list) and len(v) == 2 and all(
            type(n) is int and 1 <= n <= MAX_INPUT_SIDE for n in v)):  # NOTE: not bool
        raise ValueError(f"must be null or [H, W], positive integers <= {MAX_INPUT_SIDE}, "
                         f"got {short_repr(v)}")
    return v


def set_metadata(model, meta, name="metadata"):
    """Set ``class_names``, ``input_size`` and ``preprocess`` from a file's ``meta`` dict
    (absent keys: None); anything else is a ``WeightFileError`` naming the key."""
    for key, read in (("class_names", _class_names), ("input_size", _input_size),
                      ("preprocess", lambda v: None if v is None else Preprocess.from_json(v))):
        value = meta.get(key)
        try:
            setattr(model, key, read(value))
        except (TypeError, ValueError) as e:
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise WeightFileError(f"{name}: bad metadata {key!r} ({first})") from None
    return model
