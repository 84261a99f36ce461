"""Weight files: ``.npz`` archives read without pickle, written atomically.

A weight file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding the
model's ``state_dict()`` entries plus one extra entry, ``"__meta__"``: a uint8 array
of UTF-8 JSON (for a model: ``model.file_meta()``, the architecture, dtype, class names,
input size and preprocessing). ``minicnn.load`` (``minicnn.serialize``) rebuilds the model
from that JSON, so no code is unpickled:

    file = { "conv1.weight": ndarray, ..., "__meta__": uint8[utf8(json(meta))] }

This module holds the file primitives only (it knows no model): ``atomic_write``,
``save_arrays``, ``load_arrays`` (``read_npz`` + the JSON), ``zip_problem`` (the zip size
limits, shared with ``minicnn.pth``) and ``WeightFileError``.

Two guarantees:

- nothing half-written ever appears at the target path: data go to a temporary file
  in the same directory, are flushed and fsync'ed, then ``os.replace``-d (atomic on
  POSIX and Windows when both paths are on one file system);
- every way a file can be bad (missing, not a zip, truncated, pickled objects, no or
  broken metadata) raises one ``WeightFileError`` with a one-line message naming the file;
- reading never allocates more than the file's declared sizes allow: at most
  ``MAX_ARRAY_BYTES`` (2 GiB) of arrays, no compressed member expanding more than
  ``MAX_DEFLATE_RATIO`` (100) times, every ``.npy`` header matching its member's size,
  all checked before anything is decompressed (``zip_problem``, ``read_npz``).
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import struct
import tempfile
import zipfile
import zlib

import numpy as np

from . import tempfiles
from .backend import to_numpy

META_KEY = "__meta__"
FORMAT = "minicnn"
VERSION = 1
MAX_ARRAY_BYTES = 2 ** 31  # what one weight file's arrays may hold together: 2 GiB
MAX_DEFLATE_RATIO = 100  # how far a compressed member may expand (weights barely compress)


def _read_umask():
    mask = os.umask(0)  # the only portable way to read it: set, then restore at once
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class WeightFileError(ValueError):
    """A weight or checkpoint file is missing, corrupt, unsafe or not in minicnn's format."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def short_repr(v, width=60, bare=False):
    """``repr(v)`` for a message about a file: nesting, lengths and the result cut short (a
    crafted value can be megabytes long, nested 100,000 deep, or contain itself). ``bare``:
    a printable string of at most ``width`` characters is shown as it is, without quotes."""
    if bare and isinstance(v, str) and v.isprintable() and len(v) <= width:
        return v
    try:
        text = _REPR.repr(v)
    except (RecursionError, MemoryError):
        text = f"<{type(v).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


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


def zip_problem(infos, file_bytes, limit=MAX_ARRAY_BYTES):
    """Why a zip's members would decompress to too much, from the sizes the archive declares,
    or None; called BEFORE any member is decompressed (1.5 MB deflated can expand to GB).

        sum_m compress_size_m <= file_bytes;   sum_m file_size_m <= limit;
        file_size_m == compress_size_m (stored);  <= MAX_DEFLATE_RATIO * compress_size_m (else)

    ``zipfile`` never returns more than a member's declared ``file_size`` (the CRC check fails
    first), so checking the declared sizes bounds what reading can allocate: at most
    ``MAX_DEFLATE_RATIO`` times the file's own size, and never over ``limit``.

    Parameters
    ----------
    infos : list of zipfile.ZipInfo
    file_bytes : the size of the zip file on disk
    limit : bytes all members may hold together
    Returns
    -------
    None, or one line saying which member breaks which limit
    """
    total, packed = 0, 0
    for info in infos:
        what = f"member {short_repr(info.filename)}"
        if info.flag_bits & 0x1:
            return f"{what} is encrypted"
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            return (f"{what} is stored uncompressed but declares {info.file_size} bytes "
                    f"in {info.compress_size}")
        if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
            return (f"{what} would expand {info.compress_size} compressed bytes to "
                    f"{info.file_size}, over {MAX_DEFLATE_RATIO}-fold (a zip bomb?)")
        total, packed = total + info.file_size, packed + info.compress_size
    if packed > file_bytes:
        return f"its members declare {packed} compressed bytes; the file has {file_bytes}"
    if total > limit:
        return (f"its members declare {total} bytes, over the limit of {limit} bytes "
                f"({limit / 2**30:g} GiB)")
    return None


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(zf, info, name):
    """One ``.npy`` member as a writable host array; its header must account for its bytes.

    NOTE: ``np.load`` allocates the array the header declares before reading the data, so a
    crafted header (shape (10**12,)) in a tiny member is a huge allocation; here the header's
    size must equal the member's declared size, which ``zip_problem`` has bounded.
    """
    member = f"{name}: member {short_repr(info.filename)}"
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError as e:
            raise WeightFileError(f"{member} is not a .npy array ({_first_line(e)})") from None
        if version not in _HEADER_READERS:
            raise WeightFileError(f"{member}: unsupported .npy format version {version}")
        try:
            shape, fortran, dtype = _HEADER_READERS[version](f)
        except Exception as e:  # NOTE: NumPy parses the header's Python literal: SyntaxError,
            # tokenize.TokenError, ... all mean one thing here: the header is not .npy's
            raise WeightFileError(f"{member}: bad .npy header ({type(e).__name__}: "
                                  f"{_first_line(e)})") from None
        if dtype.hasobject:
            raise WeightFileError(f"{name}: refusing pickled data (object array "
                                  f"{short_repr(info.filename)})")
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            raise WeightFileError(f"{member} has dtype {dtype}; weight files hold numeric "
                                  "arrays only")
        nbytes, held = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
        if nbytes != held:
            raise WeightFileError(f"{member} declares shape {shape} ({nbytes} bytes) but holds "
                                  f"{held} bytes")
        buf = bytearray(nbytes)
        if f.readinto(buf) != nbytes or f.read(1):  # the read at the end checks the CRC
            raise WeightFileError(f"{member} is truncated")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def read_npz(path, limit=MAX_ARRAY_BYTES):
    """Every array of an ``.npz`` (name without ``.npy`` -> host ndarray), read without pickle
    and within ``limit`` bytes (``zip_problem``), or one ``WeightFileError``.

    Parameters
    ----------
    path : str or os.PathLike
    limit : bytes the arrays may hold together (declared sizes, checked before reading)
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
        with zipfile.ZipFile(name) as zf:
            infos = zf.infolist()
            problem = zip_problem(infos, os.path.getsize(name), limit)
            if problem:
                raise WeightFileError(f"{name}: {problem}")
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else None
                if key is None or key in arrays:
                    raise WeightFileError(f"{name}: entry {short_repr(info.filename)} is not "
                                          "a .npy array (or appears twice)")
                arrays[key] = _read_member(zf, info, name)
    except WeightFileError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError, KeyError,
            NotImplementedError, struct.error) as e:
        raise WeightFileError(f"{name}: truncated or corrupt .npz ({_first_line(e)})") from None
    return arrays


def _first_line(e):
    return str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__


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
        arrays, members over the size limits (``zip_problem``), missing or invalid
        ``__meta__`` (JSON nested deeper than Python's recursion limit included).
    """
    name = os.fspath(path)
    arrays = read_npz(name)
    if META_KEY not in arrays:
        raise WeightFileError(f"{name}: no {META_KEY!r} entry; not written by minicnn")
    raw = arrays.pop(META_KEY)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise WeightFileError(f"{name}: {META_KEY!r} must be 1-D uint8 JSON bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        raise WeightFileError(f"{name}: {META_KEY!r} JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit int ...
        raise WeightFileError(f"{name}: {META_KEY!r} is not valid UTF-8 JSON "
                              f"({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise WeightFileError(f"{name}: {META_KEY!r} must be a JSON object")
    return arrays, meta
