"""Loading a user's image file as a model input: decode, orient, convert to RGB, resize.

    x, rgb = load_image("cat.jpg", size=(64, 64))   # x: (1, 3, 64, 64) float32 in [0, 1]
                                                      # rgb: (h, w, 3) uint8, the decoded original

The steps, in order (Pillow does the decoding and the resizing):

1. Open the file lazily (only the header is read) and refuse images with more than
   ``max_pixels`` pixels (default ``MAX_PIXELS`` = 50 M) *before* decoding them: a small file can
   claim a huge size (a "decompression bomb"). The refusal is this module's message at every
   size (Pillow's own check, 2 x 89 M pixels, is lifted while the header is read; its
   DecompressionBombError/Warning elsewhere become the same error).
2. Decode everything now (``img.load()``), so a truncated or corrupt file fails here.
3. Apply the EXIF orientation tag (``ImageOps.exif_transpose``): a phone photo stored sideways
   is loaded the way it is displayed.
4. Convert to RGB uint8 (``to_rgb``): transparency is composited on white; 16-bit grey
   (``I;16``, ``I``) is scaled to 8 bits (v * 255 / 65535), not clipped; float (``F``) is taken
   as [0, 1], and refused if any pixel is NaN or inf; CMYK, P, 1, L, LA, YCbCr go through
   Pillow's ``convert`` (no ICC colour management). Multi-frame files (GIF, TIFF) give their
   first frame.
5. The model's own ``preprocess`` (``minicnn.preprocess.Preprocess``) at its ``input_size``:
   crop, resize, (rgb - mean) / std. A model without them (e.g. a Sequential a user built)
   gets ``FALLBACK`` at 64 x 64, what the shipped shapes models also use: the whole image
   resized with Pillow's bilinear filter (which low-pass filters when shrinking), x = rgb / 255.
   NOTE: without a crop a non-square image is squashed to the model's aspect ratio; the
   heatmap, resized back to the original size, lines up with the original pixels.

Every failure (missing file, a directory, not an image, truncated or corrupt data, too many
pixels, non-finite float pixels, an unconvertible mode) raises ``ImageError``, a ValueError
whose message is one line that names the file.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from minicnn.preprocess import Preprocess

MAX_PIXELS = 50_000_000  # width * height above which an image is refused before decoding
MODES = ("RGB", "L")  # model input modes: 3 channels or 1 channel
DEFAULT_SIZE = (64, 64)  # input size of a model that does not say (the shapes models' size)
FALLBACK = Preprocess(mean=0.0, std=255.0)  # x = rgb / 255, whole image, bilinear
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# what Pillow's decoders raise for bad data, besides OSError (truncation) and ValueError
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)


class ImageError(ValueError):
    """An image file that cannot be used: missing, unreadable, corrupt, too large."""


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def to_rgb(img):
    """Convert a decoded Pillow image of any mode to an RGB ``Image`` (8 bits per channel).

    alpha:   out = alpha * rgb + (1 - alpha) * white        (RGBA, LA, PA, P/L with transparency)
    16 bit:  out = round(v * 255 / 65535)                   (I;16, I;16B, I; values clipped to
                                                             [0, 65535] first)
    float:   out = round(clip(v, 0, 1) * 255)               (F)

    Parameters
    ----------
    img : PIL.Image.Image, already loaded
    Returns
    -------
    PIL.Image.Image in mode "RGB"
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        v = np.asarray(img).astype(np.float64)  # I;16B is big-endian: asarray handles the order
        scale = 255.0 if mode == "F" else 255.0 / 65535.0
        hi = 1.0 if mode == "F" else 65535.0
        grey = np.rint(np.clip(v, 0.0, hi) * scale).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV, ...


def _open_header(name):
    """``Image.open`` (the header only) without Pillow's own pixel limit, so that our check,
    made right after it and before any decoding, decides at every size with our message.
    NOTE: Pillow's limit is a module global, restored at once; decoders that check it again
    while decoding still raise, and that becomes "image too large"."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(name)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_finite(img, name):
    """A float ("F") image must be finite: casting NaN to 8 bits is undefined (NumPy warns
    and gives 0), so a NaN pixel would silently become black."""
    if img.mode == "F":
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(img))))
        if bad:
            raise ImageError(f"{name}: float image has {bad} NaN or inf pixel(s); an image "
                             "must be finite")


def read_rgb(path, max_pixels=MAX_PIXELS):
    """Decode an image file to an RGB uint8 array, EXIF orientation applied (steps 1-4).

    Parameters
    ----------
    path : str or os.PathLike
    max_pixels : refuse images with more than this many pixels (before decoding)
    Returns
    -------
    rgb : (h, w, 3) uint8
    Raises
    ------
    ImageError : one line naming the file, for every way the file can be unusable
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise ImageError(f"{name}: no such file")
    if os.path.isdir(name):
        raise ImageError(f"{name}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # NOTE: Pillow only warns between its limit and twice its limit; make that an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open_header(name) as img:  # reads the header only
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(f"{name}: image is {w}x{h} = {w * h:,} pixels, over the "
                                     f"limit of {max_pixels:,} (refused before decoding)")
                img.load()  # decode now: truncated or corrupt data fail here, inside the try
                _check_finite(img, name)
                img = ImageOps.exif_transpose(img)
                rgb = np.asarray(to_rgb(img), dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image too large ({_first_line(e)})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except _DECODE_ERRORS as e:
        raise ImageError(f"{name}: truncated or corrupt image ({_first_line(e)})") from None
    return rgb


def load_image(path, size=DEFAULT_SIZE, mode="RGB", max_pixels=MAX_PIXELS):
    """Load an image file as a model input with ``FALLBACK`` (see the module docstring).

    x = bilinear_resize(rgb, (H, W)) / 255, as (1, C, H, W) float32;  no centre-crop

    Parameters
    ----------
    path : str or os.PathLike
    size : (H, W) of the model input; the shipped shapes models take (64, 64)
    mode : "RGB" (C = 3) or "L" (C = 1, Pillow's ITU-R 601 luma of the RGB image)
    max_pixels : refuse images with more than this many pixels (before decoding)
    Returns
    -------
    x : (1, C, H, W) float32 in [0, 1]
    rgb : (h, w, 3) uint8, the decoded original (oriented, converted, not resized)
    Raises
    ------
    ImageError : one line naming the file
    """
    return _prepared(FALLBACK, path, size, mode, max_pixels)[:2]


def _prepared(prep, path, size, mode, max_pixels):
    """(x, rgb, box): ``prep`` applied to the decoded file (in ``mode``), the decoded RGB
    original, and where the input lies in it (``prep.crop_box``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rgb = read_rgb(path, max_pixels)
    image = rgb if mode == "RGB" else np.asarray(Image.fromarray(rgb).convert("L"))
    return prep(image, size), rgb, prep.crop_box(*rgb.shape[:2])


def shrink(rgb, max_side=512):
    """Downscale an RGB uint8 image (keeping its aspect) so its longer side is <= max_side.

    Used for display: overlays are drawn at this size. Smaller images are returned unchanged.
    """
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def model_input(model, path, size=None, mode="RGB", max_pixels=MAX_PIXELS):
    """The model's input for an image file, and the picture to draw the maps on.

    x = model.preprocess(rgb, size or model.input_size)

    The model's own ``preprocess`` and ``input_size`` (the ImageNet model: centre square,
    bicubic resize to 224, (rgb - 127) / 128); a model without them gets ``FALLBACK`` at
    ``DEFAULT_SIZE`` (whole image, bilinear, / 255). The picture is what the model sees
    of the photo, at full resolution: the centre square when the preprocessing crops, else
    the whole photo.

    Parameters
    ----------
    model : minicnn.Sequential (reads ``preprocess`` and ``input_size``)
    path : str or os.PathLike
    size : (H, W) overriding the model's ``input_size``; None: the model's
    mode : "RGB" or "L" (one channel)
    Returns
    -------
    x : (1, C, H, W) float32; shown : (h, w, 3) uint8
    """
    prep = getattr(model, "preprocess", None) or FALLBACK
    size = size or getattr(model, "input_size", None) or DEFAULT_SIZE
    x, rgb, box = _prepared(prep, path, size, mode, max_pixels)
    if box is None:
        return x, rgb
    top, left, side = box
    return x, np.ascontiguousarray(rgb[top:top + side, left:left + side])
