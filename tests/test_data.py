"""Tests for the synthetic shapes data (minicnn.data).

Every geometric fact (boxes, disjointness, visibility, which shape was drawn) is recomputed here
from the masks and pixels with independent code, never read back from the generator's internals.
"""

import numpy as np
import pytest

from minicnn.data import CLASSES, SceneData, ShapesData, make_scenes, make_shapes

N_SHAPES = 400
N_SCENES = 200
SIZE = 64
MIN_RING_CONTRAST = 0.3  # RGB distance, mean inside the mask vs a 2-pixel ring around it
RING = 2


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(N_SHAPES, seed=1)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(N_SCENES, seed=2)


def _dilate(m, k):
    """Dilate masks (..., H, W) by a (2k+1)^2 square: OR of shifted views of a padded copy."""
    H, W = m.shape[-2:]
    p = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(k, k), (k, k)])
    out = np.zeros_like(m)
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            out |= p[..., dy : dy + H, dx : dx + W]
    return out


def _box_of(mask):
    """(x0, y0, x1, y1), inclusive-exclusive, of one (H, W) mask, from np.nonzero."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def _mean_colour(images, region):
    """Mean RGB of images (N, 3, H, W) over region (N, H, W) -> (N, 3)."""
    w = region.astype(np.float64)
    return np.einsum("nchw,nhw->nc", images, w) / w.sum(axis=(1, 2))[:, None]


def _contrast(images, mask, exclude=None):
    """RGB distance between the mean inside each mask and the mean in a ring just outside it."""
    ring = _dilate(mask, RING) & ~mask
    if exclude is not None:
        ring &= ~exclude
    return np.linalg.norm(_mean_colour(images, mask) - _mean_colour(images, ring), axis=1)


def _classify_mask(mask):
    """Name the shape of a single (H, W) mask from its geometry alone.

    compactness = area / (pi * (max distance from centroid + 0.5)^2): ~0.9 for a disc, ~0.64 for a
    square, <= ~0.55 for a triangle or a plus. A plus leaves the four corners of its box empty; a
    triangle always has a vertex in a box corner (four extremes, three vertices).
    """
    ys, xs = np.nonzero(mask)
    rmax = np.sqrt(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max())
    compact = len(ys) / (np.pi * (rmax + 0.5) ** 2)
    x0, y0, x1, y1 = _box_of(mask)
    c = mask[y0:y1, x0:x1]
    kh, kw = max(1, round(c.shape[0] / 4)), max(1, round(c.shape[1] / 4))
    corner = max(q.mean() for q in (c[:kh, :kw], c[:kh, -kw:], c[-kh:, :kw], c[-kh:, -kw:]))
    if compact >= 0.78:
        return "circle"
    if corner < 0.35:
        return "cross"
    return "square" if compact >= 0.55 else "triangle"


def test_make_shapes_shapes_dtypes_ranges(shapes):
    assert isinstance(shapes, ShapesData)
    assert shapes.images.shape == (N_SHAPES, 3, SIZE, SIZE)
    assert shapes.images.dtype == np.float32
    assert shapes.labels.shape == (N_SHAPES,) and shapes.labels.dtype == np.int64
    assert shapes.masks.shape == (N_SHAPES, SIZE, SIZE) and shapes.masks.dtype == bool
    assert shapes.boxes.shape == (N_SHAPES, 4) and shapes.boxes.dtype == np.int64
    assert shapes.class_names == CLASSES == ("circle", "square", "triangle", "cross")
    assert np.isfinite(shapes.images).all()
    assert shapes.images.min() >= 0.0 and shapes.images.max() <= 1.0
    assert shapes.labels.min() >= 0 and shapes.labels.max() < len(CLASSES)


def test_make_shapes_float64_only_changes_precision():
    a = make_shapes(8, seed=3)
    b = make_shapes(8, seed=3, dtype="float64")
    assert b.images.dtype == np.float64
    np.testing.assert_allclose(b.images, a.images, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(b.masks, a.masks)


def test_make_shapes_size_scales_objects():
    for size in (32, 128):
        d = make_shapes(40, seed=4, size=size)
        assert d.images.shape == (40, 3, size, size) and d.masks.shape == (40, size, size)
        extent = np.maximum(d.boxes[:, 2] - d.boxes[:, 0], d.boxes[:, 3] - d.boxes[:, 1])
        assert extent.min() >= 10 * size / 64 - 1 and extent.max() <= 31 * size / 64 + 1


def test_make_shapes_deterministic_per_seed():
    a, b = make_shapes(50, seed=7), make_shapes(50, seed=7)
    for name in ("images", "labels", "masks", "boxes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = make_shapes(50, seed=8)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.masks, c.masks)


def test_make_scenes_deterministic_per_seed():
    a, b = make_scenes(30, seed=7), make_scenes(30, seed=7)
    for name in ("images", "labels", "masks", "boxes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = make_scenes(30, seed=8)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.labels, c.labels)


def test_make_shapes_labels_cover_classes_uniformly(shapes):
    counts = np.bincount(shapes.labels, minlength=len(CLASSES))
    assert len(counts) == len(CLASSES)
    expected = N_SHAPES / len(CLASSES)
    assert np.all(np.abs(counts - expected) <= 0.2 * expected), counts
    # shuffled, not sorted into class blocks
    assert len(np.unique(shapes.labels[:20])) > 1


def test_make_shapes_masks_nonempty_and_inside(shapes):
    m = shapes.masks
    assert (m.sum(axis=(1, 2)) > 0).all()
    # whole object inside the image: nothing of it on the border rows and columns
    assert not m[:, 0, :].any() and not m[:, -1, :].any()
    assert not m[:, :, 0].any() and not m[:, :, -1].any()
    b = shapes.boxes
    extent = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])  # 14-30 px objects, pixelised
    assert extent.min() >= 9 and extent.max() <= 32


def test_make_shapes_boxes_equal_mask_bounds(shapes):
    for mask, box in zip(shapes.masks, shapes.boxes):
        np.testing.assert_array_equal(box, _box_of(mask))


def test_make_shapes_label_matches_drawn_shape(shapes):
    names = np.array([_classify_mask(m) for m in shapes.masks])
    truth = np.array(CLASSES)[shapes.labels]
    assert (names == truth).mean() >= 0.99, list(zip(names[names != truth], truth[names != truth]))


def test_make_shapes_colour_independent_of_class(shapes):
    colour = _mean_colour(shapes.images, shapes.masks)  # (N, 3)
    per_class = np.stack([colour[shapes.labels == k].mean(axis=0) for k in range(len(CLASSES))])
    # 100 random colours per class: class means agree to within a few standard errors
    assert np.ptp(per_class, axis=0).max() < 0.15, per_class
    assert colour.std(axis=0).min() > 0.2  # and the colours themselves vary a lot


def test_make_shapes_object_visible(shapes):
    c = _contrast(shapes.images, shapes.masks)
    assert c.min() > MIN_RING_CONTRAST, (c.argmin(), c.min())


def test_make_scenes_shapes_and_labels(scenes):
    assert isinstance(scenes, SceneData)
    assert scenes.images.shape == (N_SCENES, 3, SIZE, SIZE) and scenes.images.dtype == np.float32
    assert scenes.labels.shape == (N_SCENES, 2) and scenes.labels.dtype == np.int64
    assert scenes.masks.shape == (N_SCENES, 2, SIZE, SIZE) and scenes.masks.dtype == bool
    assert scenes.boxes.shape == (N_SCENES, 2, 4) and scenes.boxes.dtype == np.int64
    assert scenes.class_names == CLASSES
    assert scenes.images.min() >= 0.0 and scenes.images.max() <= 1.0
    assert (scenes.labels[:, 0] != scenes.labels[:, 1]).all()
    pairs = {tuple(p) for p in scenes.labels.tolist()}
    assert len(pairs) == len(CLASSES) * (len(CLASSES) - 1)  # every ordered pair occurs


def test_make_scenes_masks_disjoint_with_gap(scenes):
    m = scenes.masks
    assert (m.sum(axis=(2, 3)) > 0).all()
    assert not (m[:, 0] & m[:, 1]).any()
    # at least one empty pixel between the objects, in every direction
    assert not (_dilate(m[:, 0], 1) & m[:, 1]).any()
    assert not m[..., 0, :].any() and not m[..., -1, :].any()
    assert not m[..., :, 0].any() and not m[..., :, -1].any()
    for masks, boxes in zip(m, scenes.boxes):
        for mask, box in zip(masks, boxes):
            np.testing.assert_array_equal(box, _box_of(mask))


def test_make_scenes_both_objects_visible_and_labelled(scenes):
    m = scenes.masks
    for j in range(2):
        c = _contrast(scenes.images, m[:, j], exclude=m[:, 1 - j])
        assert c.min() > MIN_RING_CONTRAST, (j, c.argmin(), c.min())
    names = np.array([[_classify_mask(mask) for mask in pair] for pair in m])
    assert (names == np.array(CLASSES)[scenes.labels]).mean() >= 0.97


def test_make_scenes_small_images_still_valid():
    # 16 px leaves no room for random placement: the side-by-side fallback must keep masks apart
    d = make_scenes(20, seed=5, size=16)
    assert (d.masks.sum(axis=(2, 3)) > 0).all()
    assert not (_dilate(d.masks[:, 0], 1) & d.masks[:, 1]).any()


@pytest.mark.parametrize("make", [make_shapes, make_scenes])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": -3},
        {"n": 2.5},
        {"n": True},
        {"n": 4, "size": 15},
        {"n": 4, "size": 32.0},
        {"n": 4, "dtype": "int32"},
        {"n": 4, "dtype": "float16"},
        {"n": 4, "dtype": "not-a-dtype"},
    ],
)
def test_make_data_rejects_bad_arguments(make, kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)
