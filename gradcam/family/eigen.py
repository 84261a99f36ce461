"""Eigen-CAM and EigenGradCAM: the first principal component of a layer's output.

Eigen-CAM: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020, arXiv:2008.00299v1. The paper reshapes the layer's output O (here A) to a matrix
with one row per position and one column per channel, takes its singular value decomposition
O = U Sigma V^T, and shows the projection of O on the first right-singular vector:

    M = A reshaped to (u*v, K)            M[(i, j), k] = A^k_ij       (one image)
    M = U Sigma V^T                        sigma_1 >= sigma_2 >= ... >= 0
    L_Eigen-CAM = M v_1                    (u*v,), reshaped to (u, v)

No gradient and no class score enter: the map is class-agnostic (tested: changing the target
changes nothing). Since M v_1 = sum_k v_1k A^k, the map is a weighted sum of the channels with
alpha_k = v_1k, so ``explain`` returns alpha = v_1 as per-channel weights (kind "channel", where
the issue's table says "per position"): the weights then say what the map is, and the weighted
sum inside Grad-CAM's Eq. (2) reproduces it exactly.

NOTE: A is not centred. The paper takes the SVD of O itself; pytorch-grad-cam 1.5.7 subtracts
each channel's mean over positions first (pytorch_grad_cam/utils/svd_on_activations.py:15-16),
which makes its "principal component" the one of the covariance, a different map
(``principal_projection(..., centre=True)`` computes it; checked once against
``get_2d_projection`` on shapes_cnn's relu4: equal up to sign, to float32 round-off).

The sign. An SVD fixes v_1 only up to sign (M v_1 and M (-v_1) are both valid), and LAPACK's
choice is arbitrary (pytorch-grad-cam keeps it: svd_on_activations.py:17-18). This module fixes
it: **the sign that makes the map's sum positive**, sum_ij L_ij = sigma_1 (1^T u_1) > 0, so
the ReLU of Grad-CAM's Eq. (2) keeps the larger part of the component's mass. Why this one: for
a post-ReLU layer (A >= 0, the paper's setting) M^T M has no negative entry, so by
Perron-Frobenius v_1 and u_1 can be taken entrywise non-negative; that choice has a positive
sum, so this convention picks exactly it and the map is >= 0 everywhere (tested). It is stable
unless the sum is within round-off of zero; then (|sum| <= u*v * eps * sum |L|) the largest
|v_1k| is made positive.

EigenGradCAM (pytorch-grad-cam's EigenGradCAM, a library method without a paper:
pytorch_grad_cam/eigen_grad_cam.py:21 projects grads * activations): the same projection of
the element-wise product dA * A, with dA = dy^c/dA:

    M = (dA * A) reshaped to (u*v, K);  L = M v_1 = sum_k v_1k dA^k_ij A^k_ij

which is a per-position weighting alpha_k(i, j) = v_1k dA^k_ij (kind "position"). Here A is not
centred either and the sign is the one above (pytorch-grad-cam centres and keeps LAPACK's sign).
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..method import Method, MethodOutput

__all__ = ["METHODS", "eigen_cam_weights", "eigen_grad_cam_weights", "principal_projection"]

EIGEN_CAM = "Muhammad & Yeasin, IJCNN 2020, arXiv:2008.00299v1"


def principal_projection(X, centre=False, sign="sum"):
    """The projection of each image's (u*v, K) matrix on its first right-singular vector.

    M = X[n] reshaped to (u*v, K) (minus its column means if ``centre``);  M = U Sigma V^T;
    projection = M v_1, reshaped to (u, v)

    Parameters
    ----------
    X : (N, K, u, v) array (A for Eigen-CAM, dA * A for EigenGradCAM, alpha * A for eigen_smooth)
    centre : subtract each channel's mean over positions first (pytorch-grad-cam's choice,
        svd_on_activations.py:15-16); False is the Eigen-CAM paper's
    sign : "sum" (this module's convention: the projection's sum is positive, ties broken by
        the largest |v_1k| being positive; see the module docstring; with ``centre`` the sum is
        zero by construction and the tie-break decides) or None (the sign the SVD returned)
    Returns
    -------
    projection : (N, u, v);  v1 : (N, K) the first right-singular vectors, unit length, signed
    like the projection;  sigma : (N, min(u*v, K)) the singular values, descending
    """
    xp = get_xp(X)
    N, K, u, v = X.shape
    M = X.reshape(N, K, u * v).transpose(0, 2, 1)  # (N, u*v, K): a row per position
    if centre:
        M = M - M.mean(axis=1, keepdims=True)
    _, sigma, VT = xp.linalg.svd(M, full_matrices=False)  # stacked SVD, one per image
    v1 = VT[:, 0, :]  # (N, K)
    proj = (M @ v1[:, :, None])[:, :, 0]  # (N, u*v)
    if sign == "sum":
        total = proj.sum(axis=1)
        eps = xp.finfo(proj.dtype).eps
        # NOTE: centred columns sum to zero, so a centred projection's sum is zero by
        # construction: there the tie-break (largest |v_1k| positive) is the rule
        tie = xp.abs(total) <= u * v * eps * xp.abs(proj).sum(axis=1)
        if centre:
            tie = xp.ones_like(tie)
        peak = v1[xp.arange(N), xp.abs(v1).argmax(axis=1)]  # the largest |v_1k|, signed
        s = xp.where(tie, xp.sign(peak), xp.sign(total))
        s = xp.where(s == 0, 1, s).astype(proj.dtype)  # an all-zero X: keep it as it is
        proj, v1 = proj * s[:, None], v1 * s[:, None]
    elif sign is not None:
        raise ValueError(f"sign must be 'sum' or None, got {sign!r}")
    return proj.reshape(N, u, v), v1, sigma


def eigen_cam_weights(A):
    """Eigen-CAM's channel weights: alpha = v_1, the first right-singular vector of A.

    M = A reshaped (u*v, K) = U Sigma V^T;  alpha_k = v_1k;  sum_k alpha_k A^k = M v_1

    Parameters
    ----------
    A : (N, K, u, v)
    Returns
    -------
    alpha : (N, K);  sigma : (N, min(u*v, K)) the singular values of each image's M
    """
    _, v1, sigma = principal_projection(A)
    return v1, sigma


def eigen_grad_cam_weights(A, dA):
    """EigenGradCAM's per-position weights: alpha_k(i, j) = v_1k dA^k_ij, with v_1 the first
    right-singular vector of (dA * A) reshaped (u*v, K).

    sum_k alpha_k(i, j) A^k_ij = sum_k v_1k (dA * A)^k_ij = (M v_1)_ij

    Parameters
    ----------
    A, dA : (N, K, u, v)
    Returns
    -------
    alpha : (N, K, u, v);  v1 : (N, K);  sigma : (N, min(u*v, K))
    """
    _, v1, sigma = principal_projection(dA * A)
    return v1[:, :, None, None] * dA, v1, sigma


def _eigencam(ctx):
    alpha, sigma = eigen_cam_weights(ctx.A)
    return MethodOutput(weights=alpha, details={"singular_values": sigma})


def _eigengradcam(ctx):
    alpha, v1, sigma = eigen_grad_cam_weights(ctx.A, ctx.dA)
    return MethodOutput(weights=alpha, details={"singular_values": sigma, "v1": v1})


METHODS = (
    Method("eigencam", "Eigen-CAM", EIGEN_CAM + " (the projection of A on its first principal "
           "component, A not centred; sign: positive sum)", "channel", False, "last-spatial",
           _eigencam, fast_n=25),
    Method("eigengradcam", "EigenGradCAM",
           "pytorch-grad-cam 1.5.7, pytorch_grad_cam/eigen_grad_cam.py:21: Eigen-CAM's "
           "projection (" + EIGEN_CAM + ") of dA * A", "position", True, "last-spatial",
           _eigengradcam, fast_n=25),
)
