"""Gradient-times-activation members of the family: XGrad-CAM, HiResCAM, Grad-CAM element-wise,
LayerCAM. Each is a weighting of the same A and dA = dy^c/dA that Grad-CAM uses.

    XGrad-CAM      alpha_k^c = sum_ij (A^k_ij / sum_ab A^k_ab) dA^k_ij         per channel
    HiResCAM       alpha_k^c(i, j) = dA^k_ij                                    per position
    element-wise   alpha_k^c(i, j) = dA^k_ij [dA^k_ij A^k_ij > 0]               per position
    LayerCAM       alpha_k^c(i, j) = relu(dA^k_ij)                              per position

and, as for every method, linear_map = sum_k alpha_k A^k and L^c = relu(linear_map).

XGrad-CAM: Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
CNNs", BMVC 2020, arXiv:2008.02312v4. The paper derives the weight above from two axioms,
Sensitivity and Conservation, met as nearly as possible; for a ReLU network the class score
decomposes as S^c = sum_k sum_ij (dS^c/dA^k_ij) A^k_ij + (bias terms) (the paper's Eq. (5)).
NOTE: 0/0 -> 0: a channel whose activations sum to exactly 0 gets weight 0 (with A >= 0 that
channel is all zeros and adds nothing to the map); pytorch-grad-cam and torchcam add a small
epsilon instead.
Conservation, tested: on a GAP + Linear head, sum_ij linear_map = y^c - b_c exactly.

HiResCAM: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", 2020, arXiv:2011.08891v4: the gradient multiplies the
activations element-wise and the products are summed over the channels,
linear_map(i, j) = sum_k dA^k_ij A^k_ij (no averaging of the gradient over positions).
On a GAP + Linear head dA^k_ij = w_k^c / Z at every position, so HiResCAM's linear map is
Grad-CAM's and equals CAM's M_c / Z (tested).

Grad-CAM element-wise is no paper's method: it is pytorch-grad-cam 1.5.7's GradCAMElementWise
(pytorch_grad_cam/grad_cam_elementwise.py:23, ``np.maximum(grads * activations, 0)``, then
``.sum(axis=1)``): linear_map(i, j) = sum_k relu(dA^k_ij A^k_ij). NOTE: the registry forms
sum_k alpha_k(i, j) A^k_ij, so the weight chosen is alpha = dA [dA A > 0]: alpha A = dA A
where the product is positive and 0 elsewhere, which is relu(dA A) term by term.

LayerCAM: Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE Transactions on Image Processing 30:5875-5888, 2021,
doi:10.1109/TIP.2021.3089943 (no arXiv version found; the authors' code,
PengtaoJiang/LayerCAM-jittor, links the journal's PDF): the positive gradient weights each position,
alpha_k^c(i, j) = relu(dA^k_ij), linear_map = sum_k relu(dA^k) A^k. At a ReLU layer (A >= 0)
this equals the element-wise map term by term (relu(g) a = relu(g a) for a >= 0; tested). The
paper's fusion of several layers is ``gradcam.fusion`` (``explain_layers(fusion="layercam")``).
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..method import Method

__all__ = ["METHODS", "elementwise_weights", "hirescam_weights", "layercam_weights",
           "xgradcam_weights"]

XGRAD_CAM = "Fu et al., BMVC 2020, arXiv:2008.02312v4"
HIRES_CAM = "Draelos & Carin 2020, arXiv:2011.08891v4"
ELEMENTWISE = ("pytorch-grad-cam 1.5.7, GradCAMElementWise, "
               "pytorch_grad_cam/grad_cam_elementwise.py:23 (not a paper)")
LAYER_CAM = "Jiang et al., IEEE TIP 30:5875-5888, 2021, doi:10.1109/TIP.2021.3089943"


def xgradcam_weights(A, dA):
    """XGrad-CAM's weights: the gradient averaged with the activations as weights.

    alpha[n, k] = sum_ij A[n, k, i, j] dA[n, k, i, j] / sum_ab A[n, k, a, b]    (0 if the sum is 0)

    Parameters
    ----------
    A, dA : (N, K, U, V) activations and dy^c/dA
    Returns
    -------
    alpha : (N, K)
    """
    xp = get_xp(A)
    S = A.sum(axis=(2, 3))
    zero = S == 0
    num = (A * dA).sum(axis=(2, 3))
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(S), S))


def hirescam_weights(A, dA):
    """HiResCAM's per-position weights: the gradient itself.

    alpha[n, k, i, j] = dA[n, k, i, j]

    Parameters
    ----------
    A : (N, K, U, V) activations (unused; uniform signature); dA : (N, K, U, V) dy^c/dA
    Returns
    -------
    alpha : (N, K, U, V) (a copy: the result's weights and gradients are separate arrays)
    """
    return dA.copy()


def elementwise_weights(A, dA):
    """Per-position weights whose weighted sum is pytorch-grad-cam's element-wise map.

    alpha[n, k, i, j] = dA[n, k, i, j] if dA A > 0 there, else 0
    (so sum_k alpha A = sum_k relu(dA A))

    Parameters
    ----------
    A, dA : (N, K, U, V) activations and dy^c/dA
    Returns
    -------
    alpha : (N, K, U, V)
    """
    xp = get_xp(A)
    return xp.where(dA * A > 0, dA, xp.zeros_like(dA))


def layercam_weights(A, dA):
    """LayerCAM's per-position weights: the positive part of the gradient.

    alpha[n, k, i, j] = relu(dA[n, k, i, j])

    Parameters
    ----------
    A : (N, K, U, V) activations (unused; uniform signature); dA : (N, K, U, V) dy^c/dA
    Returns
    -------
    alpha : (N, K, U, V)
    """
    return get_xp(dA).maximum(dA, 0)


def _weighting(fn):
    def weighting(ctx):
        return fn(ctx.A, ctx.dA)

    weighting.__doc__ = fn.__doc__.splitlines()[0]
    return weighting


METHODS = (
    Method("xgradcam", "XGrad-CAM", XGRAD_CAM + " (weight from its Eq. (5) decomposition)",
           "channel", True, "last-spatial", _weighting(xgradcam_weights)),
    Method("hirescam", "HiResCAM", HIRES_CAM + " (element-wise gradient x activation)",
           "position", True, "last-spatial", _weighting(hirescam_weights)),
    Method("gradcam-elementwise", "Grad-CAM element-wise", ELEMENTWISE, "position", True,
           "last-spatial", _weighting(elementwise_weights)),
    Method("layercam", "LayerCAM", LAYER_CAM + " (relu(gradient) x activation)",
           "position", True, "last-spatial", _weighting(layercam_weights)),
)
