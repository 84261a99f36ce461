"""Reading what users bring to ``gradcam compare``: their heatmap, the model input, their alphas.

    U, tol = load_map("theirs.png")         # (H, W) float64, and the tolerance the format allows
    x = load_input("cat.jpg", model, (224, 224))    # (1, C, H, W) in the model's dtype
    alphas = load_alphas("alpha.npy")       # (K,)

Heatmaps: ``.npy`` (2-D, or (1, H, W)); ``.npz`` (key "heatmap", else its only array); PNG,
grayscale only (8-bit L -> v / 255, 16-bit -> v / 65535, F as is; an RGB PNG only if R == G ==
B). Colour-mapped PNGs are refused: a colormap is not reliably invertible (jet's channels are
not monotonic, overlays blend in the photo, JPEG shifts colours). Every problem is a
``CompareError`` (a ValueError) with one line naming the file: missing, empty (0 bytes),
truncated (a .npy header declaring more data than the file holds), not a zip, over
``MAX_ARRAY_BYTES``, or non-finite values (a map with some NaN pixels, any inf; NaN or inf
alphas or input). An all-NaN map is accepted: it is the Keras tutorial's 0/0.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

import numpy as np

DEFAULT_TOL = 1e-4
MAX_ARRAY_BYTES = 1 << 30  # a user's heatmap, input or alphas: at most 1 GiB of data
# what reading a damaged .npy/.npz raises (empty: EOFError; not a zip: BadZipFile; ...)
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
                NotImplementedError, RuntimeError, UnicodeDecodeError)
PNG_TOL = {8: 2 / 255, 16: 2 / 65535}


class CompareError(ValueError):
    """Bad input to compare: unreadable or unsupported map, shapes that cannot match."""


def check_tol(tol):
    """``tol`` as a float: a finite number > 0 (a negative or NaN tolerance would turn an
    identical map into "no convention matches")."""
    try:
        t = float(tol)
    except (TypeError, ValueError):
        raise CompareError(f"tolerance must be a number, got {tol!r}") from None
    if not (np.isfinite(t) and t > 0):
        raise CompareError(f"tolerance must be a finite number > 0, got {tol!r}")
    return t


def as_alphas(a, what="alphas"):
    """(K,) finite float64 channel weights."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.squeeze().ndim != 1:
        raise CompareError(f"{what}: alphas must be K numbers, got shape {a.shape}")
    a = a.astype(np.float64).squeeze()
    if not np.isfinite(a).all():
        raise CompareError(f"{what}: {int((~np.isfinite(a)).sum())} of {a.size} alphas are "
                           "NaN or inf; alphas must be finite")
    return a


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
    if low.endswith((".npy", ".npz")):
        m = read_array(name, "heatmap", ("heatmap",))
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
        raise CompareError(f"{what}: contains inf; a heatmap must be finite")
    nan = np.isnan(m)
    # NOTE: an all-NaN map is what the Keras tutorial's ReLU(x) / max(x) gives when max(x) = 0,
    # so compare can name it; a map with SOME NaN pixels matches no convention, and fitting
    # the rest would hide them (one NaN pixel once got "matches up to normalisation")
    if nan.any() and not nan.all():
        raise CompareError(f"{what}: {int(nan.sum())} of {m.size} pixels are NaN; a heatmap "
                           "must be finite (all NaN is accepted: Keras' 0/0)")
    return m


def _checked_header(f, available, name, what):
    """Read a .npy header from ``f`` and check the array it declares fits in the ``available``
    bytes (the file's, or the zip member's) and under MAX_ARRAY_BYTES, before numpy
    allocates it: a 100-byte file can declare 80 GB."""
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise CompareError(f"{name}: .npy format version {version} is not supported")
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise CompareError(f"{name}: the {what} holds Python objects; save a numeric array")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise CompareError(f"{name}: the {what} declares {nbytes:,} bytes, over the limit of "
                           f"{MAX_ARRAY_BYTES:,}")
    if nbytes > available - f.tell():
        raise CompareError(f"{name}: truncated: the {what} declares {nbytes:,} bytes of data, "
                           f"the file holds {max(available - f.tell(), 0):,}")


def read_array(path, what, keys=()):
    """One array from a user's .npy, or from an .npz by the first of ``keys`` present (else
    its only array), without pickle. Every way the file can be bad (missing, empty,
    truncated, not a zip, a declared size larger than the data or than MAX_ARRAY_BYTES)
    is a ``CompareError`` naming the file."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CompareError(f"{name}: no such file")
    if os.path.getsize(name) == 0:
        raise CompareError(f"{name}: empty file (0 bytes), not a .npy/.npz {what}")
    try:
        if not name.lower().endswith(".npz"):
            with open(name, "rb") as f:
                _checked_header(f, os.path.getsize(name), name, what)
            return np.load(name, allow_pickle=False)
        with zipfile.ZipFile(name) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            key = next((k for k in keys if k in members), None)
            if key is None and len(members) == 1:
                key = next(iter(members))
            if key is None:
                raise CompareError(f"{name}: holds {sorted(members)}; name the {what} one of "
                                   f"{list(keys)}")
            info = zf.getinfo(members[key])
            with zf.open(info) as f:
                _checked_header(f, info.file_size, name, what)
            with zf.open(info) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
    except CompareError:
        raise
    except _READ_ERRORS as e:
        raise CompareError(f"{name}: not a readable .npy/.npz {what} "
                           f"({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else "no details"


def load_alphas(path):
    """The user's channel weights alpha, (K,) float64 (.npy, or .npz key "alpha"/"weights")."""
    return as_alphas(read_array(path, "alphas", ("alpha", "alphas", "weights")),
                     os.fspath(path))


def check_weights(path):
    """A quick look at a ``--weights`` file before ``minicnn.torch_import`` reads it: present,
    not empty, and an .npz whose zip directory is readable (a truncated .npz loses it)."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CompareError(f"{name}: no such file")
    if os.path.getsize(name) == 0:
        raise CompareError(f"{name}: empty file (0 bytes), not a state dict")
    if name.lower().endswith(".npz"):
        try:
            with zipfile.ZipFile(name):
                pass
        except _READ_ERRORS as e:
            raise CompareError(f"{name}: not a readable .npz state dict "
                               f"({type(e).__name__}: {_first_line(e)})") from None


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
        x = np.asarray(read_array(path, "input", ("x", "input")))
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[0] != 1 or x.dtype.kind not in "fiu":
            raise CompareError(f"{name}: input must be one (C, H, W) or (1, C, H, W) array, "
                               f"got {x.dtype} {x.shape}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise CompareError(f"{name}: the input contains NaN or inf")
        if x.dtype.kind in "iu":
            raise CompareError(f"{name}: the input is {x.dtype}; save the model's float input "
                               "(e.g. x.astype(np.float32) / 255 for 0-255 pixels)")
        return x.astype(model.dtype)
    return np.asarray(model_input(model, name, size, mode)[0], dtype=model.dtype)
