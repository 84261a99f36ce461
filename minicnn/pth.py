"""Read PyTorch ``.pth`` weight files with NumPy only, without running any code from the file.

A ``.pth`` file is a pickle, and unpickling can call any importable function (``os.system``
included). This reader's unpickler resolves only the globals the format needs to describe
tensors (below), each replaced by a harmless stand-in of ours; any other is refused *before*
anything is called, with an ``UnsafePickleError`` naming it. Tensors come out as NumPy arrays,
bit for bit what ``torch.load`` returns (tests/test_pth.py checks it against torch).

Two container formats exist; both are read.

Legacy (``torch.save`` before PyTorch 1.6, or ``_use_new_zipfile_serialization=False``) is
five pickles in a row, then the raw storage bytes:

    pickle 1  magic number 0x1950a86a20f9469cfc6c
    pickle 2  protocol version 1001
    pickle 3  sys info {"protocol_version", "little_endian", "type_sizes"}
    pickle 4  the object (e.g. an OrderedDict of tensors); every tensor is
              REDUCE(torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, ...)),
              each storage a persistent id ("storage", torch.FloatStorage, key, device, numel,
              view_metadata) whose bytes come later
    pickle 5  the storage keys, in the order their data follow
    then per key: numel as int64 (file byte order), then numel * itemsize raw bytes

Zip (the default since PyTorch 1.6): a zip archive ``<name>/data.pkl`` (pickle 4 above,
persistent ids without view_metadata), ``<name>/data/<key>`` (raw bytes of each storage) and
``<name>/byteorder`` ("little" or "big"; absent means little).

Globals allowed: ``ALLOWED_GLOBALS``, and ``torch.<Type>Storage`` for ``STORAGE_DTYPES``. The
stand-ins refuse pickle's BUILD opcode, which could otherwise set attributes on them. Sizes are
bounded before anything is read (``io.zip_problem``, ``MAX_PICKLE_BYTES``, ``MAX_NESTING``).
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from .io import WeightFileError, short_repr, zip_problem

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 64 * 2 ** 20  # data.pkl of a zip .pth: key names and tensor records only
MAX_NESTING = 64  # containers inside containers in the pickled object (a state dict: 1-3)

STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}


class PthError(WeightFileError):
    """A ``.pth`` file that cannot be read: missing, truncated, corrupt or of another format."""


class UnsafePickleError(PthError, pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list (refused before any call)."""


# --------------------------------------------------------------------------- stand-ins
class _Sealed:
    """Base of every object the unpickler hands out: pickle's BUILD cannot modify it."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafePickleError(f"the pickle tried to set state on {self!r}; refused")


class _Global(_Sealed):
    """An allowed global: calls ``fn`` (or, for a storage type, only carries its dtype)."""

    __slots__ = ("qualname", "fn", "dtype")

    def __init__(self, qualname, fn=None, dtype=None):
        self.qualname, self.fn, self.dtype = qualname, fn, dtype

    def __call__(self, *args):
        if self.fn is None:
            raise PthError(f"the pickle calls {self.qualname}, which the format never does")
        return self.fn(*args)

    def __repr__(self):
        return f"<allowed global {self.qualname}>"


class _Storage(_Sealed):
    """One storage (flat buffer) named by ``key``; ``data`` is filled after the pickle."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None

    def __repr__(self):
        return f"<storage {self.key!r} {self.dtype} x{self.numel}>"


class _TensorRef(_Sealed):
    """A tensor as the pickle describes it: a strided view into a storage (data come later)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __repr__(self):
        return f"<tensor {self.size} of {self.storage!r}>"


def _ints(v, what):
    if not isinstance(v, (tuple, list)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
        raise PthError(f"tensor {what} must be a tuple of non-negative ints, got {short_repr(v)}")
    return tuple(v)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor[_v2]``: record the view (its bounds are
    checked once the storage's data have been read).

    The trailing arguments of v2 (requires_grad, backward_hooks, metadata) do not change the
    values; they are ignored.
    """
    if not isinstance(storage, _Storage):
        raise PthError(f"a tensor is built from {short_repr(storage)}, not from a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise PthError(f"bad tensor storage offset {short_repr(storage_offset)}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise PthError(f"tensor size {size} and stride {stride} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_ignored):
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise PthError(f"a parameter wraps {short_repr(data)}, not a tensor")
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle._Unpickler):
    """Python's unpickler whose ``find_class`` resolves only the allow-list above.

    ``find_class`` is the single door through which a pickle reaches a callable (the GLOBAL,
    STACK_GLOBAL, INST, OBJ and EXT opcodes all go through it), so refusing there means a
    refused name is never imported, let alone called. NOTE: the pure-Python unpickler, not
    the C one: the C memo is an array, and 5 bytes (LONG_BINPUT 10**9) zero-fill GB of it.
    """

    def __init__(self, file, storages=None, view_metadata=True):
        super().__init__(file)
        self.storages = storages  # key -> _Storage; None: this pickle may hold no tensors
        self.view_metadata = view_metadata

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return _Global(f"{module}.{name}", ALLOWED_GLOBALS[module, name])
        if module == "torch" and name in STORAGE_DTYPES:
            return _Global(f"torch.{name}", dtype=np.dtype(STORAGE_DTYPES[name]))
        # NOTE: name it as Python 3 would import it (protocol-2 pickles may spell
        # subprocess.Popen "commands.Popen"); nothing is imported to find out
        py3 = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        written = short_repr(f"{module}.{name}", bare=True)  # may hold newlines, NULs, MBs
        spelled = "" if py3 == (module, name) else f" (written {written})"
        raise UnsafePickleError(
            f"refusing to load global {short_repr('.'.join(py3), bare=True)}{spelled}: a "
            f"PyTorch weight file needs only tensors; this pickle would import (and could "
            f"call) other code")

    def persistent_load(self, pid):
        # ("storage", type, key, location, numel[, view_metadata]) -- see the module docstring
        n = 6 if self.view_metadata else 5
        if self.storages is None or not isinstance(pid, tuple) or len(pid) != n \
                or pid[0] != "storage":
            raise PthError(f"unexpected persistent id {short_repr(pid)}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _Global) or stype.dtype is None:
            raise PthError(f"storage {short_repr(key)} has an unsupported type "
                           f"{short_repr(stype)} (supported: {', '.join(STORAGE_DTYPES)})")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise PthError(f"bad storage record {short_repr(pid)}")
        root = self.storages.setdefault(key, _Storage(key, stype.dtype, numel))
        if root.dtype != stype.dtype or root.numel != numel:
            raise PthError(f"storage {key!r} is declared twice with different types or sizes")
        view = pid[5] if self.view_metadata else None
        if view is None:
            return root
        # NOTE: very old files store views of storages: (view_key, offset, numel)
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and all(isinstance(v, int) and v >= 0 for v in view[1:])
                and view[1] + view[2] <= numel):
            raise PthError(f"bad storage view {short_repr(view)} of storage {short_repr(key)}")
        return _StorageView(root, view[1], view[2])


class _StorageView(_Storage):
    """A slice of a root storage (legacy files only); its data is the root's, sliced."""

    __slots__ = ("root", "start")

    def __init__(self, root, start, numel):
        super().__init__(root.key, root.dtype, numel)
        self.root, self.start = root, start


def _unpickle(f, storages=None, view_metadata=True):
    try:
        return _RestrictedUnpickler(f, storages, view_metadata).load()
    except PthError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, TypeError from a malformed stream...
        why = " ".join(str(e).split())[:200]
        raise PthError(f"corrupt or truncated pickle ({type(e).__name__}: {why})") from None


# --------------------------------------------------------------------------- to NumPy
def _array(t):
    """The tensor's values as a new C-contiguous NumPy array (native byte order).

    NOTE: the view is checked to stay inside its storage BEFORE ``as_strided`` touches
    memory: a crafted size/stride must not read past the buffer.
    """
    s = t.storage
    data = s.root.data[s.start:s.start + s.numel] if isinstance(s, _StorageView) else s.data
    if any(n == 0 for n in t.size):
        return np.zeros(t.size, dtype=s.dtype.newbyteorder("="))
    last = t.offset + sum((n - 1) * st for n, st in zip(t.size, t.stride))
    if last >= s.numel:
        raise PthError(f"a tensor of size {t.size}, stride {t.stride}, offset {t.offset} "
                       f"reaches past its storage of {s.numel} elements")
    if int(np.prod(t.size, dtype=object)) > s.numel:
        # NOTE: only a stride-0 (expanded) view has more elements than its storage; weight
        # files hold none, and a crafted one could ask for terabytes from a few bytes
        raise PthError(f"a tensor of size {t.size} repeats its storage of {s.numel} "
                       f"elements (stride {t.stride}); expanded tensors are not supported")
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[t.offset:], shape=t.size,
                                           strides=[st * item for st in t.stride], writeable=False)
    return np.array(view, dtype=s.dtype.newbyteorder("="), order="C")


def _to_numpy(obj, memo=None, path=(), depth=0):
    """Replace every tensor in a (nested) dict/list/tuple/set by its array (shared ones once).

    NOTE: a pickle can build a list that contains itself, or nest 100,000 deep: a container
    met again on its own path, or deeper than ``MAX_NESTING``, is refused (RecursionError).
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        if id(obj) in path or depth >= MAX_NESTING:
            raise PthError(f"the pickled {type(obj).__name__} " + ("contains itself; a state "
                           f"dict never does" if id(obj) in path else f"nests deeper than "
                           f"{MAX_NESTING} containers"))
        path = path + (id(obj),)
    if isinstance(obj, _TensorRef):
        out = _array(obj)
    elif isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _to_numpy(v, memo, path, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        out = type(obj)(_to_numpy(v, memo, path, depth + 1) for v in obj)
    elif isinstance(obj, _Sealed):
        raise PthError(f"the file holds {short_repr(obj)} outside any tensor")
    else:
        out = obj
    memo[id(obj)] = out
    return out


# --------------------------------------------------------------------------- the two formats
def _read_exact(f, n, what):
    left = os.fstat(f.fileno()).st_size - f.tell()
    if n > left:  # NOTE: check first: f.read(n) would allocate n bytes for a crafted huge n
        raise PthError(f"file is truncated: {what} needs {n} bytes, only {left} left")
    b = f.read(n)
    if len(b) != n:
        raise PthError(f"file is truncated: {what} needs {n} bytes, only {len(b)} left")
    return b


def _load_legacy(f):
    magic = _unpickle(f)
    if magic != LEGACY_MAGIC:
        raise PthError(f"not a PyTorch legacy file: magic number {short_repr(magic)}, "
                       f"expected {LEGACY_MAGIC:#x}")
    protocol = _unpickle(f)
    if protocol != LEGACY_PROTOCOL:
        raise PthError(f"unsupported legacy protocol version {short_repr(protocol)} "
                       f"(only {LEGACY_PROTOCOL})")
    sys_info = _unpickle(f)
    if not isinstance(sys_info, dict):
        raise PthError(f"bad sys info record {short_repr(sys_info)}")
    order = "<" if sys_info.get("little_endian", True) else ">"
    storages = {}
    obj = _unpickle(f, storages, view_metadata=True)
    keys = _unpickle(f)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise PthError("the storage key list does not match the storages the tensors use")
    for key in keys:  # NOTE: raw bytes on disk, each read checked against the file's size
        s = storages[key]
        (numel,) = struct.unpack(order + "q", _read_exact(f, 8, f"storage {key!r} header"))
        if numel != s.numel:
            raise PthError(f"storage {key!r}: {numel} elements on disk, {s.numel} declared")
        dtype = s.dtype.newbyteorder(order)
        s.data = np.frombuffer(_read_exact(f, numel * dtype.itemsize, f"storage {key!r}"), dtype)
    return _to_numpy(obj)


def _member(zf, infos, name, sizes):
    """Zip member ``name``, decompressed only if its declared size is in the range ``sizes``."""
    if (info := infos.get(name)) is None or info.file_size not in sizes:
        raise PthError(f"zip member {short_repr(name)} " + ("is missing" if info is None else
                       f"declares {info.file_size} bytes, not {sizes.start}..{sizes.stop - 1}"))
    return zf.read(info)


def _load_zip(path):
    """A zip ``.pth``. NOTE: ``torch.save`` stores members uncompressed; a compressed one (a
    crafted or re-zipped file) must pass ``io.zip_problem``, and every member's declared size
    must be what the pickle says it holds, checked BEFORE it is decompressed."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, struct.error, EOFError) as e:
        raise PthError(f"corrupt zip-format .pth ({type(e).__name__}: {e})") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkls = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise PthError("zip file is not a PyTorch checkpoint (no <name>/data.pkl)")
        if problem := zip_problem(zf.infolist(), os.path.getsize(path)):
            raise PthError(problem)
        root, order, storages = pkls[0][: -len("data.pkl")], "<", {}
        if root + "byteorder" in infos:
            raw = _member(zf, infos, root + "byteorder", range(17))
            order = "<" if raw.strip() == b"little" else ">"
        pkl = _member(zf, infos, pkls[0], range(MAX_PICKLE_BYTES + 1))
        obj = _unpickle(io.BytesIO(pkl), storages, view_metadata=False)
        for key, s in storages.items():  # (zipfile's own errors: load_pth's last except)
            dtype = s.dtype.newbyteorder(order)
            n = s.numel * dtype.itemsize  # what the pickle says this storage holds
            raw = _member(zf, infos, f"{root}data/{key}", range(n, n + 1))
            s.data = np.frombuffer(raw, dtype)
    return _to_numpy(obj)


def load_pth(path):
    """Read a PyTorch ``.pth`` (legacy or zip format) into NumPy, running no code from it.

    Parameters
    ----------
    path : str or os.PathLike
    Returns
    -------
    The pickled object with every tensor replaced by a NumPy array (for a state dict: an
    OrderedDict key -> ndarray, in the file's order, dtypes as saved).
    Raises
    ------
    UnsafePickleError : the pickle references a global outside the allow-list (nothing run)
    PthError : missing, truncated, corrupt or unsupported file (one line, naming the file)
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head.startswith(b"PK"):
                return _load_zip(path)
            if not head.startswith(b"\x80"):
                raise PthError("not a PyTorch .pth file (neither a zip archive nor a pickle)")
            return _load_legacy(f)
    except FileNotFoundError:
        raise PthError(f"{path}: no such file") from None
    except PthError as e:
        raise type(e)(f"{path}: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError,
            EOFError, struct.error, zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        why = " ".join(str(e).split())[:200]  # a malformed file that got past the checks above
        raise PthError(f"{path}: corrupt .pth ({type(e).__name__}: {why})") from None
