"""Weight files: ``.npz`` archives read without pickle, written atomically.

A weight file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding the
model's ``state_dict()`` entries plus one extra entry, ``"__meta__"``: a uint8 array
of UTF-8 JSON (for a model: ``model.file_meta()``, the architecture, dtype, class names,
input size and preprocessing). ``minicnn.load`` (``minicnn.serialize``) rebuilds the model
from that JSON, so no code is unpickled:

    file = { "conv1.weight": ndarray, ..., "__meta__": uint8[utf8(json(meta))] }

This module holds the file primitives only (it knows no model): ``atomic_write``,
``save_arrays``, ``load_arrays`` and ``WeightFileError``.

Two guarantees:

- nothing half-written ever appears at the target path: data go to a temporary file
  in the same directory, are flushed and fsync'ed, then ``os.replace``-d (atomic on
  POSIX and Windows when both paths are on one file system);
- every way a file can be bad (missing, not a zip, truncated, pickled objects, no or
  broken metadata) raises one ``WeightFileError`` with a one-line message naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import tempfiles
from .backend import to_numpy

META_KEY = "__meta__"
FORMAT = "minicnn"
VERSION = 1


def _read_umask():
    mask = os.umask(0)  # the only portable way to read it: set, then restore at once
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class WeightFileError(ValueError):
    """A weight or checkpoint file is missing, corrupt, unsafe or not in minicnn's format."""


def atomic_write(path, write_fn):
    """Call ``write_fn(f)`` on a binary temp file, then atomically move it to ``path``.

    temp = NamedTemporaryFile(dir=dirname(path)); write_fn(temp); fsync(temp); replace(temp, path)

    Parameters
    ----------
    path : str or os.PathLike, the final file name (used exactly; no suffix is added)
    write_fn : callable taking a writable binary file object

    On any exception the temp file is removed and the exception re-raised; ``path``
    keeps its old contents (or stays absent). Temp files of ``path`` left by writers that
    were killed are removed first (``minicnn.tempfiles``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tempfiles.remove_stale(path)  # what killed writers of this same target left behind
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=directory,
                                      prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    held = None
    try:
        held = tempfiles.hold(tmp.name)  # live until renamed: see minicnn.tempfiles
        with tmp as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes them visible
        # NOTE: NamedTemporaryFile creates mode 0600; give the result the usual umask mode.
        os.chmod(tmp.name, 0o666 & ~_UMASK)
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        raise
    finally:
        tempfiles.release(held)
    _fsync_dir(directory)


def _fsync_dir(directory):
    """Best effort: persist the rename itself (POSIX only; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_arrays(path, arrays, meta):
    """Write ``arrays`` and JSON ``meta`` to an ``.npz`` at ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    arrays : dict str -> array (NumPy or CuPy; copied to the host)
    meta : JSON-serialisable dict, stored as uint8 UTF-8 bytes under ``"__meta__"``
    """
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved for the metadata")
    host = {}
    for k, a in arrays.items():
        a = to_numpy(a)
        if a.dtype == object:
            raise ValueError(f"array {k!r} has dtype object; weight files hold numeric arrays only")
        host[k] = a
    blob = json.dumps(meta, allow_nan=False).encode("utf-8")
    host[META_KEY] = np.frombuffer(blob, dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **host))


def load_arrays(path):
    """Read an ``.npz`` written by :func:`save_arrays`, refusing anything pickled.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    arrays : dict str -> host ndarray (without ``"__meta__"``)
    meta : dict, the decoded JSON

    Raises
    ------
    WeightFileError
        missing file, not an npz/zip, truncated or corrupt archive, pickled or object
        arrays, missing or invalid ``__meta__``.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise WeightFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise WeightFileError(f"{name}: is a directory, not a weight file") from None
    except OSError as e:
        raise WeightFileError(f"{name}: cannot read ({e.strerror or e})") from None
    if head[:2] != b"PK":  # every zip (and so every .npz) starts with a "PK" record
        what = "a single .npy array" if head == b"\x93NUM" else "not a zip archive"
        raise WeightFileError(f"{name}: not an .npz weight file ({what})")
    arrays = {}
    try:
        with np.load(name, allow_pickle=False) as z:
            for k in z.files:
                a = z[k]  # reads and CRC-checks the member now
                if not isinstance(a, np.ndarray):
                    raise WeightFileError(f"{name}: entry {k!r} is not a .npy array")
                arrays[k] = a
    except WeightFileError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in msg.lower() or "object arrays" in msg.lower():
            raise WeightFileError(f"{name}: refusing pickled data ({msg})") from None
        raise WeightFileError(f"{name}: truncated or corrupt .npz ({msg})") from None
    if META_KEY not in arrays:
        raise WeightFileError(f"{name}: no {META_KEY!r} entry; not written by minicnn")
    raw = arrays.pop(META_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise WeightFileError(f"{name}: {META_KEY!r} must be 1-D uint8 JSON bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightFileError(f"{name}: {META_KEY!r} is not valid UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict):
        raise WeightFileError(f"{name}: {META_KEY!r} must be a JSON object")
    return arrays, meta
