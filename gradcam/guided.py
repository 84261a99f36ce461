"""Pixel-space maps: the class score's gradient at the input under three ReLU backward rules.

Simonyan et al., arXiv:1312.6034v2 (vanilla gradient, "saliency"); Zeiler & Fergus,
arXiv:1311.2901v3 (deconvnet); Springenberg et al., "Striving for Simplicity",
arXiv:1412.6806v3, Fig. 1 (guided backpropagation); Selvaraju et al., arXiv:1610.02391v4,
Sec. "Guided Grad-CAM" (the product with the upsampled Grad-CAM map).

All three are one backward pass of dy = one_hot(c) from the logits to the input; they differ
only in how every ReLU passes the gradient R back (f = the ReLU's forward input):

    standard   R_in = R_out * [f > 0]                  (the true gradient dy^c/dx)
    deconvnet  R_in = max(R_out, 0)                    (ignores the forward)
    guided     R_in = R_out * [f > 0] * [R_out > 0]    (both masks)

The rule is an argument of ``model.backward`` for that call (``minicnn.functional.relu_backward``),
so the model is never modified; ``input_gradient`` is that one backward. Each function here is
``gradcam.explain`` with the method of the same name (``gradcam.methods()``), returning its
``pixels``. Everything is batched: (N, C, H, W) in, (N, C, H, W) out. The model runs in eval
mode for the call and its previous mode is restored (see ``gradcam.engine``).
"""

from __future__ import annotations

from .core import explain
from .engine import input_gradient

__all__ = ["deconvnet", "guided_backprop", "guided_grad_cam", "input_gradient", "saliency"]


def saliency(model, x, target=None):
    """Vanilla gradient dy^c/dx (Simonyan et al., arXiv:1312.6034v2): (N, C, H, W).

    Take ``abs(...).max(axis=1)`` for their one-channel saliency map (``explain``'s heatmap).
    """
    return explain(model, x, target, "saliency").pixels


def deconvnet(model, x, target=None):
    """Deconvnet reconstruction (Zeiler & Fergus; ReLUs pass max(R, 0) back): (N, C, H, W)."""
    return explain(model, x, target, "deconvnet").pixels


def guided_backprop(model, x, target=None):
    """Guided backpropagation (Springenberg et al., arXiv:1412.6806v3): (N, C, H, W).

    A ReLU passes R back only where its forward input was positive AND R is positive.
    """
    return explain(model, x, target, "guided-backprop").pixels


def guided_grad_cam(model, x, target=None, layer=None):
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map (Sec. "Guided Grad-CAM").

    G[n, ch, h, w] = guided_backprop[n, ch, h, w] * heatmap[n, h, w]

    where heatmap is Grad-CAM's coarse map at ``layer`` resized bilinearly to (H, W) and
    divided by its per-image max (``GradCAMResult.heatmap`` of ``grad_cam``). The scale of the
    heatmap does not change what the picture shows; the product is elementwise. Both passes
    explain the same class c for every image (None = top-1, resolved once).

    Parameters
    ----------
    model, x, target : as for ``guided_backprop``
    layer : Grad-CAM's layer; None = the last layer with spatial output
    Returns
    -------
    G : (N, C, H, W)
    """
    return explain(model, x, target, "guided-gradcam", layer).pixels
