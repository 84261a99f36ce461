"""pytorch-grad-cam's two smoothing options, for every channel and position method:
``gradcam.explain(..., eigen_smooth=True)`` and ``gradcam.explain(..., aug_smooth=True)``.

Neither comes from a paper; both are options of pytorch-grad-cam 1.5.7 (``BaseCAM.__call__``,
pytorch_grad_cam/base_cam.py:207-218), reproduced here on this library's conventions.

eigen_smooth (base_cam.py:81-91): the map sum_k alpha_k A^k is replaced by the first principal
component of the weighted activations alpha_k A^k (alpha_k(i, j) A^k_ij for a position method),
image by image:

    X = alpha * A  (N, K, u, v);   linear_map = projection of X on its first right-singular
    vector (``gradcam.family.eigen.principal_projection``: Eigen-CAM's projection, not
    centred, sign such that the map's sum is positive)

NOTE: pytorch-grad-cam centres X first and keeps LAPACK's sign (svd_on_activations.py:15-18);
this option uses the same projection as Eigen-CAM here, a departure of up to 1.0 on the
library's final map (docs/crosscheck.md; ``gradcam.peers.pytorch_grad_cam.first_component(X)``
is the library's projection, tests/test_peers_smoothing.py). ``details[
"eigen_smooth_singular_values"]`` holds the singular values. The weights are the method's own.

aug_smooth (base_cam.py:183-205): the map is averaged over test-time augmentations of the
input, each map un-augmented first. pytorch-grad-cam's default augmentations (base_cam.py:40-46)
are ttach's ``HorizontalFlip()`` times ``Multiply(factors=[0.9, 1, 1.1])``: the "scales" are
intensity factors x -> f x, not spatial rescalings, so only the flip needs undoing (ttach 0.0.3,
transforms.py:20-23 flips a mask back; Multiply is image-only, transforms.py:220-237). Six runs,
in ttach's order (itertools.product of [False, True] and [0.9, 1, 1.1], ttach/base.py:95):

    for (flip, f) in {False, True} x {0.9, 1.0, 1.1}:
        r_t = explain(model, f * flip(x), c)            (the same classes c for every run)
        m_t = max_ij r_t.coarse  (per image; 1 for an all-zero map)
    coarse = 1/6 sum_t unflip(r_t.coarse) / m_t
    linear_map = 1/6 sum_t unflip(r_t.linear_map) / m_t
    heatmap = normalize(resize(coarse, (H, W)))

Each map is divided by its own maximum before the mean, so every augmentation counts equally
(pytorch-grad-cam min-max normalises each map at the input's resolution, base_cam.py:172 and
181, before its mean at line 204). Un-flipping the coarse map equals un-flipping the resized
map: the half-pixel bilinear resize commutes with a flip (tested). The classes c are resolved
once, on the un-augmented input (pytorch-grad-cam, given targets=None, takes each augmented
input's own top-1, base_cam.py:107-109). NOTE: coarse is the mean of the runs' ReLU'd maps
(Eq. (2) per run, as pytorch-grad-cam's np.maximum at base_cam.py:171 comes before the mean),
so coarse >= ReLU(linear_map), not equal. The other fields (logits, A, dA, weights) are those of
the un-augmented run; ``details`` adds "aug_flips" (6,), "aug_factors" (6,) and "aug_coarse"
(6, N, u, v), each run's un-flipped coarse map divided by its maximum, from which
``conventions.from_result("pytorch-grad-cam", r)`` reproduces the library's output.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from minicnn.backend import get_xp

from .engine import weighted_sum
from .family.eigen import principal_projection
from .resize import normalize, resize

__all__ = ["AUG_FACTORS", "AUG_FLIPS", "aug_smooth", "augmentations", "eigen_smooth_map"]

AUG_FLIPS = (False, True)  # ttach.HorizontalFlip's parameters
AUG_FACTORS = (0.9, 1.0, 1.1)  # ttach.Multiply(factors=[0.9, 1, 1.1]) as pytorch-grad-cam sets it


def eigen_smooth_map(alpha, A):
    """eigen_smooth's map: the first principal component of alpha * A, image by image.

    X^k_ij = alpha_k A^k_ij (channel) or alpha_k(i, j) A^k_ij (position);  map = X-matrix v_1

    Parameters
    ----------
    alpha : (N, K) or (N, K, u, v);  A : (N, K, u, v)
    Returns
    -------
    linear_map : (N, u, v);  sigma : (N, min(u*v, K)) the singular values
    """
    weighted_sum(alpha, A)  # validates the shapes with the usual message
    X = alpha[:, :, None, None] * A if alpha.ndim == 2 else alpha * A
    proj, _, sigma = principal_projection(X)
    return proj, sigma


def augmentations():
    """The (flip, factor) pairs in ttach's order: product of AUG_FLIPS and AUG_FACTORS."""
    return [(flip, f) for flip in AUG_FLIPS for f in AUG_FACTORS]


def _flip(a, flip):
    """Horizontal flip of the last axis (ttach's hflip is x.flip(3)); a copy either way."""
    return a[..., ::-1].copy() if flip else a


def aug_smooth(run, x, target):
    """Average a method's maps over pytorch-grad-cam's default test-time augmentations.

    Parameters
    ----------
    run : callable (x_t, target) -> GradCAMResult of a channel or position method
    x : (N, C, H, W) input;  target : as ``explain`` takes it
    Returns
    -------
    GradCAMResult: the un-augmented run's with linear_map, coarse, heatmap replaced by the
    averages (module docstring) and the per-run maps in ``details``
    """
    plain = run(x, target)  # (False, 1.0): resolves the classes once
    c = plain.target
    xp = get_xp(plain.coarse)
    coarse, linear, per_run = 0, 0, []
    for flip, f in augmentations():
        r = plain if (flip, f) == (False, 1.0) else run(_flip(x, flip) * f, c)
        m = r.coarse.max(axis=(1, 2), keepdims=True)
        m = xp.where(m > 0, m, 1)
        per_run.append(_flip(r.coarse / m, flip))
        coarse = coarse + per_run[-1]
        linear = linear + _flip(r.linear_map / m, flip)
    T = len(per_run)
    coarse, linear = coarse / T, linear / T
    details = dict(plain.details)
    details.update(aug_flips=np.array(AUG_FLIPS).repeat(len(AUG_FACTORS)),
                   aug_factors=np.tile(np.array(AUG_FACTORS), len(AUG_FLIPS)),
                   aug_coarse=xp.stack(per_run))
    heatmap = normalize(resize(coarse, tuple(x.shape[-2:])))
    return dataclasses.replace(plain, linear_map=linear, coarse=coarse, heatmap=heatmap,
                               details=type(plain.details)(details))
