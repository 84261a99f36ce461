"""Losses: softmax cross-entropy with its gradient, and classification accuracy.

The loss and its gradient are computed together (CS231n's ``softmax_loss``), because
the gradient reuses the softmax probabilities:

    p[n, c]  = exp(s[n, c] - m[n]) / sum_j exp(s[n, j] - m[n]),   m[n] = max_j s[n, j]
    L        = -1/N * sum_n log p[n, y[n]]
    dL/ds    = (p - onehot(y)) / N

Subtracting the row maximum ``m`` changes nothing mathematically (softmax is
shift-invariant) but keeps ``exp`` from overflowing: the largest exponent is 0.
"""

from __future__ import annotations

import numpy as np

from .backend import get_xp, to_numpy


def check_labels(y, num_classes):
    """Validate integer labels ``y`` (N,) in ``[0, num_classes)``; return them on the host, int64.

    NOTE: done in Python on a host copy because CuPy wraps out-of-range indices silently.
    """
    y_host = to_numpy(y)
    if not np.issubdtype(y_host.dtype, np.integer):
        if np.issubdtype(y_host.dtype, np.floating) and np.all(y_host == np.round(y_host)):
            y_host = y_host.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {y_host.dtype}")
    if y_host.size:
        lo, hi = int(y_host.min()), int(y_host.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"label {bad} out of range for {num_classes} classes "
                             f"(expected 0..{num_classes - 1})")
    return y_host.astype(np.int64, copy=False)


def _check_targets(scores, y):
    """Validate ``scores`` (N, C) and integer labels ``y`` (N,) in ``[0, C)``; return y on host."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (N, classes), got shape {tuple(scores.shape)}")
    N, C = scores.shape
    y_host = to_numpy(y)
    if y_host.ndim != 1 or y_host.shape[0] != N:
        raise ValueError(f"labels must have shape ({N},) to match scores, "
                         f"got {tuple(y_host.shape)}")
    if N == 0:
        raise ValueError("empty batch: scores has 0 rows")
    return check_labels(y_host, C)


def log_softmax(scores):
    """Row-wise log-softmax, stable via the max shift.

    log p[n, c] = (s[n, c] - m[n]) - log sum_j exp(s[n, j] - m[n])

    Parameters
    ----------
    scores : (N, C)

    Returns
    -------
    logp : (N, C), same dtype as ``scores``
    """
    xp = get_xp(scores)
    shifted = scores - xp.max(scores, axis=1, keepdims=True)  # max entry per row is now 0
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax_cross_entropy(scores, y, sync=True):
    """Mean softmax cross-entropy over the batch and its gradient w.r.t. the scores.

    L = -1/N * sum_n log softmax(s)[n, y[n]];   dL/ds = (softmax(s) - onehot(y)) / N

    Parameters
    ----------
    scores : (N, C) float logits (NumPy or CuPy)
    y : (N,) integer class labels in ``[0, C)`` (any backend; validated on the host)
    sync : True: ``y`` is validated on the host and ``loss`` is a Python float. False, for a
        training loop that validated its labels once (``check_labels``): ``y`` must be valid
        labels in the scores' array module, nothing is checked, and ``loss`` stays a 0-d
        float64 array there, so a device step needs no host sync and no label transfer.

    Returns
    -------
    loss : float (``sync=False``: 0-d float64 array)
    dscores : (N, C) same dtype and backend as ``scores``

    Raises
    ------
    ValueError
        for a shape mismatch, non-integer labels or a label outside ``[0, C)``.
    """
    xp = get_xp(scores)
    idx = xp.asarray(_check_targets(scores, y)) if sync else y
    N = scores.shape[0]
    rows = xp.arange(N)
    logp = log_softmax(scores)  # (N, C)
    loss = -xp.sum(logp[rows, idx]).astype(np.float64) / N  # the sum in the scores' dtype
    dscores = xp.exp(logp)  # softmax probabilities p, a fresh array
    # dL/ds = (p - onehot) / N: subtract 1 at the target of each row (rows are distinct, so
    # a plain fancy-index update is safe here; no repeated indices need xp.add.at).
    dscores[rows, idx] -= 1
    dscores /= N
    return (float(loss) if sync else loss), dscores.astype(scores.dtype, copy=False)


def accuracy(scores, y) -> float:
    """Fraction of rows whose arg-max score equals the label.

    acc = 1/N * sum_n [argmax_c s[n, c] == y[n]]

    Parameters
    ----------
    scores : (N, C)
    y : (N,) integer labels

    Returns
    -------
    acc : float in [0, 1]
    """
    pred = to_numpy(get_xp(scores).argmax(scores, axis=1))
    y_host = to_numpy(y)
    if pred.shape != y_host.shape:
        raise ValueError(f"labels must have shape {pred.shape}, got {y_host.shape}")
    if pred.size == 0:
        raise ValueError("empty batch: cannot compute accuracy")
    return float(np.mean(pred == y_host))
