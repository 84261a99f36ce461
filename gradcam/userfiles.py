"""Reading what users bring to ``gradcam compare``: their heatmap, the model input, their alphas.

    U, tol = load_map("theirs.png")         # (H, W) float64, and the tolerance the format allows
    x = load_input("cat.jpg", model, (224, 224))    # (1, C, H, W) in the model's dtype
    alphas = load_alphas("alpha.npy")       # (K,)

Heatmaps: ``.npy`` (2-D, or (1, H, W)); ``.npz`` (key "heatmap", else its only array); PNG,
grayscale only (8-bit L -> v / 255, 16-bit -> v / 65535, F as is; an RGB PNG only if R == G ==
B). Colour-mapped PNGs are refused: a colormap is not reliably invertible (jet's channels are
not monotonic, overlays blend in the photo, JPEG shifts colours). Every problem is a
``CompareError`` (a ValueError) with one line naming the file.
"""

from __future__ import annotations

import os

import numpy as np

DEFAULT_TOL = 1e-4
PNG_TOL = {8: 2 / 255, 16: 2 / 65535}


class CompareError(ValueError):
    """Bad input to compare: unreadable or unsupported map, shapes that cannot match."""


# --------------------------------------------------------------------------- reading maps
def load_map(path):
    """A user's heatmap file as a 2-D float64 array, and the tolerance its format allows.

    .npy: a 2-D array (or (1, H, W)); .npz: the key "heatmap", else its only array;
    .png: grayscale (L, I;16, I, F) scaled to [0, 1]; RGB accepted only when R == G == B.
    Returns (map, default_tol).
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CompareError(f"{name}: no such file")
    low = name.lower()
    tol = DEFAULT_TOL
    if low.endswith(".npy"):
        try:
            m = np.load(name, allow_pickle=False)
        except ValueError as e:
            raise CompareError(f"{name}: not a readable .npy array ({e})") from None
    elif low.endswith(".npz"):
        try:
            with np.load(name, allow_pickle=False) as z:
                keys = list(z.files)
                if "heatmap" in keys:
                    m = z["heatmap"]
                elif len(keys) == 1:
                    m = z[keys[0]]
                else:
                    raise CompareError(f"{name}: holds {keys}; name the map 'heatmap'")
        except (ValueError, OSError) as e:
            raise CompareError(f"{name}: not a readable .npz ({e})") from None
    elif low.endswith(".png"):
        m, tol = _load_png(name)
    else:
        raise CompareError(f"{name}: unsupported heatmap format; use .npy, .npz or a "
                           "grayscale .png")
    return as_map(m, name), tol


def _load_png(name):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(name) as img:
            img.load()
            mode = img.mode
            a = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CompareError(f"{name}: not a readable PNG ({e})") from None
    if mode in ("RGB", "RGBA"):
        rgb = a[..., :3].astype(np.int64)
        grey = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        if not grey:
            raise CompareError(f"{name}: a colour-mapped (RGB) PNG; a colormap cannot be inverted "
                               "reliably. Save the map itself: .npy, or a grayscale PNG "
                               "(e.g. Image.fromarray(np.uint8(255 * heatmap)))")
        a, mode = a[..., 0], "L"
    if mode == "L":
        return a.astype(np.float64) / 255.0, PNG_TOL[8]
    if mode.startswith("I"):
        return a.astype(np.float64) / 65535.0, PNG_TOL[16]
    if mode == "F":
        return a.astype(np.float64), DEFAULT_TOL
    raise CompareError(f"{name}: PNG mode {mode!r}; expected grayscale (L, I;16 or F)")


def as_map(m, what="heatmap"):
    """(H, W) float64 from (H, W), (1, H, W) or (1, 1, H, W)."""
    m = np.asarray(m)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or min(m.shape) < 1:
        raise CompareError(f"{what}: expected one 2-D map (H, W), got shape {tuple(np.shape(m))}")
    if m.dtype.kind not in "fiub":
        raise CompareError(f"{what}: expected numbers, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if np.isinf(m).any():
        raise CompareError(f"{what}: contains inf")
    return m


def _read_array(path, what, keys):
    """One array from .npy, or from .npz by the first of ``keys`` present (else its only one)."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CompareError(f"{name}: no such file")
    try:
        if name.lower().endswith(".npy"):
            return np.load(name, allow_pickle=False)
        with np.load(name, allow_pickle=False) as z:
            for k in keys:
                if k in z.files:
                    return z[k]
            if len(z.files) == 1:
                return z[z.files[0]]
            raise CompareError(f"{name}: holds {z.files}; name the {what} one of {list(keys)}")
    except (ValueError, OSError) as e:
        if isinstance(e, CompareError):
            raise
        raise CompareError(f"{name}: not a readable .npy/.npz {what} ({e})") from None


def load_alphas(path):
    """The user's channel weights alpha, (K,) float64 (.npy, or .npz key "alpha"/"weights")."""
    a = np.asarray(_read_array(path, "alphas", ("alpha", "alphas", "weights")))
    if a.dtype.kind not in "fiu" or a.squeeze().ndim != 1:
        raise CompareError(f"{os.fspath(path)}: alphas must be K numbers, got shape {a.shape}")
    return a.astype(np.float64).squeeze()


def load_input(path, model, size=None, mode="RGB"):
    """The model input for ``compare``: a preprocessed array file, or an image file.

    .npy/.npz (key "x" or "input", else its only array): (C, H, W) or (1, C, H, W), used as is,
    which is the exact way to reproduce a map computed in another framework. An image: loaded
    as ``gradcam explain`` loads it (``gradcam.images.model_input``: the model's own
    ``preprocess`` if it has one, as EfficientNet-Lite0 does; else a bilinear resize to
    ``size`` (H, W), / 255, in Pillow ``mode`` "RGB" or "L").

    Returns
    -------
    x : (1, C, H, W) in the model's dtype
    """
    from .images import model_input

    name = os.fspath(path)
    if name.lower().endswith((".npy", ".npz")):
        x = np.asarray(_read_array(path, "input", ("x", "input")))
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[0] != 1 or x.dtype.kind not in "fiu":
            raise CompareError(f"{name}: input must be one (C, H, W) or (1, C, H, W) array, "
                               f"got {x.dtype} {x.shape}")
        return x.astype(model.dtype)
    return np.asarray(model_input(model, name, size, mode)[0], dtype=model.dtype)
