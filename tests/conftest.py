"""Shared fixtures: the array backends to test on, hypothesis profiles, and ``registry``
(methods and variants registered inside a test are removed after it).

``xp`` runs a test on NumPy always, on the strict fake device of tests/fakecupy.py always
(NumPy underneath, CuPy's rules and names on top, syncs counted), and on CuPy where CuPy and a
CUDA device exist (otherwise that parametrisation is skipped with the reason).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minicnn.backend import HAS_CUPY

settings.register_profile(
    "default", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKENDS = ["numpy", "fake", pytest.param("cupy", marks=[
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_CUPY, reason="CuPy with a CUDA device is not available"),
])]


@pytest.fixture
def fake_device(monkeypatch):
    """Install tests/fakecupy.py as minicnn's device module for one test; yield its counters.

    NOTE: the seam is minicnn.backend's two module globals, ``_cupy`` (the device module, None
    without CuPy) and ``HAS_CUPY``: every device decision (get_xp, to_numpy, require_cupy,
    ``model.to("cupy")``) reads them at call time, so the library needs no test-only path.
    """
    import minicnn.backend as backend
    from fakecupy import COUNTS, FAKE

    monkeypatch.setattr(backend, "_cupy", FAKE)
    monkeypatch.setattr(backend, "HAS_CUPY", True)
    COUNTS.reset()
    yield COUNTS


def _array_module(request, name):
    if name == "numpy":
        return np
    if name == "fake":
        request.getfixturevalue("fake_device")
        from fakecupy import FAKE

        return FAKE
    import cupy

    return cupy


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy, the fake device, or cupy where a GPU is present."""
    return _array_module(request, request.param)


@pytest.fixture(params=BACKENDS[1:])
def device_xp(request):
    """The device array modules only (the fake; cupy where a GPU is present), for the tests
    whose reference is the same workload run on the host."""
    return _array_module(request, request.param)


@pytest.fixture
def registry():
    """Methods registered inside a test are removed after it."""
    from gradcam.registry import _REGISTRY, _VARIANTS
    saved, saved_variants = dict(_REGISTRY), dict(_VARIANTS)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(saved)
    _VARIANTS.clear()
    _VARIANTS.update(saved_variants)
