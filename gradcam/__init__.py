"""gradcam: a transparent reference implementation of Grad-CAM and its relatives.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4. Built on ``minicnn``: one forward pass records the
activations A of a layer, one backward pass gives dA = dy^c/dA, and every CAM-family method
is a choice of channel weights alpha followed by ReLU(sum_k alpha_k A^k).

    import gradcam
    r = gradcam.grad_cam(model, x)            # GradCAMResult: logits, target, A, dA, alpha, maps
    r.coarse, r.heatmap                        # (N, u, v) unnormalised; (N, H, W) in [0, 1]
    gradcam.grad_cam(model, x, counterfactual=True)
    gradcam.cam(model, x)                      # GAP + Linear models only
    gradcam.saliency(model, x, target), gradcam.deconvnet(...), gradcam.guided_backprop(...)
    gradcam.guided_grad_cam(model, x, target, layer)

Modules: ``core`` (capture, grad_cam, cam, the result type), ``weights`` (Eq. (1) and
variants, the CAM-equivalence derivation), ``guided`` (pixel-space maps), ``resize``
(bilinear/nearest resizing, normalisation), ``targets`` (class scores as backward seeds).
"""

from .core import (GradCAMResult, LayerError, cam, cam_head, capture, check_layer, eval_mode, grad_cam,
                   last_spatial_layer, weighted_sum)
from .guided import deconvnet, guided_backprop, guided_grad_cam, saliency
from .resize import normalize, resize
from .weights import METHODS, counterfactual_weights, grad_cam_weights

__all__ = [
    "METHODS", "GradCAMResult", "LayerError", "cam", "cam_head", "capture", "check_layer",
    "counterfactual_weights", "eval_mode", "last_spatial_layer",
    "deconvnet", "grad_cam", "grad_cam_weights", "guided_backprop", "guided_grad_cam",
    "normalize", "resize", "saliency", "weighted_sum",
]
