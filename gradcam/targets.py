"""Targets: which class score y^c to explain, and the seed gradient dy that starts the backward.

Selvaraju et al., Grad-CAM, arXiv:1610.02391v4, Sec. 3: the gradient of the score y^c for
class c (before the softmax) is backpropagated; this is a backward pass seeded with the
one-hot vector dy = e_c at the logits. The counterfactual map (Sec. 5, "Counterfactual
Explanations") seeds with -e_c instead.

A *seed function* maps the logits (N, classes) to the seed dy (N, classes), which
``gradcam.capture`` hands to ``model.backward``:

    seed_fn = class_score(target, class_names)     # dy = one-hot at c (resolved from the logits)
    seed_fn = negated(class_score(target))         # dy = -one-hot

Accepted targets (``resolve_target``): None (the top-1 class of each image), one int (the
same class for every image), a class name (str) where the model has ``class_names``, or a
sequence / 1-D array of N ints or names (one per image). Anything else (a class out of
range, an unknown name, a wrong length, a float or bool) is a ValueError that lists the
valid choices.
"""

from __future__ import annotations

import numbers

import numpy as np

from minicnn.backend import get_xp, to_numpy


MAX_LISTED = 12  # class names listed in an error before "..." (ImageNet has 1000)


def _choices(num_classes, class_names, wanted=None):
    """'an int in [0, K-1] or one of the class names ...' (long lists: the closest few)."""
    text = f"an int in [0, {num_classes - 1}]"
    if class_names is not None:
        names = list(class_names)
        if len(names) > MAX_LISTED:
            if wanted is not None:  # the names that contain the wanted text come first
                key = str(wanted).lower()
                names = sorted(names, key=lambda n: key not in str(n).lower())
            shown = ", ".join(repr(n) for n in names[:MAX_LISTED])
            text += (f" or one of the {len(class_names)} class names (model.class_names), "
                     f"e.g. {shown}, ...")
        else:
            text += " or one of the class names " + ", ".join(repr(n) for n in names)
    return text


def _one_class(t, num_classes, class_names):
    """One target entry (int or name) -> a class index, checked."""
    if isinstance(t, str):
        if class_names is None:
            raise ValueError(f"target {t!r} is a class name, but the model has no class_names; "
                             f"use {_choices(num_classes, None)}")
        names = [str(n) for n in class_names]
        if t not in names:
            raise ValueError(f"unknown class name {t!r}; use {_choices(num_classes, class_names, t)}")
        return names.index(t)
    # NOTE: bool is an int subclass; True/False as a class is almost surely a mistake.
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        raise ValueError(f"target {t!r} is not a class; use {_choices(num_classes, class_names)}")
    t = int(t)
    if not 0 <= t < num_classes:
        raise ValueError(f"target class {t} is out of range; "
                         f"use {_choices(num_classes, class_names)}")
    return t


def resolve_target(target, logits, class_names=None):
    """Turn a user's ``target`` into one class index per image.

    Parameters
    ----------
    target : None (top-1 per image), int, str (class name), or a sequence/array of N of those
    logits : (N, classes) scores y (NumPy or CuPy)
    class_names : sequence of str or None (``model.class_names``)
    Returns
    -------
    c : (N,) int64 NumPy array of class indices (indices are host data: they pick entries)
    Raises
    ------
    ValueError : naming the valid choices, for an invalid class, name or length
    """
    N, num_classes = logits.shape
    if class_names is not None and len(class_names) != num_classes:
        class_names = None  # NOTE: names that do not match the head would mislabel; ignore them.
    if target is None:
        return to_numpy(logits.argmax(axis=1)).astype(np.int64)
    if hasattr(target, "ndim") and target.ndim == 0:  # 0-d array (NumPy or CuPy) -> scalar
        target = to_numpy(target).item()
    scalar = isinstance(target, (str, numbers.Integral, bool, np.bool_))
    if scalar or not hasattr(target, "__len__"):
        return np.full(N, _one_class(target, num_classes, class_names), dtype=np.int64)
    if hasattr(target, "ndim") and target.ndim != 1:
        raise ValueError(f"target array must be 1-D with one class per image, "
                         f"got shape {target.shape}")
    entries = to_numpy(target).tolist() if hasattr(target, "ndim") else list(target)
    if len(entries) != N:
        raise ValueError(f"got {len(entries)} targets for a batch of {N} images; give one per "
                         f"image, or a single class for all ({_choices(num_classes, class_names)})")
    return np.array([_one_class(t, num_classes, class_names) for t in entries], dtype=np.int64)


def one_hot(c, logits):
    """dy[n, c_n] = 1, zero elsewhere: the gradient of y^c with respect to the logits.

    Parameters
    ----------
    c : (N,) int class indices (host, or the logits' array module)
    logits : (N, classes); sets the array module, dtype and shape of the result
    Returns
    -------
    dy : (N, classes), same module and dtype as ``logits``
    """
    xp = get_xp(logits)
    N, num_classes = logits.shape
    # (classes,) row c_n of the identity, for each n: no scatter needed, works on NumPy and CuPy
    classes = xp.arange(num_classes).reshape(1, num_classes)
    return (classes == xp.asarray(c).reshape(N, 1)).astype(logits.dtype)


def class_score(target, class_names=None):
    """Seed function for the score y^c: logits -> one-hot dy (Sec. 3, "Grad-CAM").

    dy[n, j] = 1 if j == c_n else 0,  c = resolve_target(target, logits, class_names)

    Parameters
    ----------
    target : anything ``resolve_target`` accepts (None = top-1 per image, int, name, N of them)
    class_names : sequence of str or None, for targets given by name
    Returns
    -------
    seed_fn : callable, logits (N, classes) -> dy (N, classes); raises ValueError for a bad target
    """

    def seed_fn(logits):
        if target is None:  # NOTE: top-1 taken where the logits live: no host round trip
            return one_hot(logits.argmax(axis=1), logits)
        return one_hot(resolve_target(target, logits, class_names), logits)

    return seed_fn


def negated(seed_fn):
    """Seed function for -y^c: dy -> -dy (Sec. 5, "Counterfactual Explanations").

    Backpropagating -e_c gives -dy^c/dA, whose spatial mean is the counterfactual weight.
    """

    def neg_fn(logits):
        return -seed_fn(logits)

    return neg_fn
