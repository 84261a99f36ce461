"""Weights from PyTorch: a torch ``state_dict`` (or an ``.npz``/``.pth`` file of one) into a model.

    from minicnn import torch_import, zoo
    model = torch_import.load_torch_weights(zoo.vgg16(), tv_model.state_dict())   # torch tensors
    torch_import.save_npz(tv_model.state_dict(), "vgg16.npz")      # once, where torch is installed
    model = torch_import.load_torch_weights(zoo.vgg16(), "vgg16.npz")   # later, without torch
    model = torch_import.load_torch_weights(zoo.efficientnet_lite0(), "lite0.pth")  # no torch

Why the keys carry over unchanged: minicnn stores parameters in PyTorch's layouts (conv weight
(out, in/groups, kh, kw), linear weight (out, in), 1-D biases, BatchNorm ``weight``, ``bias``,
``running_mean``, ``running_var``) under PyTorch-style dotted names, and the zoo's
architectures are named after the torch models whose weights they take: torchvision's VGG
(``features.N``, ``classifier.N``) and the EfficientNet-Lite0 ``.pth`` file (``_conv_stem``,
``_blocks.N._depthwise_conv``, ...). Any ``Sequential`` whose layer names match a torch
module's attribute names takes its state dict the same way. Importing is therefore:

    1. tensors -> NumPy arrays (``t.detach().cpu().numpy()``; bfloat16 via float32)
    2. drop what minicnn does not keep: BatchNorm's ``num_batches_tracked`` step counters
       (read only by torch's ``momentum=None`` training mode, never in eval)
    3. rename, if asked (``key_map``), and strip a ``module.`` prefix left by DataParallel
    4. check EVERY key, shape, dtype and value (NaN/inf refused) against the model and report
       all problems at once
    5. copy (``Sequential.load_state_dict``: cast to the model's dtype, nothing changed unless
       every entry is valid)

torch itself is never imported here: tensors are recognised by their methods, ``.npz`` files
are read with ``allow_pickle=False`` and ``.pth`` files with ``minicnn.pth`` (a restricted
unpickler that runs no code from the file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .io import META_KEY, WeightFileError, atomic_write, read_npz, short_repr

DROPPED_SUFFIXES = (".num_batches_tracked",)  # torch buffers minicnn does not keep
PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
MAX_LISTED = 8  # keys named per kind of problem in an error message


class StateDictMismatch(KeyError, ValueError):
    """A state dict that does not fit the model (missing/unexpected keys, wrong shapes).

    Subclasses both KeyError (what ``load_state_dict`` raises for keys) and ValueError (for
    shapes), so callers can catch either. ``problems`` holds the structured report.
    """

    def __init__(self, message, problems=None):
        super().__init__(message)
        self.problems = problems or {}

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- reading
def tensor_to_numpy(t):
    """One tensor (torch, or anything array-like) as a host NumPy array, copied.

    Recognises torch tensors by ``detach``/``cpu`` (torch is not imported); a bfloat16 tensor,
    which NumPy cannot represent, goes through float32.
    """
    if hasattr(t, "detach") and hasattr(t, "cpu"):
        t = t.detach().cpu()
        try:
            return np.array(t.numpy(), copy=True)
        except TypeError:  # NOTE: bfloat16 (and other torch-only dtypes) have no NumPy twin
            return np.array(t.float().numpy(), copy=True)
    return np.array(t, copy=True)


def _is_tensor(v):
    """A torch tensor (recognised by its methods; torch is not imported) or a NumPy array."""
    return isinstance(v, np.ndarray) or (hasattr(v, "detach") and hasattr(v, "cpu"))


def _from_mapping(state, path=None):
    """Arrays from a state dict (of the file ``path``: errors are WeightFileErrors naming it)."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # a training checkpoint {"state_dict": ..., "epoch": ...}
    for k, v in state.items():
        # NOTE: np.array would turn a list (or a number) into an array; a weight file that
        # holds one where a tensor belongs is refused, not guessed at
        if not _is_tensor(v):
            why = (f"entry {short_repr(k)} is a {type(v).__name__}, not a tensor; a state dict "
                   "holds tensors only")
            raise WeightFileError(f"{path}: {why}") if path else TypeError(why)
    return {str(k): tensor_to_numpy(v) for k, v in state.items()}


def read_state(source):
    """A state dict from a mapping (torch tensors or arrays) or a file, as NumPy arrays.

    Parameters
    ----------
    source : Mapping key -> tensor/array; or the path of an ``.npz`` (e.g. written by
        ``save_npz``; a minicnn ``__meta__`` entry is ignored) or of a PyTorch ``.pth``/``.pt``
        file (read by ``minicnn.pth.load_pth``, without torch and without running its pickle)
    Returns
    -------
    dict key -> np.ndarray, in the source's order
    """
    if isinstance(source, Mapping):
        return _from_mapping(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected a state dict or a file path, got {type(source).__name__}")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    lower = path.lower()
    if lower.endswith(".npz"):  # bounded, pickle-free reading (minicnn.io.read_npz)
        return {k: v for k, v in read_npz(path).items() if k != META_KEY}
    if lower.endswith(PTH_SUFFIXES):
        from .pth import load_pth

        obj = load_pth(path)
        if not isinstance(obj, Mapping):
            raise WeightFileError(f"{path}: holds a {type(obj).__name__}, not a state dict; "
                                  "save model.state_dict(), not the model object")
        return _from_mapping(obj, path)
    raise ValueError(f"{path}: unknown weight file type; use .npz (torch_import.save_npz) or "
                     f"a PyTorch {'/'.join(PTH_SUFFIXES)} file")


def save_npz(state_dict, path):
    """Write a torch state dict to an ``.npz`` (atomically), so it loads without torch.

    Run once where torch is installed: ``save_npz(model.state_dict(), "weights.npz")``.
    Keys are kept as they are (``num_batches_tracked`` included; ``load_torch_weights``
    drops it).
    """
    arrays = read_state(state_dict) if isinstance(state_dict, Mapping) else None
    if arrays is None:
        raise TypeError(f"expected a state dict, got {type(state_dict).__name__}")
    if META_KEY in arrays:
        raise ValueError(f"key {META_KEY!r} is reserved")
    atomic_write(os.fspath(path), lambda f: np.savez(f, **arrays))
    return os.fspath(path)


# --------------------------------------------------------------------------- renaming, checking
def _rename(state, key_map):
    """Drop torch-only buffers, strip a DataParallel ``module.`` prefix, apply ``key_map``."""
    keys = [k for k in state if not k.endswith(DROPPED_SUFFIXES)]
    if keys and all(k.startswith("module.") for k in keys):
        keys_out = [k[len("module."):] for k in keys]
    else:
        keys_out = list(keys)
    out = {}
    for k_in, k in zip(keys, keys_out):
        if callable(key_map):
            k = key_map(k)
        elif key_map is not None:
            k = key_map.get(k, k)
        if k is None:  # key_map says: drop this entry
            continue
        if k in out:
            raise StateDictMismatch(f"two entries map onto the key {k!r} (key_map collision)")
        out[k] = state[k_in]
    return out


def check_state(model, state):
    """Every problem of ``state`` against ``model``, without changing anything.

    Returns
    -------
    dict with lists "missing" (model keys absent from state), "unexpected" (state keys the
    model lacks), "shape" ((key, state shape, model shape)) and "dtype" ((key, dtype)) for
    non-floating arrays, "non-finite" ((key, count)) for arrays holding NaN or inf (they would
    give NaN logits). All lists empty means the state loads.
    """
    own = model.state_dict()
    problems = {"missing": [k for k in own if k not in state],
                "unexpected": [k for k in state if k not in own], "shape": [], "dtype": [],
                "non-finite": []}
    for k, v in state.items():
        if k not in own:
            continue
        if tuple(v.shape) != tuple(own[k].shape):
            problems["shape"].append((k, tuple(v.shape), tuple(own[k].shape)))
        elif np.dtype(v.dtype).kind != "f":
            problems["dtype"].append((k, str(v.dtype)))
        elif not np.isfinite(v).all():
            problems["non-finite"].append((k, int(v.size - np.count_nonzero(np.isfinite(v)))))
    return problems


def _names(keys):
    more = f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def _prefix_hint(missing, unexpected):
    """If the file's keys are the model's with a prefix added or removed, say which prefix."""
    if not missing or len(missing) != len(unexpected):
        return ""
    for longer, shorter, side in ((unexpected, missing, "file"), (missing, unexpected, "model")):
        cands = {longer[0][: -len(s)] for s in shorter if longer[0].endswith(s) and longer[0] != s}
        for prefix in cands:
            if sorted(k[len(prefix):] for k in longer if k.startswith(prefix)) == sorted(shorter):
                fix = (f"key_map=lambda k: k.removeprefix({prefix!r})" if side == "file"
                       else f"key_map=lambda k: {prefix!r} + k")
                return f"; every {side} key has the extra prefix {prefix!r}: pass {fix}"
    return ""


def describe(problems):
    """One line naming every kind of problem in ``check_state``'s report ("" if none)."""
    parts = []
    if problems["missing"]:
        parts.append(f"{len(problems['missing'])} model keys missing from the state dict "
                     f"({_names(problems['missing'])})")
    if problems["unexpected"]:
        parts.append(f"{len(problems['unexpected'])} unexpected keys "
                     f"({_names(problems['unexpected'])})")
    if problems["shape"]:
        shown = [f"{k}: file {s} vs model {m}" for k, s, m in problems["shape"]]
        parts.append(f"{len(shown)} wrong shapes ({_names(shown)})")
    if problems["dtype"]:
        shown = [f"{k}: {d}" for k, d in problems["dtype"]]
        parts.append(f"{len(shown)} non-floating arrays ({_names(shown)})")
    if problems["non-finite"]:
        shown = [f"{k}: {n} NaN/inf" for k, n in problems["non-finite"]]
        parts.append(f"{len(shown)} arrays with non-finite values ({_names(shown)})")
    return "; ".join(parts) + _prefix_hint(problems["missing"], problems["unexpected"])


def load_torch_weights(model, source, key_map=None, strict=True):
    """Load a PyTorch state dict (mapping, ``.npz`` or ``.pth``) into ``model``; return it.

    Parameters
    ----------
    model : minicnn.Sequential whose layer names match the torch module's (see module docstring)
    source : see ``read_state``
    key_map : None; a dict torch key -> model key (unlisted keys kept); or a callable
        key -> model key, or None to drop the entry. Applied after the ``module.`` prefix of
        DataParallel is stripped and ``num_batches_tracked`` dropped.
    strict : True: every model key must be present and no other key may be (as torch's
        ``load_state_dict``). False: load the keys both sides have; shapes must still match.
    Returns
    -------
    model, with the weights cast to its dtype (call ``model.astype("float64")`` first for
    float64 cross-checks)
    Raises
    ------
    StateDictMismatch (a KeyError and a ValueError): one message listing every missing,
    unexpected and mis-shaped key, non-floating and non-finite (NaN/inf) array; nothing is
    loaded then. WeightFileError (a ValueError): an unreadable file, or an entry that is not
    a tensor (a list smuggled in as a weight).
    """
    state = _rename(read_state(source), key_map)
    problems = check_state(model, state)
    if not strict:
        problems["missing"], problems["unexpected"] = [], []
        state = {k: v for k, v in state.items() if k in model.state_dict()}
    if any(problems.values()):
        raise StateDictMismatch(f"state dict does not fit the model: {describe(problems)}",
                                problems)
    model.load_state_dict(state, strict=strict)
    return model
