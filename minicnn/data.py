"""Synthetic "shapes" images: a tiny, seeded data set that needs no download.

Each image holds coloured geometric objects (circle, square, triangle, cross) drawn on a textured,
noisy background. The class is carried by the *shape* only: the colour is drawn at random,
independent of the class, so a network (and its Grad-CAM map) has to look at the object's outline.
Every object comes with its pixel mask and bounding box, which is what the localisation checks of
Grad-CAM (Selvaraju et al., arXiv:1610.02391v4, Sec. 4) need as ground truth.

- ``make_shapes``: one object per image, for training and classification tests.
- ``make_scenes``: two objects of different classes per image, for class-discrimination tests
  (does the map for class A land on object A and not on object B?); with ``same_class=True``
  two objects of one class (does the map find both instances?).

Everything is vectorised over a chunk of images on coordinate grids; only ``np.random.default_rng``
is used, so a seed gives bit-identical arrays on every run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CLASSES = ("circle", "square", "triangle", "cross")

_CHUNK = 256  # images rendered at once: bounds the (B, 3, H, W) temporaries to a few MB
_CANDIDATES = 8  # colours tried per object before keeping the most contrasting one
MIN_CONTRAST = 0.45  # wanted RGB distance between an object and its local background
# Largest tilt per class (radians). Squares and crosses stay nearly upright so a cross never turns
# into an "x" and a square never into a diamond; a triangle's 120-degree symmetry means +-60 degrees
# already gives every orientation.
_MAX_TILT = np.array([0.0, np.pi / 12, np.pi / 3, np.pi / 12], dtype=np.float32)


class ShapesData(NamedTuple):
    """One object per image; boxes are (x0, y0, x1, y1), inclusive-exclusive, x = column."""

    images: np.ndarray  # (N, 3, H, W) float in [0, 1]
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray  # (N, H, W) bool, the object's pixels
    boxes: np.ndarray  # (N, 4) int64, bounding box of the mask
    class_names: tuple


class SceneData(NamedTuple):
    """Two objects per image: labels, masks and boxes gain an object axis (length 2) after N."""

    images: np.ndarray  # (N, 3, H, W) float in [0, 1]
    labels: np.ndarray  # (N, 2) int64
    masks: np.ndarray  # (N, 2, H, W) bool
    boxes: np.ndarray  # (N, 2, 4) int64
    class_names: tuple


def make_shapes(n, seed=0, size=64, dtype="float32"):
    """Generate ``n`` images with one object each, of a random class, place, size and colour.

    Classes are balanced (``n // 4`` or one more each) and shuffled. An object spans roughly 14-30
    pixels at ``size=64`` (scaled with ``size``) and lies wholly inside the image.

    Parameters
    ----------
    n : number of images, >= 1
    seed : anything ``np.random.default_rng`` accepts; the same seed gives identical arrays
    size : image height and width H = W, >= 16
    dtype : "float32" (default) or "float64"; only the precision of the stored images changes
    Returns
    -------
    ShapesData with images (n, 3, size, size), labels (n,), masks (n, size, size), boxes (n, 4)

    Examples
    --------
    >>> d = make_shapes(8, seed=0)
    >>> d.images.shape, d.images.dtype.name, d.labels.dtype.name, d.boxes.shape
    ((8, 3, 64, 64), 'float32', 'int64', (8, 4))
    """
    n, size, dtype = _check(n, size, dtype)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    r = rng.uniform(*_radius_range(size, 7.0, 15.0), n)
    # this centre range keeps the whole object (within r of its centre) 1 px off the edge
    cx = rng.uniform(r + 1, size - 2 - r)
    cy = rng.uniform(r + 1, size - 2 - r)
    images, masks = _render(rng, labels[:, None], cx[:, None], cy[:, None], r[:, None], size)
    masks = masks[:, 0]
    return ShapesData(images.astype(dtype, copy=False), labels.astype(np.int64), masks,
                      _boxes(masks), CLASSES)


def make_scenes(n, seed=0, size=64, dtype="float32", same_class=False):
    """Generate ``n`` images with two objects of two different classes that do not touch (with
    ``same_class``: two instances of one class, Grad-CAM++'s multiple-instance case).

    The objects (roughly 12-22 pixels across at ``size=64``) are separated by a gap of at least
    ``max(2, 3 * size / 64)`` pixels, so their masks are disjoint.

    Parameters
    ----------
    n : number of images, >= 1
    seed : anything ``np.random.default_rng`` accepts; the same seed gives identical arrays
    size : image height and width H = W, >= 16
    dtype : "float32" (default) or "float64"
    same_class : False (default): labels[:, 1] != labels[:, 0]. True: the second object is of
        the first's class, labels[:, 1] == labels[:, 0]: Grad-CAM++'s "occurrences of multiple
        objects of a class in a single image" (Chattopadhay et al., WACV 2018, arXiv:1710.11063,
        abstract). The random draws are the same either way, so one seed gives the same layout,
        sizes, colours and background, and only the second object's shape differs
    Returns
    -------
    SceneData with images (n, 3, size, size), labels (n, 2), masks (n, 2, size, size),
    boxes (n, 2, 4)
    """
    n, size, dtype = _check(n, size, dtype)
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    first = rng.integers(0, k, n)
    # adding 1..k-1 modulo k gives a different class, uniform over the ordered pairs
    second = (first + rng.integers(1, k, n)) % k  # drawn either way: same stream for same_class
    labels = np.stack([first, first if same_class else second], axis=1)
    r = rng.uniform(*_radius_range(size, 6.0, 11.0), (n, 2))
    cx, cy, r = _place_pair(rng, r, size, gap=max(2.0, 3.0 * size / 64))
    images, masks = _render(rng, labels, cx, cy, r, size)
    return SceneData(images.astype(dtype, copy=False), labels.astype(np.int64), masks,
                     _boxes(masks), CLASSES)


def _check(n, size, dtype):
    """Validate the public arguments; return them normalised (int, int, np.dtype)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    # NOTE: test `dt is None` first; np.dtype(None) is float64, so None == float64 is True
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return int(n), int(size), dt


def _radius_range(size, lo, hi):
    """Object half-extent range [lo, hi] pixels at size 64, scaled to ``size``; at least 3 px so
    that the smallest triangle or cross is still more than a few pixels."""
    s = size / 64
    r_lo = max(lo * s, 3.0)
    return r_lo, max(hi * s, r_lo + 1.0)


def _place_pair(rng, r, size, gap):
    """Centres for two objects whose bounding squares [c - r, c + r] are ``gap`` apart.

    Every shape lies inside its bounding square (see ``_rasterise``), so separated squares mean
    disjoint masks. Tries ``_CANDIDATES`` random layouts per image at once and keeps the first valid
    one; the rare image where all fail gets a side-by-side layout with shrunk radii.
    r (N, 2) wanted half-extents -> cx, cy, r, each (N, 2).
    """
    n = r.shape[0]
    shape = (n, _CANDIDATES, 2)
    rr = np.broadcast_to(r[:, None, :], shape)
    cx = rng.uniform(rr + 1, size - 2 - rr, shape)
    cy = rng.uniform(rr + 1, size - 2 - rr, shape)
    need = r.sum(axis=1)[:, None] + gap  # (N, 1) centre separation along x or y
    ok = (np.abs(cx[..., 0] - cx[..., 1]) >= need) | (np.abs(cy[..., 0] - cy[..., 1]) >= need)
    pick = ok.argmax(axis=1)  # first valid candidate (index 0 when none is valid)
    rows = np.arange(n)
    cx, cy, r = cx[rows, pick], cy[rows, pick], r.copy()
    bad = ~ok.any(axis=1)
    if bad.any():
        # side by side: 4 * rho + gap fits between the one-pixel margins
        rho = np.minimum(r[bad], (size - 3 - gap) / 4).min(axis=1, keepdims=True)
        r[bad] = rho
        cx[bad] = np.concatenate([1 + rho, size - 2 - rho], axis=1)
        cy[bad] = rng.uniform(rho + 1, size - 2 - rho, (int(bad.sum()), 2))
    return cx, cy, r


def _render(rng, labels, cx, cy, r, size):
    """Draw backgrounds, objects and noise for a batch of images, chunk by chunk.

    labels, cx, cy, r : (N, M) class, centre (column, row) and half-extent of M objects per image
    -> images (N, 3, size, size) float32 in [0, 1], masks (N, M, size, size) bool
    """
    n, m = labels.shape
    theta = (rng.uniform(-1, 1, (n, m)) * _MAX_TILT[labels]).astype(np.float32)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, m, size, size), dtype=bool)
    Y, X = np.mgrid[0:size, 0:size].astype(np.float32)  # Y = row, X = column (pixel centres)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        bg = _background(rng, sl.stop - start, X, Y)
        img = bg.copy()
        for j in range(m):
            ox = cx[sl, j, None, None].astype(np.float32)  # (B, 1, 1)
            oy = cy[sl, j, None, None].astype(np.float32)
            orr = r[sl, j, None, None].astype(np.float32)
            mask = _rasterise(labels[sl, j], X - ox, Y - oy, orr, theta[sl, j, None, None])
            # the colour is judged against the background of the square around the object plus a
            # 3-pixel margin, i.e. what the eye compares the object with
            near = (np.abs(X - ox) <= orr + 3) & (np.abs(Y - oy) <= orr + 3)
            colour = _pick_colour(rng, bg, near)
            img = np.where(mask[:, None], colour[:, :, None, None], img)
            masks[sl, j] = mask
        sigma = rng.uniform(0.02, 0.05, (sl.stop - start, 1, 1, 1)).astype(np.float32)
        img += sigma * rng.standard_normal(img.shape, dtype=np.float32)  # sensor-like noise
        np.clip(img, 0.0, 1.0, out=images[sl])
    return images, masks


def _background(rng, b, X, Y):
    """Textured background: a colour ramp, three soft colour blobs and faint grey stripes.

    All of it is low-frequency, so the crisp object edges stay the only sharp structure (besides
    the per-pixel noise added later), but a model cannot find the object by "anything not flat".

    Returns
    -------
    bg : (B, 3, H, W) float32 in [0, 1]
    """
    size = X.shape[0]
    f32 = np.float32
    c0 = rng.uniform(0.15, 0.85, (b, 3, 1, 1)).astype(f32)
    c1 = rng.uniform(0.15, 0.85, (b, 3, 1, 1)).astype(f32)
    phi = rng.uniform(0, 2 * np.pi, (b, 1, 1)).astype(f32)
    # ramp t in [0, 1] across the image along direction phi: (B, H, W)
    t = ((X - size / 2) * np.cos(phi) + (Y - size / 2) * np.sin(phi)) / size + 0.5
    bg = c0 + (c1 - c0) * np.clip(t, 0, 1)[:, None]
    # blobs: 3 Gaussian bumps of random colour, sigma 8-25 % of the image
    bx = rng.uniform(0, size, (b, 3, 1)).astype(f32)
    by = rng.uniform(0, size, (b, 3, 1)).astype(f32)
    bs = rng.uniform(0.08 * size, 0.25 * size, (b, 3, 1)).astype(f32)
    amp = rng.uniform(-0.25, 0.25, (b, 3, 3)).astype(f32)  # (B, blob, channel)
    # a Gaussian is separable, exp(-(x^2 + y^2)) = exp(-x^2) exp(-y^2), so the blob sum is one
    # batched matmul (B, 3*H, blobs) @ (B, blobs, W) instead of B*blobs*H*W exponentials
    gx = np.exp(-((X[0] - bx) ** 2) / (2 * bs**2))  # (B, blobs, W)
    gy = np.exp(-((Y[:, 0] - by) ** 2) / (2 * bs**2))  # (B, blobs, H)
    cols = np.einsum("bkc,bkh->bchk", amp, gy).reshape(b, 3 * size, -1)
    bg += (cols @ gx).reshape(b, 3, size, size)
    # stripes: a faint grey sinusoid, 2-6 periods per image, any orientation
    psi = rng.uniform(0, np.pi, (b, 1, 1)).astype(f32)
    freq = rng.uniform(2, 6, (b, 1, 1)).astype(f32)
    phase = rng.uniform(0, 2 * np.pi, (b, 1, 1)).astype(f32)
    a = rng.uniform(0, 0.06, (b, 1, 1)).astype(f32)
    u = X * np.cos(psi) + Y * np.sin(psi)
    bg += (a * np.sin(2 * np.pi * freq * u / size + phase))[:, None]
    return np.clip(bg, 0, 1)


def _pick_colour(rng, bg, near):
    """Choose a saturated colour far from the local background.

    Draws ``_CANDIDATES`` random hues (saturation and value in [0.75, 1] and [0.6, 1]) and keeps
    the first whose RGB distance from the mean background in ``near`` is >= MIN_CONTRAST, else the
    farthest one. The choice depends on the background only, never on the class.
    bg (B, 3, H, W), near (B, H, W) bool: the pixels the object is compared with -> (B, 3) float32.
    """
    b = bg.shape[0]
    local = np.einsum("bchw,bhw->bc", bg, near.astype(bg.dtype)) / near.sum(axis=(1, 2))[:, None]
    h = rng.uniform(0, 1, (b, _CANDIDATES, 1))
    s = rng.uniform(0.75, 1, (b, _CANDIDATES, 1))
    v = rng.uniform(0.6, 1, (b, _CANDIDATES, 1))
    # HSV -> RGB in closed form: channel value v - v*s*clip(min(k, 4 - k), 0, 1), k = (o + 6h) % 6
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h) % 6  # (B, candidates, 3) for R, G, B
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    dist = np.linalg.norm(rgb - local[:, None, :], axis=2)  # (B, candidates)
    good = dist >= MIN_CONTRAST
    pick = np.where(good.any(axis=1), good.argmax(axis=1), dist.argmax(axis=1))
    return rgb[np.arange(b), pick].astype(np.float32)


def _rasterise(labels, dx, dy, r, theta):
    """Pixel masks of the shapes, by vectorised inside tests on the offset grids.

    Every shape fits in the square |dx|, |dy| <= r (``_place_pair`` relies on this): a circle of
    radius r; a square of half-side r / (|cos| + |sin|); an equilateral triangle of circumradius r;
    a plus of arm half-width r / 4 whose tips reach r.
    labels (B,); dx, dy (B, H, W) offsets from the centre (column, row); r, theta (B, 1, 1)
    half-extent and tilt in radians -> mask (B, H, W) bool.
    """
    mask = np.zeros(dx.shape, dtype=bool)
    for k, inside in enumerate((_circle, _square, _triangle, _cross)):
        sel = labels == k  # each test runs only on the images of its own class
        if sel.any():
            mask[sel] = inside(dx[sel], dy[sel], r[sel], theta[sel])
    return mask


def _tilted(dx, dy, theta):
    """Offsets in the object's own frame, rotated by -theta: (u, v), |cos|, |sin|."""
    c, s = np.cos(theta), np.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c, np.abs(c), np.abs(s)


def _circle(dx, dy, r, theta):
    return dx**2 + dy**2 <= r**2


def _square(dx, dy, r, theta):
    u, v, ac, as_ = _tilted(dx, dy, theta)
    h = r / (ac + as_)  # the tilted square's corners just reach r along x and y
    return (np.abs(u) <= h) & (np.abs(v) <= h)


def _triangle(dx, dy, r, theta):
    # inside all three half-planes n_k . p <= r / 2 (the inradius), normals 120 degrees apart;
    # with theta = 0 the base is at the bottom (rows grow downward) and the apex points up
    inside = np.ones(dx.shape, dtype=bool)
    for k in range(3):
        a = theta + np.pi / 2 + k * 2 * np.pi / 3
        inside &= dx * np.cos(a) + dy * np.sin(a) <= r / 2
    return inside


def _cross(dx, dy, r, theta):
    u, v, ac, as_ = _tilted(dx, dy, theta)
    w = 0.25 * r
    arm = (r - w * as_) / ac  # the tilted bar's far corner just reaches r
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= w)) | ((au <= w) & (av <= arm))


def _boxes(masks):
    """Bounding boxes (x0, y0, x1, y1), inclusive-exclusive, of masks (..., H, W) -> (..., 4)."""
    rows, cols = masks.any(axis=-1), masks.any(axis=-2)  # (..., H), (..., W)
    H, W = masks.shape[-2:]
    y0, y1 = rows.argmax(axis=-1), H - rows[..., ::-1].argmax(axis=-1)
    x0, x1 = cols.argmax(axis=-1), W - cols[..., ::-1].argmax(axis=-1)
    return np.stack([x0, y0, x1, y1], axis=-1).astype(np.int64)
