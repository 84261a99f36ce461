"""Which tier the layers run: the tuned kernels (the default) or the plain reference.

    with minicnn.use_tier("reference"):   # layers call minicnn.functional for this block
        logits = model.forward(x)
    tiers.active()                         # the module of the current tier

Both tiers have the same functions, signatures and caches (``minicnn.functional`` and
``minicnn.kernels``), so a model's numbers agree to round-off under either; the reference
tier is for reading, teaching and debugging, the kernels for speed. Layers look the tier up on
every call, so a forward under one tier and a backward under the other also work.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import functional, kernels

TIERS = {"kernels": kernels, "reference": functional}
_active = kernels


def active():
    """The module of the tier the layers run now: ``minicnn.kernels`` or ``minicnn.functional``."""
    return _active


@contextmanager
def use_tier(name):
    """Run the layers on tier ``name`` ("kernels" or "reference") inside the ``with`` block.

    The previous tier comes back on exit, also when the block raises. The switch is global
    (every thread sees it), as a teaching and debugging aid, not a per-model setting.
    """
    global _active
    if name not in TIERS:
        raise ValueError(f"unknown tier {name!r}; use one of {tuple(TIERS)}")
    previous, _active = _active, TIERS[name]
    try:
        yield _active
    finally:
        _active = previous
