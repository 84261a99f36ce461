"""Numerical gradients by central differences, for tests, lessons and assignments.

A backward pass computes a vector-Jacobian product: given the upstream gradient
``dout``, dL/dx = J^T dout where L = sum(f(x) * dout). Checking that product against

    dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / (2h)        (error O(h^2))

with a random ``dout`` tests every entry of the Jacobian, not just its column sums.
Use float64: with h = 1e-6 the check reaches ~1e-9 relative error on smooth ops.
"""

from __future__ import annotations

import numpy as np

from .backend import to_numpy


def rel_error(a, b):
    """A global relative error: max|a - b| / max(1e-8, max(|a| + |b|)).

    NOTE: not CS231n's ``rel_error``, which takes the ratio per element, max_i |a_i - b_i| /
    max(1e-8, |a_i| + |b_i|). This one divides the largest difference by the largest size, so
    an entry near 0 that is off by round-off cannot dominate it; it is never above CS231n's.
    """
    a, b = np.asarray(to_numpy(a), dtype=np.float64), np.asarray(to_numpy(b), dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_vjp(f, x, dout, h=1e-6):
    """Central-difference estimate of d/dx sum(f(x) * dout), one entry of ``x`` at a time.

    Parameters
    ----------
    f : callable taking an array shaped like ``x`` (it is perturbed in place and restored)
    x : float64 array
    dout : array shaped like f(x)
    h : step
    Returns
    -------
    grad : array shaped like ``x``
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = float((f(x) * dout).sum())
        flat[i] = old - h
        minus = float((f(x) * dout).sum())
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad
