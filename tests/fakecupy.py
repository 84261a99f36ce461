"""A strict fake CUDA device for the tests: NumPy underneath, CuPy's rules on top.

``FAKE`` stands in for the ``cupy`` module (tests/conftest.py registers it as minicnn's device
module for the ``xp="fake"`` parametrisation), so the device code path runs on every machine:

- its arrays (``FAKE.ndarray``) are not ``numpy.ndarray``s, and ``np.asarray`` on one raises
  TypeError, as CuPy's ``__array__`` does: the host copy is explicit (``.get()``,
  ``cupy.asnumpy``, ``minicnn.backend.to_numpy``);
- a host ``numpy.ndarray`` mixed into a device operation (an operator, a ufunc, a function
  argument) raises TypeError, as in CuPy; NumPy scalars and Python numbers are fine;
- only the names and keyword arguments of the minimum supported CuPy exist (the allow-list
  dumped from the real wheel by tests/cupy_api/dump.py); anything else is AttributeError or
  TypeError, even where NumPy has it;
- it counts host syncs (``.get()``, ``.item()``, ``.tolist()``, ``float()``/``int()``/
  ``bool()`` of a device array, ``cupy.asnumpy``, printing, a stream synchronise) and host-to-
  device transfers (``cupy.asarray``/``cupy.array`` of host data, ``.set()``, a host index or
  value in ``a[...]``), with the call site of each.

What it does not model: dtype promotion (NumPy's rules run underneath), asynchrony and timing,
memory. A workload that passes here can still differ from CuPy in the last bits.
"""

from __future__ import annotations

import json
import operator
import sys
from pathlib import Path

import numpy as np

ALLOWLIST = json.loads((Path(__file__).parent / "cupy_api" / "cupy-13.0.0.json").read_text())
_HOST_SOURCES = {"asarray", "array", "asanyarray"}  # the functions that take host data over
# functions whose result is host metadata in CuPy too; every other Python bool/int/float result
# of a NumPy function comes back as a 0-d device array, as CuPy returns (array_equal, allclose)
_HOST_RESULTS = {"shape", "ndim", "size", "result_type", "can_cast", "isscalar", "min_scalar_type",
                 "may_share_memory", "shares_memory", "iscomplexobj", "isrealobj", "common_type",
                 "promote_types", "get_array_module", "broadcast_shapes"}


class DeviceRuleError(TypeError):
    """A CuPy rule was broken (host array in a device operation, implicit host conversion)."""


class Counts:
    """Syncs and transfers seen since the last ``reset``; ``log`` has (kind, what, where)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.syncs, self.transfers, self.log = 0, 0, []

    def note(self, kind, what):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        where = "?" if frame is None else f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        if kind == "sync":
            self.syncs += 1
        else:
            self.transfers += 1
        self.log.append((kind, what, where))


COUNTS = Counts()


def _host_refused(what):
    return DeviceRuleError(f"Unsupported type <class 'numpy.ndarray'> in {what}: move host "
                           f"arrays to the device first (cupy.asarray)")


def unwrap(v, what):
    """Device arrays -> their NumPy payload (lists/tuples/dicts recursively); host arrays raise."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, np.ndarray):
        raise _host_refused(what)
    if isinstance(v, (list, tuple)):
        return type(v)(unwrap(e, what) for e in v)
    if isinstance(v, dict):
        return {k: unwrap(e, what) for k, e in v.items()}
    return v


def wrap(r):
    """NumPy results -> device arrays (a NumPy scalar becomes a 0-d array, as CuPy returns)."""
    if isinstance(r, (np.ndarray, np.generic)) and not isinstance(r, np.dtype):
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(wrap(e) for e in r)
    if isinstance(r, list):
        return [wrap(e) for e in r]
    return r


def check_kwargs(entry, name, kwargs):
    """Refuse keyword arguments that the allow-listed signature does not have."""
    params = entry.get("params")
    if params is None or entry.get("varkw"):
        return
    bad = sorted(set(kwargs) - set(params))
    if bad:
        raise TypeError(f"cupy {name}() (CuPy {ALLOWLIST['cupy_version']}) got unexpected "
                        f"keyword argument(s) {bad}; it takes {params}")


def _index(key, what):
    """An index for ``a[key]``: device arrays unwrap; a host array is a transfer (CuPy copies it)."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, np.ndarray):
        COUNTS.note("transfer", f"host index array in {what}")
        return key
    if isinstance(key, tuple):
        return tuple(_index(k, what) for k in key)
    return key


def _binop(fn, name):
    def method(self, other):
        if isinstance(other, np.ndarray):
            raise _host_refused(f"ndarray.{name}")
        if not isinstance(other, (ndarray, int, float, complex, bool, np.generic)):
            return NotImplemented
        return wrap(fn(self._a, unwrap(other, name)))
    method.__name__ = name
    return method


def _inplace(fn, name):
    def method(self, other):
        if isinstance(other, np.ndarray):
            raise _host_refused(f"ndarray.{name}")
        fn(self._a, unwrap(other, name))
        return self
    method.__name__ = name
    return method


class ndarray:  # noqa: N801 (CuPy's name)
    """A device array: a NumPy array that only device operations may touch."""

    __slots__ = ("_a", "__weakref__")
    __hash__ = None
    __array_priority__ = 100

    def __init__(self, a):
        self._a = a

    # ---- the explicit and implicit ways to the host
    def __array__(self, *args, **kwargs):
        raise DeviceRuleError("Implicit conversion to a NumPy array is not allowed. "
                              "Please use `.get()` to construct a NumPy array explicitly.")

    def _sync(self, what):
        COUNTS.note("sync", what)
        return self._a

    def get(self, stream=None, order="C", out=None, blocking=True):
        return np.array(self._sync("ndarray.get"), order=order)

    def item(self):
        return self._sync("ndarray.item").item()

    def tolist(self):
        return self._sync("ndarray.tolist").tolist()

    def set(self, arr, stream=None):
        COUNTS.note("transfer", "ndarray.set")
        self._a[...] = arr

    __float__ = lambda self: float(self._sync("float(device array)"))  # noqa: E731
    __int__ = lambda self: int(self._sync("int(device array)"))  # noqa: E731
    __bool__ = lambda self: bool(self._sync("bool(device array)"))  # noqa: E731
    __complex__ = lambda self: complex(self._sync("complex(device array)"))  # noqa: E731

    def __repr__(self):
        return repr(self._sync("repr(device array)")).replace("array(", "fakecupy.array(", 1)

    __str__ = __repr__

    # ---- NumPy's protocols: dispatch to the device namespace, as CuPy's do
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        entry = ALLOWLIST["modules"]["cupy"].get(ufunc.__name__)
        if entry is None or entry["kind"] != "ufunc":
            return NotImplemented
        fu = getattr(FAKE, ufunc.__name__)
        return fu(*inputs, **kwargs) if method == "__call__" else getattr(fu, method)(*inputs,
                                                                                      **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        mod = "cupy" + func.__module__[len("numpy"):] if func.__module__.startswith("numpy") \
            else None
        if mod not in ALLOWLIST["modules"] or func.__name__ not in ALLOWLIST["modules"][mod]:
            return NotImplemented
        return getattr(_FAKES[mod], func.__name__)(*args, **kwargs)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(r)) for r in self._a)

    def __getitem__(self, key):
        return wrap(self._a[_index(key, "a[...]")])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            COUNTS.note("transfer", "host value in a[...] = value")
        elif isinstance(value, ndarray):
            value = value._a
        self._a[_index(key, "a[...] = value")] = value

    def __getattr__(self, name):
        entry = ALLOWLIST["classes"]["ndarray"].get(name)
        if entry is None:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} "
                                 f"(CuPy {ALLOWLIST['cupy_version']})")
        value = getattr(self._a, name)
        if entry["kind"] != "function":
            return wrap(value) if name in ("T", "real", "imag", "base", "flat") else value

        def method(*args, **kwargs):
            check_kwargs(entry, f"ndarray.{name}", kwargs)
            return wrap(value(*unwrap(args, name), **unwrap(kwargs, name)))
        return method

    __copy__ = lambda self: ndarray(self._a.copy())  # noqa: E731
    __deepcopy__ = lambda self, memo: ndarray(self._a.copy())  # noqa: E731
    __neg__ = lambda self: wrap(-self._a)  # noqa: E731
    __pos__ = lambda self: wrap(+self._a)  # noqa: E731
    __abs__ = lambda self: wrap(abs(self._a))  # noqa: E731
    __invert__ = lambda self: wrap(~self._a)  # noqa: E731

    def __getstate__(self):
        raise DeviceRuleError("pickling a device array would copy it to the host implicitly")


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift", "lt", "le", "gt", "ge", "eq", "ne"):
    _fn = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    setattr(ndarray, f"__{_name}__", _binop(_fn, f"__{_name}__"))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(ndarray, f"__r{_name}__",
                _binop(lambda a, b, f=_fn: f(b, a), f"__r{_name}__"))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne", "matmul"):
        setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}"), f"__i{_name}__"))


class Ufunc:
    """A device ufunc: CuPy's keywords only (``out``, ``casting``, ``dtype``) and its methods."""

    def __init__(self, name, entry):
        self.__name__, self._entry, self._np = name, entry, getattr(np, name)

    def __call__(self, *inputs, **kwargs):
        check_kwargs(self._entry, self.__name__, kwargs)
        out = kwargs.get("out")
        r = self._np(*unwrap(inputs, self.__name__), **unwrap(kwargs, self.__name__))
        return out if isinstance(out, ndarray) else wrap(r)

    def __getattr__(self, method):
        if method not in self._entry.get("ufunc_methods", ()):
            raise AttributeError(f"cupy.{self.__name__} has no method {method!r}")
        fn = getattr(self._np, method)
        return lambda *a, **k: wrap(fn(*unwrap(a, method), **unwrap(k, method)))


class Generator:
    """``cupy.random.default_rng(seed)`` / ``RandomState(seed)``: NumPy's draws, device arrays."""

    def __init__(self, kind, np_gen):
        self._kind, self._g = kind, np_gen

    def __getattr__(self, name):
        entry = ALLOWLIST["classes"][self._kind].get(name)
        if entry is None:
            raise AttributeError(f"cupy.random.{self._kind} has no attribute {name!r}")
        fn = getattr(self._g, name)

        def method(*args, **kwargs):
            check_kwargs(entry, f"{self._kind}.{name}", kwargs)
            return wrap(fn(*unwrap(args, name), **unwrap(kwargs, name)))
        return method


def _cuda():
    """The bits of ``cupy.cuda`` the benchmark asks for; a stream synchronise is a sync."""
    from types import SimpleNamespace as NS

    stream = NS(synchronize=lambda: COUNTS.note("sync", "stream.synchronize"))
    return NS(runtime=NS(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {
        "name": b"fake device (NumPy, tests/fakecupy.py)"}),
        Device=lambda *a: NS(id=0), get_current_stream=lambda: stream)


class FakeModule:
    """One allow-listed module (``cupy``, ``cupy.random``, ...) over its NumPy twin."""

    def __init__(self, name):
        self.__name__ = name
        self._names = ALLOWLIST["modules"][name]
        self._np = {"cupy": np, "cupy.random": np.random, "cupy.linalg": np.linalg,
                    "cupy.fft": np.fft, "cupy.lib": np.lib,
                    "cupy.lib.stride_tricks": np.lib.stride_tricks}[name]
        self.__version__ = ALLOWLIST["cupy_version"] + "+fake"

    def __repr__(self):
        return f"<fake module {self.__name__!r} (tests/fakecupy.py)>"

    def __getattr__(self, name):
        entry = self._names.get(name)
        if entry is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} "
                                 f"(CuPy {ALLOWLIST['cupy_version']})")
        special = _SPECIAL.get((self.__name__, name))
        if special is not None:
            return special
        if entry["kind"] == "module":
            sub = f"{self.__name__}.{name}"
            if sub in _FAKES:
                return _FAKES[sub]
            raise AttributeError(f"fakecupy does not simulate {sub}")
        target = getattr(self._np, name, None)
        if target is None:
            raise AttributeError(f"fakecupy does not simulate {self.__name__}.{name}")
        if name == "matmul":  # NOTE: NumPy's matmul of strided views skips BLAS (a slow loop);
            target = _contiguous_matmul  # CuPy copies such operands, and so does the fake
        if name == "argsort":  # CuPy's argsort is stable (thrust); NumPy's default is not
            target = lambda a, axis=-1, kind=None: np.argsort(a, axis=axis, kind="stable")  # noqa
        if entry["kind"] == "ufunc":
            return Ufunc(name, entry)
        if entry["kind"] == "value" or (entry["kind"] == "class" and isinstance(target, type)):
            return target  # dtypes, finfo, constants: host objects in CuPy too
        qual = f"{self.__name__}.{name}"

        def fn(*args, **kwargs):
            check_kwargs(entry, qual, kwargs)
            r = target(*unwrap(args, qual), **unwrap(kwargs, qual))
            if isinstance(r, (bool, int, float)) and name not in _HOST_RESULTS:
                return ndarray(np.asarray(r))
            return wrap(r)
        fn.__name__ = name
        return fn


_BLAS = []


def _contiguous_matmul(a, b, *args, **kwargs):
    """NOTE: one BLAS thread: the fake's products are small, and BLAS's threads spinning on a
    loaded test machine cost more than they gain (a 5 MFLOP product took up to 90 ms)."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        return np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), *args, **kwargs)


def _to_device(a, dtype=None, copy=False, **kwargs):
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return ndarray(a._a.copy()) if copy else a
        return ndarray(a._a.astype(dtype))
    COUNTS.note("transfer", "cupy.asarray/array of host data")
    return ndarray(np.array(a, dtype=dtype, copy=True))


def _make(name):
    entry = ALLOWLIST["modules"]["cupy"][name]

    def fn(a, *args, **kwargs):
        check_kwargs(entry, name, kwargs)
        dtype = kwargs.get("dtype", args[0] if args else None)
        return _to_device(a, dtype, copy=(name == "array" and kwargs.get("copy", True)))
    fn.__name__ = name
    return fn


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """``cupy.asnumpy``: a sync for a device array; host data passes through."""
    return np.array(a._sync("cupy.asnumpy"), order=order) if isinstance(a, ndarray) else \
        np.asarray(a, order=order)


get_array_module = lambda *args: FAKE if any(isinstance(a, ndarray) for a in args) else np  # noqa


_FAKES = {name: FakeModule(name) for name in ALLOWLIST["modules"]}
FAKE = _FAKES["cupy"]
_SPECIAL = {("cupy", "ndarray"): ndarray, ("cupy", "asnumpy"): asnumpy,
            ("cupy", "get_array_module"): get_array_module, ("cupy", "cuda"): _cuda(),
            ("cupy.random", "default_rng"): lambda seed=None: Generator(
                "Generator", np.random.default_rng(seed)),
            ("cupy.random", "RandomState"): lambda seed=None, method=None: Generator(
                "RandomState", np.random.RandomState(seed))}
_SPECIAL.update({("cupy", n): _make(n) for n in _HOST_SOURCES})
