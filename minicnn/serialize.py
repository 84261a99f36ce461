"""Model files: ``minicnn.load(path)`` rebuilds what ``model.save(path)`` wrote.

    meta = {"format": "minicnn", "version": 1, "architecture": model.config(),
            "class_names": [...] | None, "dtype": "float32" | ..., "input_size": [H, W] | None,
            "preprocess": {"mean": [...], "std": [...], "crop": f | None, "resample": s} | None}
    model = from_config(meta["architecture"]); model.load_state_dict(arrays); metadata set

The file is read by ``minicnn.io.load_arrays`` (no pickle; every bad file is one
``WeightFileError``). Files written before ``input_size`` and ``preprocess`` existed (the
shipped shapes weights) load with both None.
"""

from __future__ import annotations

import os

from . import io
from .io import WeightFileError
from .model import from_config
from .preprocess import Preprocess


def load(path, device="numpy"):
    """Rebuild a model saved by ``model.save(path)``: ``from_config`` + ``load_state_dict``,
    then its class names, input size and preprocessing.

    The model is returned in eval mode (inference is what a loaded file is for; call
    ``model.train()`` to fine-tune), on ``device``.

    Raises
    ------
    WeightFileError
        one line naming the file: any bad file (see ``io.load_arrays``), a foreign format or
        newer version, an unknown architecture, weights that do not fit it (naming the
        layer), or metadata that are not what ``save`` writes (naming the key).
    """
    name = os.fspath(path)
    arrays, meta = io.load_arrays(name)
    if meta.get("format") != io.FORMAT:
        raise WeightFileError(f"{name}: format {meta.get('format')!r} is not {io.FORMAT!r}")
    if not isinstance(meta.get("version"), int) or meta["version"] > io.VERSION:
        raise WeightFileError(f"{name}: format version {meta.get('version')!r} is not supported "
                              f"(this minicnn reads version <= {io.VERSION})")
    if "architecture" not in meta:
        raise WeightFileError(f"{name}: metadata has no 'architecture'")
    try:
        model = from_config(meta["architecture"])
        if meta.get("dtype"):
            model.astype(meta["dtype"])
        model.load_state_dict(arrays)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        raise WeightFileError(f"{name}: {msg}") from None
    set_metadata(model, meta, name)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def set_metadata(model, meta, name="metadata"):
    """Set ``class_names``, ``input_size`` and ``preprocess`` from a file's ``meta`` dict
    (absent keys: None); anything else is a ``WeightFileError`` naming the key."""
    for key, read in (("class_names", lambda v: v), ("input_size", lambda v: v),
                      ("preprocess", lambda v: None if v is None else Preprocess.from_json(v))):
        value = meta.get(key)
        try:
            setattr(model, key, read(value))
        except (TypeError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WeightFileError(f"{name}: bad metadata {key!r} ({first})") from None
    return model
