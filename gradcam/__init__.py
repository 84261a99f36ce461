"""gradcam: a transparent reference implementation of Grad-CAM and its relatives.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4. Built on ``minicnn``: one forward pass records the
activations A of a layer, one backward pass gives dA = dy^c/dA, and every CAM-family method
is a choice of weights alpha followed by L^c = ReLU(sum_k alpha_k A^k).

    import gradcam
    list(gradcam.methods())                    # the registry: gradcam, counterfactual, cam, ...
    r = gradcam.explain(model, x, method="gradcam")   # GradCAMResult: logits, target, A, dA, ...
    r.coarse, r.heatmap                        # (N, u, v) unnormalised; (N, H, W) in [0, 1]
    gradcam.grad_cam(model, x)                 # = explain(method="gradcam")
    gradcam.grad_cam(model, x, counterfactual=True)
    gradcam.cam(model, x)                      # GAP + Linear models only
    gradcam.saliency(model, x, target), gradcam.deconvnet(...), gradcam.guided_backprop(...)
    gradcam.guided_grad_cam(model, x, target, layer)   # (N, C, H, W) = explain(...).pixels
    gradcam.explain_layers(model, x, method="layercam", layers=("relu3", "relu4"),
                           fusion="layercam")           # several layers, fused (gradcam.fusion)

Names: ``layer="input"`` is pixel space (A = x); ``layer=None`` is the method's default layer
(``Method.layer_rule``). L^c is the map after Eq. (2)'s ReLU (``coarse``); the map before
it is ``linear_map``.

Modules: ``registry`` (the table of methods; ``method`` holds its types ``Method``,
``Context``, ``MethodOutput``; ``family`` the CAM family beyond the Grad-CAM paper; ``peers``
the peer libraries' variants), ``core`` (``explain``, ``grad_cam``, ``cam``, the result type),
``engine`` (``capture``: forward, backward, Eq. (2)), ``weights`` (Eq. (1) and variants, the
CAM-equivalence derivation), ``guided`` (pixel-space maps), ``fusion`` (several layers at
once), ``smoothing`` (eigen- and aug-smoothing), ``resize`` (bilinear/nearest resizing,
normalisation), ``targets`` (class scores as backward seeds). The tools around them:
``metrics`` (localisation, faithfulness, ROAD, similarity), ``evaluate`` and
``evaluate_family``, ``sanity``, ``conventions`` and ``compare``, ``viz`` and ``gallery``,
and the command line ``cli``.
"""

from .core import GradCAMResult, cam, explain, grad_cam
from .engine import (LayerError, cam_head, capture, check_layer, eval_mode, last_spatial_layer,
                     weighted_sum)
from .fusion import LayersResult, explain_layers
from .guided import deconvnet, guided_backprop, guided_grad_cam, saliency
from .registry import Context, Method, OptionError, methods, register
from .resize import normalize, resize
from .weights import counterfactual_weights, grad_cam_weights

__all__ = [
    "Context", "GradCAMResult", "LayerError", "LayersResult", "Method", "OptionError", "cam",
    "cam_head", "capture", "check_layer", "counterfactual_weights", "deconvnet", "eval_mode",
    "explain", "explain_layers", "grad_cam", "grad_cam_weights", "guided_backprop",
    "guided_grad_cam", "last_spatial_layer", "methods", "normalize", "register", "resize",
    "saliency", "weighted_sum",
]
