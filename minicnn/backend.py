"""Array backend: NumPy always, CuPy when it is installed and a GPU is present.

Arrays carry their module. Code that allocates asks ``xp = get_xp(x)`` and uses
``xp.zeros_like`` and friends, so the same function runs on the host or on the
device without a global switch. This is the only file that imports ``cupy``.

Importing minicnn never needs CuPy: the import below is guarded, and asking for
the ``"cupy"`` device without it raises one clear ``RuntimeError``.

NOTE: ``_cupy`` (the device module, None without CuPy) and ``HAS_CUPY`` are read at call
time by every function here, so they are the one seam through which the test suite installs
its strict fake device (tests/fakecupy.py) in place of CuPy on machines without a GPU.
"""

from __future__ import annotations

import numpy as np

try:  # NOTE: optional dependency; any failure (missing wheel, no driver) means "no CuPy".
    import cupy as _cupy

    try:
        HAS_CUPY = _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CUDA driver or no device
        HAS_CUPY = False
except Exception:
    _cupy = None
    HAS_CUPY = False

DEVICES = ("numpy", "cupy")


def get_xp(*arrays):
    """Return the array module (``numpy`` or ``cupy``) that the given arrays live in.

    ``None`` entries are skipped; with no arrays, NumPy is returned.
    """
    if _cupy is not None:
        for a in arrays:
            if a is not None and isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def require_cupy():
    """Return the ``cupy`` module, or raise a clear error saying why it cannot be used."""
    if _cupy is None:
        raise RuntimeError(
            "the 'cupy' device needs CuPy: install a prebuilt wheel, e.g. "
            "pip install 'minicnn-gradcam[gpu]' (cupy-cuda12x, with a CUDA 12 toolkit) "
            "or 'minicnn-gradcam[gpu-ctk]' (CuPy >= 14 with the CUDA libraries from pip)"
        )
    if not HAS_CUPY:
        raise RuntimeError("the 'cupy' device needs a CUDA GPU, and none was found")
    return _cupy


def normalize_device(device) -> str:
    """Map the accepted device spellings to ``"numpy"`` or ``"cupy"``."""
    names = {"numpy": "numpy", "cpu": "numpy", "host": "numpy", "cupy": "cupy", "gpu": "cupy",
             "cuda": "cupy"}
    key = str(device).lower()
    if key not in names:
        raise ValueError(f"unknown device {device!r}; use one of {sorted(names)}")
    return names[key]


def to_numpy(a):
    """Copy a CuPy array to the host; NumPy arrays (and scalars) pass through."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def asarray(a, device="numpy", dtype=None):
    """Put ``a`` on ``device`` (``"numpy"``/``"cpu"`` or ``"cupy"``/``"gpu"``) with ``dtype``."""
    if normalize_device(device) == "numpy":
        return np.asarray(to_numpy(a), dtype=dtype)
    cp = require_cupy()
    return cp.asarray(a, dtype=dtype)


def device_of(a) -> str:
    """``"cupy"`` for a CuPy array, ``"numpy"`` otherwise."""
    return "cupy" if get_xp(a) is not np else "numpy"
