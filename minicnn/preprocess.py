"""How a photo becomes a model's input: crop, resize, normalise. A model carries its own.

    x = model.preprocess(rgb, model.input_size)      # (h, w, 3) uint8 -> (1, 3, H, W) float32

The steps, in order:

1. Crop. ``crop=None``: keep the whole image (a non-square photo is squashed to the input's
   aspect ratio, as the shapes models are fed). ``crop=f``: keep the centre square of side
   int(f * min(h, w)) (``center_crop_box``), at (top, left) = ((h - side + 1) // 2,
   (w - side + 1) // 2); 1.0 keeps the whole short side, 0.875 = 224 / (224 + 32) is
   TensorFlow's (``_decode_and_center_crop``, crop_padding 32) and torchvision's (resize 256,
   crop 224) ImageNet evaluation crop, the protocol of published accuracies.
2. Resize the kept part to (H, W) with Pillow's ``resample`` filter ("bilinear" or "bicubic";
   Pillow low-pass filters when it shrinks).
3. Normalise each channel c in 0-255 pixel units:  x_c = (rgb_c - mean_c) / std_c.
   mean 0, std 255 gives [0, 1]; mean 127, std 128 is the TF-Lite "inception" scale;
   torchvision's ImageNet mean/std times 255 is the PyTorch convention.

``Preprocess`` is a frozen dataclass, so it is a value: two models with equal preprocessing
compare equal, and it travels in a weight file as JSON (``to_json``/``from_json``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .im2col import pair

RESAMPLES = ("bilinear", "bicubic")


def center_crop_box(h, w, fraction=1.0):
    """(top, left, side): the centre square of side int(fraction * min(h, w)) of an h x w image.

    top, left = (h - side + 1) // 2, (w - side + 1) // 2

    Use it to place a heatmap of the model input back onto the original photo.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction!r}")
    side = max(int(fraction * min(h, w)), 1)
    return (h - side + 1) // 2, (w - side + 1) // 2, side


def resize_image(image, size, box=None, resample="bilinear"):
    """Resize an 8-bit image (or the part ``box`` of it) to ``size`` with Pillow's filter.

    Parameters
    ----------
    image : (h, w, C) or (h, w) uint8 array, or a PIL image
    size : (H, W)
    box : (top, left, side) square to take from the image (``center_crop_box``), or None
    resample : "bilinear" or "bicubic"
    Returns
    -------
    (H, W, C) or (H, W) uint8
    """
    # NOTE: Pillow is imported here, so `import minicnn` does not need it
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    filt = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[resample]
    H, W = size
    pil_box = None if box is None else (box[1], box[0], box[1] + box[2], box[0] + box[2])
    return np.asarray(img.resize((W, H), filt, box=pil_box), dtype=np.uint8)


def _per_channel(name, value):
    """A finite number, or a sequence of them (one per channel) -> tuple of floats."""
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not values or not all(isinstance(v, (numbers.Real, np.floating, np.integer))
                             and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"Preprocess {name} must be a finite number or one per channel, "
                         f"got {value!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Preprocess:
    """A model's input pipeline: crop, resize, per-channel (rgb - mean) / std (module docstring).

    Parameters
    ----------
    mean, std : a number, or one per channel, in 0-255 pixel units (std > 0)
    crop : None (resize the whole image) or the fraction in (0, 1] of the short side that the
        kept centre square spans
    resample : "bilinear" or "bicubic" (Pillow's filters)
    """

    mean: tuple
    std: tuple
    crop: float | None = None
    resample: str = "bilinear"

    def __post_init__(self):
        mean, std = _per_channel("mean", self.mean), _per_channel("std", self.std)
        if not all(s > 0 for s in std):
            raise ValueError(f"Preprocess std must be > 0, got {std}")
        crop = self.crop
        if crop is not None:
            if isinstance(crop, bool) or not isinstance(crop, (int, float)) \
                    or not 0.0 < crop <= 1.0:
                raise ValueError(f"Preprocess crop must be None or a fraction in (0, 1], "
                                 f"got {crop!r}")
            crop = float(crop)
        if self.resample not in RESAMPLES:
            raise ValueError(f"Preprocess resample must be one of {RESAMPLES}, "
                             f"got {self.resample!r}")
        # NOTE: a frozen dataclass sets its normalised fields through object.__setattr__
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop", crop)

    def crop_box(self, h, w):
        """(top, left, side) of the centre square the model sees in an h x w image; None when
        the whole image is used (``crop=None``)."""
        return None if self.crop is None else center_crop_box(h, w, self.crop)

    def __call__(self, image, size):
        """The model input for one image.

        x[0, c] = (resize(crop(rgb), size)[..., c] - mean_c) / std_c

        Parameters
        ----------
        image : (h, w, C) uint8 array (C = 3 for RGB), (h, w) uint8 (one channel), or a PIL
            image (converted to RGB)
        size : (H, W) of the model input, or an int for a square
        Returns
        -------
        x : (1, C, H, W) float32
        """
        size = pair(size, "input size")
        if not isinstance(image, np.ndarray):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"image must be an (h, w, C) or (h, w) uint8 array, "
                             f"got {image.dtype} {image.shape}")
        box = self.crop_box(*image.shape[:2])
        small = resize_image(image, size, box, self.resample)
        small = small[:, :, None] if small.ndim == 2 else small  # (H, W, C)
        C = small.shape[2]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, C):
                raise ValueError(f"Preprocess {name} has {len(v)} values for a {C}-channel image")
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (small.astype(np.float32) - mean) / std  # in float32, as the models were fed
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # (H, W, C) -> (1, C, H, W)

    def to_json(self):
        """A JSON-able dict: {"mean": [...], "std": [...], "crop": f or None, "resample": s}."""
        return {"mean": list(self.mean), "std": list(self.std), "crop": self.crop,
                "resample": self.resample}

    @classmethod
    def from_json(cls, d):
        """The inverse of ``to_json``; ValueError for anything else (missing or extra keys,
        wrong values)."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocess must be a JSON object, got {type(d).__name__}")
        keys = {"mean", "std", "crop", "resample"}
        if set(d) != keys:
            raise ValueError(f"preprocess needs exactly the keys {sorted(keys)}, "
                             f"got {sorted(d)}")
        return cls(d["mean"], d["std"], d["crop"], d["resample"])
