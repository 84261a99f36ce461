"""Dump the public names of the minimum supported CuPy and each callable's keyword arguments.

Run it in a throwaway environment holding the pinned CuPy floor (``import cupy`` needs no GPU):

    python -m venv /tmp/cupyenv
    /tmp/cupyenv/bin/pip install "cupy-cuda12x==13.0.*" "numpy<2"
    /tmp/cupyenv/bin/python tests/cupy_api/dump.py > tests/cupy_api/cupy-13.0.0.json

Regenerate (and rename the JSON, and ``ALLOWLIST`` in tests/fakecupy.py) when the ``gpu``
extra's pin in pyproject.toml moves. The JSON is the allow-list of tests/fakecupy.py (the
strict fake device) and of tests/test_cupy_api.py (the AST check of every ``xp.<name>``).

Per module, each name maps to ``{"kind": ..., "params": [...] | null, "varkw": bool}``:
``params`` are the names that may be passed by keyword (from ``inspect.signature``; for a
CuPy ufunc, from the signature line of its docstring, e.g. ``add(x1, x2, /, out=None, *,
casting='same_kind', dtype=None)``); ``null`` when neither tells (then keywords are not
checked). ``ufunc_methods`` lists the ufunc methods (``reduce``, ``at``, ...) that exist.
``classes`` holds the public methods and attributes of ``cupy.ndarray`` and of the random
generators (``cupy.random.default_rng``'s Generator, ``RandomState``) the same way.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types

MODULES = ("cupy", "cupy.random", "cupy.linalg", "cupy.fft", "cupy.lib", "cupy.lib.stride_tricks")
# classes whose instances the code calls methods on: arrays and random generators
CLASSES = {"ndarray": "cupy.ndarray", "Generator": "cupy.random._generator_api.Generator",
           "RandomState": "cupy.random.RandomState"}
_KEEP_DUNDER = ("__array__", "__dlpack__", "__cuda_array_interface__")
UFUNC_METHODS = ("reduce", "accumulate", "reduceat", "outer", "at")
_DOC_SIG = re.compile(r"^\s*[\w.]+\((?P<args>[^)]*)\)")


def _doc_params(obj):
    """Keyword-capable parameter names from a ``name(args)`` first docstring line, or None."""
    doc = (getattr(obj, "__doc__", None) or "").replace("\\*", "*")
    m = _DOC_SIG.match(doc)
    if not m:
        return None, False
    names, varkw = [], False
    for part in (p.strip() for p in m.group("args").split(",")):
        if part == "/":
            names.clear()  # everything before "/" is positional-only
            continue
        if part.startswith("**"):
            varkw = True
            continue
        if part in ("*", "", "self") or part.startswith("*"):
            continue
        names.append(part.split("=")[0].strip())
    return names, varkw


def describe(obj, ufunc_type):
    """``{"kind", "params", "varkw"}`` (and ``ufunc_methods`` for a ufunc) for one object."""
    if isinstance(obj, types.ModuleType):
        return {"kind": "module", "params": None, "varkw": False}
    if isinstance(obj, ufunc_type):
        params, varkw = _doc_params(obj)
        return {"kind": "ufunc", "params": params, "varkw": varkw,
                "ufunc_methods": [m for m in UFUNC_METHODS if hasattr(obj, m)]}
    if isinstance(obj, type):
        kind = "class"
    elif callable(obj):
        kind = "function"
    else:
        return {"kind": "value", "params": None, "varkw": False}
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        params, varkw = _doc_params(obj)
        return {"kind": kind, "params": params, "varkw": varkw}
    kinds = inspect.Parameter
    params = [p.name for p in sig.parameters.values()
              if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) and p.name != "self"]
    varkw = any(p.kind == kinds.VAR_KEYWORD for p in sig.parameters.values())
    return {"kind": kind, "params": params, "varkw": varkw}


def main():
    import importlib

    import cupy
    import numpy

    ufunc_type = type(cupy.add)
    out = {"cupy_version": cupy.__version__, "numpy_version": numpy.__version__,
           "python": sys.version.split()[0], "modules": {}, "classes": {}}
    for name in MODULES:
        mod = importlib.import_module(name)
        public = sorted(n for n in dir(mod) if not n.startswith("_"))
        out["modules"][name] = {n: describe(getattr(mod, n), ufunc_type) for n in public}
    for key, path in CLASSES.items():
        mod_name, cls_name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(mod_name), cls_name)
        out["classes"][key] = {n: describe(getattr(cls, n), ufunc_type) for n in sorted(dir(cls))
                               if not n.startswith("_") or n in _KEEP_DUNDER}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
