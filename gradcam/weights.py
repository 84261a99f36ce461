"""Neuron-importance weights: the one step in which the CAM-family methods differ.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4. Zhou et al., "Learning Deep Features for Discriminative
Localization" (CAM), arXiv:1512.04150v1.

Every weighting here maps the activations A (N, K, U, V) of the chosen layer and the gradient
dA = dy^c/dA (N, K, U, V) to one weight per channel, alpha (N, K); the map is then

    linear_map = sum_k alpha_k A^k       (N, U, V)      inside Eq. (2), before its ReLU
    L^c_Grad-CAM = ReLU(linear_map)                     Eq. (2)

(``gradcam.engine.weighted_sum``). The weightings:

    Grad-CAM        alpha_k^c = 1/Z sum_{i,j} dy^c/dA^k_ij     Eq. (1), Z = U*V
    counterfactual  alpha_k^c = 1/Z sum_{i,j} -dy^c/dA^k_ij    Sec. "Counterfactual Explanations"
    CAM             alpha_k^c = w_k^c     (weight of the final Linear, after global avg pooling)

The method registry (``gradcam.registry``) names each of them and says where it applies; these
functions are the formulas, on plain arrays.

Why Grad-CAM generalises CAM (Sec. "Grad-CAM generalizes CAM"; tested in tests/test_cam_proof.py)
---------------------------------------------------------------------------------------------
Take a CAM head: A -> global average pooling -> Linear(W, b), so with Z = U*V

    F^k = 1/Z sum_{i,j} A^k_ij                      (GAP)
    y^c = sum_k w_k^c F^k + b_c = sum_k w_k^c (1/Z) sum_{i,j} A^k_ij + b_c

The head is linear in A, and every position (i, j) enters with the same coefficient:

    dy^c/dA^k_ij = w_k^c / Z                        (for every i, j)

so the Grad-CAM weight, Eq. (1), is

    alpha_k^c = 1/Z sum_{i,j} w_k^c / Z = w_k^c / Z

and the Grad-CAM map, Eq. (2), is CAM's map M_c = sum_k w_k^c A^k scaled by 1/Z > 0:

    L^c_Grad-CAM = ReLU(sum_k (w_k^c / Z) A^k) = ReLU(M_c) / Z

(ReLU commutes with a positive scale). After the per-image max normalisation of the heatmap
the two are identical. The bias b_c drops out of every gradient. The argument needs the head
to be exactly GAP + Linear (Flatten and eval-mode Dropout in between are identities); with a
Flatten + dense head (e.g. ``minicnn.zoo.shapes_cnn``) dy^c/dA varies with (i, j) and nothing
ties alpha to one weight matrix. The negative control in the proof test checks that failure.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp


def grad_cam_weights(A, dA):
    """Neuron-importance weights: global-average-pooled gradients.

    alpha[n, k] = 1/(U*V) * sum_{i,j} dA[n, k, i, j]     Selvaraju et al., Eq. (1)

    Parameters
    ----------
    A : (N, K, U, V) activations of the target layer (unused; uniform signature)
    dA : (N, K, U, V) gradient of the class score y^c w.r.t. A
    Returns
    -------
    alpha : (N, K)
    """
    return dA.mean(axis=(2, 3))


def counterfactual_weights(A, dA):
    """Counterfactual weights: global-average-pooled NEGATED gradients.

    alpha[n, k] = 1/(U*V) * sum_{i,j} -dA[n, k, i, j]    Sec. "Counterfactual Explanations"

    ReLU(sum_k alpha_k A^k) then shows the regions whose removal would raise y^c. This is
    Grad-CAM of the target -y^c (a backward seeded with -one_hot), since the backward is linear
    in its seed; ``tests/test_gradcam.py`` checks both identities.

    Parameters
    ----------
    A : (N, K, U, V) activations (unused; uniform signature)
    dA : (N, K, U, V) gradient of y^c (not negated) w.r.t. A
    Returns
    -------
    alpha : (N, K)
    """
    return grad_cam_weights(A, -dA)


def cam_weights(fc_weight, target, A):
    """CAM weights (Zhou et al., arXiv:1512.04150v1, Sec. 2): the classifier row w^c per image.

    alpha[n, k] = w[c_n, k]     (the Linear layer after global average pooling, weight (classes, K))

    Parameters
    ----------
    fc_weight : (classes, K) weight of the final Linear layer (PyTorch layout (out, in))
    target : (N,) int class indices, resolved (host array)
    A : (N, K, U, V) activations; only their array module and dtype are used
    Returns
    -------
    alpha : (N, K), in A's array module and dtype
    """
    xp = get_xp(A)
    c = np.asarray(target, dtype=np.int64)
    return xp.asarray(fc_weight)[xp.asarray(c)].astype(A.dtype, copy=False)
