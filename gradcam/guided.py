"""Pixel-space maps: the class score's gradient at the input under three ReLU backward rules.

Simonyan et al., arXiv:1312.6034 (vanilla gradient, "saliency"); Zeiler & Fergus,
arXiv:1311.2901 (deconvnet); Springenberg et al., "Striving for Simplicity",
arXiv:1412.6806, Fig. 1 (guided backpropagation); Selvaraju et al., arXiv:1610.02391v4,
Sec. "Guided Grad-CAM" (the product with the upsampled Grad-CAM map).

All three are one backward pass of dy = one_hot(c) from the logits to the input; they differ
only in how every ReLU passes the gradient R back (f = the ReLU's forward input):

    standard   R_in = R_out * [f > 0]                  (the true gradient dy^c/dx)
    deconvnet  R_in = max(R_out, 0)                    (ignores the forward)
    guided     R_in = R_out * [f > 0] * [R_out > 0]    (both masks)

The rule is an argument of ``model.backward`` for that call (``minicnn.functional.relu_backward``),
so the model is never modified. Everything is batched: (N, C, H, W) in, (N, C, H, W) out. The
model runs in eval mode for the call and its previous mode is restored (see ``gradcam.core``).
"""

from __future__ import annotations

from .core import _as_batch, _class_names, capture, grad_cam
from .targets import class_score


def input_gradient(model, x, target=None, relu_rule="standard"):
    """The backward of y^c to the input, with the chosen ReLU rule.

    R = d y^c / d x   (under ``relu_rule``; only "standard" is the true gradient)

    Parameters
    ----------
    model : minicnn.Sequential
    x : (N, C, H, W) input, or one (C, H, W) image (then N = 1)
    target : None (top-1 per image), int, class name, or N ints/names
    relu_rule : "standard", "deconvnet" or "guided"
    Returns
    -------
    R : (N, C, H, W), in the model's dtype
    """
    _, _, dx = capture(model, x, None, class_score(target, _class_names(model)), relu_rule)
    return dx


def saliency(model, x, target=None):
    """Vanilla gradient dy^c/dx (Simonyan et al., arXiv:1312.6034): (N, C, H, W).

    Take ``abs(...).max(axis=1)`` for their one-channel saliency map.
    """
    return input_gradient(model, x, target, "standard")


def deconvnet(model, x, target=None):
    """Deconvnet reconstruction (Zeiler & Fergus; ReLUs pass max(R, 0) back): (N, C, H, W)."""
    return input_gradient(model, x, target, "deconvnet")


def guided_backprop(model, x, target=None):
    """Guided backpropagation (Springenberg et al., arXiv:1412.6806): (N, C, H, W).

    A ReLU passes R back only where its forward input was positive AND R is positive.
    """
    return input_gradient(model, x, target, "guided")


def guided_grad_cam(model, x, target=None, layer=None):
    """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map (Sec. "Guided Grad-CAM").

    G[n, ch, h, w] = guided_backprop[n, ch, h, w] * heatmap[n, h, w]

    where heatmap is Grad-CAM's coarse map resized bilinearly to (H, W) and divided by its
    per-image max (``GradCAMResult.heatmap``). The scale of the heatmap does not change what
    the picture shows; the product is elementwise, so no new backward is needed.

    Parameters
    ----------
    model, x, target : as for ``guided_backprop`` (None = top-1, resolved once and reused)
    layer : Grad-CAM's layer; None = the last layer with spatial output
    Returns
    -------
    G : (N, C, H, W)
    """
    x = _as_batch(x)
    r = grad_cam(model, x, target, layer)
    # NOTE: pass the resolved classes on, so both passes explain the same c for every image
    return guided_backprop(model, x, r.target) * r.heatmap[:, None]
