"""FullGrad: the input-gradient and every layer's bias-gradient, aggregated into one map.

Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization",
NeurIPS 2019, arXiv:1905.00780v4.

The full-gradient decomposition. A network built of ReLU, max-pool and affine layers (conv,
linear, batch norm in eval mode, average pooling) is piecewise linear in its input x and its
biases b jointly, with no constant term, so Euler's identity for a function that is locally
homogeneous of degree 1 gives, for the class score y^c = f(x; b):

    f(x; b) = dy^c/dx . x + sum_l sum_k dy^c/db_l,k b_l,k          (completeness)

where dy^c/db_l,k = sum_ij dy^c/dz_l^k_ij for a conv bias broadcast over positions (z_l the
layer's output), so each layer's term is the map dy^c/dz_l * b_l summed over channel and
position. Batch norm in eval mode is z = s x + b with s = gamma / sqrt(var + eps) and the
shift b = beta - s * mu: that shift is its bias (tested to 1e-10 in float64, with a negative
control dropping one layer's term). NOTE: ReLU6's clip min(x, 6) hides a constant 6, a bias
this decomposition does not count, so completeness fails on ReLU6 networks (EfficientNet-Lite).

FullGrad, the saliency map for convolutional nets, aggregates the terms that live on a grid:

    S^c(x) = psi(dy^c/dx * x) + sum_{l spatial} sum_k psi(dy^c/dz_l * b_l)^k

psi as the authors' code applies it (github.com/idiap/fullgrad-saliency, saliency/fullgrad.py,
FullGrad._postProcess and FullGrad.saliency, commit 26fb91b): the absolute value, then a
min-max rescale to [0, 1] over each image's whole (channels, u, v) block, then bilinear
upsampling to the input's (H, W) with corners aligned, then the sum over channels. Only
layers whose output is (N, K, u, v) enter (conv and batch-norm layers; a Linear layer's
bias-gradients are not a map, as in the authors' "Select only Conv layers").
NOTE: the min-max here has no epsilon (an all-constant block gives zeros); the authors add
1e-6 to the denominator. pytorch-grad-cam rescales each channel separately
(pytorch_grad_cam/fullgrad_cam.py:70-73), a variant for docs/crosscheck.md.

``explain(model, x, method="fullgrad")`` (kind "network", no layer) returns the summed map as
``linear_map`` (N, H, W); ``details`` hold every term before and after psi.
"""

from __future__ import annotations

from minicnn import layers as Lyr
from minicnn.backend import get_xp

from ..method import Method, MethodOutput
from ..resize import resize
from ..targets import one_hot

__all__ = ["METHODS", "full_gradient", "fullgrad_psi", "layer_bias"]


def layer_bias(layer):
    """The bias b a layer adds to its output, or None: a conv's or linear's own bias; for batch
    norm in eval mode the shift b = beta - gamma * mu / sqrt(var + eps)."""
    if isinstance(layer, Lyr.BatchNorm2d):
        xp = get_xp(layer.params["weight"])
        scale = layer.params["weight"] / xp.sqrt(layer.buffers["running_var"] + layer.eps)
        return layer.params["bias"] - scale * layer.buffers["running_mean"]
    if isinstance(layer, (Lyr.Conv2d, Lyr.Linear)):
        return layer.params.get("bias")
    return None


def full_gradient(model, x, target):
    """The full-gradient decomposition of y^c: the input term and one bias term per layer.

    input_term = dy^c/dx * x;   bias_terms[l] = dy^c/dz_l * b_l  (b_l broadcast on channels)
    y^c = input_term.sum() + sum_l bias_terms[l].sum()  per image, for ReLU/max-pool/affine nets

    Parameters
    ----------
    model : minicnn.Sequential, run as it is (call it in eval mode: ``gradcam.eval_mode``)
    x : (N, C, H, W) input
    target : (N,) int classes c
    Returns
    -------
    logits : (N, classes);  input_term : (N, C, H, W);  bias_terms : dict layer name -> array
    shaped like that layer's output ((N, K, u, v) or (N, K)), in forward order
    """
    biased = [(name, b) for name, lay in model.named_layers()
              if (b := layer_bias(lay)) is not None]
    logits = model.forward(x)
    dx = model.backward(one_hot(target, logits), need_dw=False, keep=[n for n, _ in biased])
    grads = model.output_gradients
    bias_terms = {}
    for name, b in biased:
        g = grads[name]
        bias_terms[name] = g * b.reshape((1, -1) + (1,) * (g.ndim - 2))
    return logits, dx * x.astype(dx.dtype, copy=False), bias_terms


def fullgrad_psi(term, size):
    """psi: |term|, min-max rescaled over each image's whole block, upsampled (bilinear, corners
    aligned) to ``size``, summed over channels.

    Parameters
    ----------
    term : (N, K, h, w) one full-gradient term;  size : (H, W)
    Returns
    -------
    (N, H, W)
    """
    xp = get_xp(term)
    N, K, h, w = term.shape
    m = xp.abs(term)
    m = m - m.min(axis=(1, 2, 3), keepdims=True)
    top = m.max(axis=(1, 2, 3), keepdims=True)
    m = m / xp.where(top > 0, top, 1)
    if (h, w) != tuple(size):
        m = resize(m.reshape(N * K, h, w), size, align_corners=True).reshape((N, K) + tuple(size))
    return m.sum(axis=1)


def _fullgrad(ctx):
    """S^c = psi(dy/dx * x) + sum over spatial layers of psi(dy/dz_l * b_l)."""
    _, input_term, bias_terms = full_gradient(ctx.model, ctx.A, ctx.target)
    size = tuple(ctx.x.shape[-2:])
    input_map = fullgrad_psi(input_term, size)
    spatial = [n for n, t in bias_terms.items() if t.ndim == 4]
    xp = get_xp(input_map)
    bias_maps = xp.stack([fullgrad_psi(bias_terms[n], size) for n in spatial]) if spatial \
        else xp.zeros((0,) + input_map.shape, dtype=input_map.dtype)
    details = {"input_term": input_term, "input_map": input_map, "bias_maps": bias_maps,
               "bias_layers": tuple(spatial)}
    details.update({"bias:" + n: t for n, t in bias_terms.items()})
    return MethodOutput(linear_map=input_map + bias_maps.sum(axis=0), details=details)


METHODS = (
    Method("fullgrad", "FullGrad",
           "Srinivas & Fleuret, NeurIPS 2019, arXiv:1905.00780v4 (the full-gradient "
           "decomposition; FullGrad's psi as in the authors' code)", "network", True, "network",
           _fullgrad),
)
