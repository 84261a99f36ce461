"""The engine under every method: one forward keeping A, one backward of dy^c down to A.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4 (Sec. 3, Eqs. (1)-(2), Fig. 2). CAM: Zhou et al.,
arXiv:1512.04150v1.

    logits, A, dA = capture(model, x, layer, seed_fn)   # forward keeping A; backward of dy to A
    alpha = grad_cam_weights(A, dA)                     # (N, K)      Eq. (1)  (gradcam.weights)
    linear_map, coarse, heatmap = cam_maps(alpha, A, (H, W))
        linear_map = weighted_sum(alpha, A)             # (N, u, v)   sum_k alpha_k A^k
        coarse = ReLU(linear_map)                       # (N, u, v)   L^c, Eq. (2)
        heatmap = normalize(resize(coarse, (H, W)))     # (N, H, W) in [0, 1]

Which weighting, which layer and what the result holds is the method registry's business
(``gradcam.registry``, ``gradcam.explain``); this module only runs the model.

Conventions:

- Evaluation mode. An explanation must be a deterministic function of the input, so every
  function here runs the model in eval mode (Dropout is the identity, BatchNorm uses its
  running statistics) and then restores each layer's previous ``training`` flag. Parameters
  and buffers are never written, no parameter gradient is computed (``need_dw=False``)
  and the gradients of an earlier training backward are kept (see ``eval_mode``).
- Input. ``x`` is (N, C, H, W); a single (C, H, W) image is accepted and gets a batch axis
  (results then have N = 1). NaN or inf input is a ValueError.
- Layer names. A layer is named as ``model.layer_names()`` lists it; ``"input"`` (``INPUT``)
  names pixel space: A = x as the model sees it and dA = dy/dx. ``capture`` needs one of the
  two; ``None`` is refused there (in ``gradcam.explain`` it means the method's default layer).
  NOTE: a model layer that is itself called "input" cannot be captured by name.
- The paper's "last convolutional layer" (``last_spatial_layer``): the last layer, in the
  order the forward pass runs them, whose output is spatial, (N, K, u, v) with u*v > 1, and
  that is not a pooling layer or a container. For ``zoo.shapes_cnn`` and ``zoo.shapes_gap``
  (one trunk, two heads) it is ``relu4`` (16x16), for ``zoo.vgg16`` ``features.29`` (relu5_3,
  14x14 at 224x224, the layer the paper explains).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from minicnn import layers as Lyr
from minicnn.backend import get_xp
from minicnn.model import Residual, Sequential

from .resize import normalize, resize
from .targets import class_score

INPUT = "input"  # the layer name of pixel space: A = x, dA = dy/dx
LAST_SPATIAL = object()  # forward_backward's "the last spatial layer, chosen after the forward"


class LayerError(KeyError, ValueError):
    """An unknown or unsuitable layer name (catch it as KeyError or as ValueError)."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- helpers
@contextmanager
def eval_mode(model):
    """Run the body with ``model`` in eval mode; afterwards restore every layer's ``training``
    flag and its parameter gradients.

    NOTE: the explanation's backward runs with need_dw=False, which leaves ``grads`` alone;
    restoring them as well keeps this guarantee independent of that detail.
    """
    saved = [(lay, lay.training, lay.grads) for _, lay in model.named_layers()]
    top = model.training
    model.eval()
    try:
        yield model
    finally:
        model.training = top
        for lay, flag, grads in saved:
            lay.training, lay.grads = flag, grads


def as_batch(x, finite=True):
    """Validate the input: (N, C, H, W) (or one (C, H, W) image, given a batch axis), floating
    point, finite. Returns the (N, C, H, W) array (same module and dtype).

    ``finite=False`` skips the finiteness check, the one part that reads the pixels (on a
    device, a host sync): for a caller whose ``forward_backward`` checks them anyway.

    NOTE: integer input (uint8 0-255 pixels, say) is refused, not scaled or warned about: the
    model would run on values 255x its training range (logits in the thousands) and explain
    that. The message says how to scale: the model's own ``preprocess`` where it has one, else
    x / 255 (what the shapes models and ``gradcam.images.FALLBACK`` use).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]  # one image -> a batch of one
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) or one (C, H, W) image, "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    if x.dtype.kind in "biu":
        raise ValueError(f"input is {x.dtype}: explanations take the model's float input, "
                         "not raw pixels; scale it as the model was trained: model.preprocess("
                         "rgb) where the model has one, else x.astype(np.float32) / 255")
    if x.dtype.kind != "f":
        raise ValueError(f"input must be a floating-point array, got dtype {x.dtype}")
    if finite and not bool(get_xp(x).isfinite(x).all()):
        raise ValueError("input contains NaN or inf; an explanation needs finite pixels")
    return x


def model_class_names(model):
    """``model.class_names`` as a list, or None if the model has none."""
    names = getattr(model, "class_names", None)
    return list(names) if names is not None else None


def check_layer(model, layer):
    """Raise ``LayerError`` (listing the valid names) unless ``layer`` is a layer of ``model``."""
    names = model.layer_names()
    if not isinstance(layer, str) or layer not in names:
        raise LayerError(f"unknown layer {layer!r}; layers are: {', '.join(names)}")


def _spatial(shapes):
    return [n for n, s in shapes.items() if len(s) == 4]


_POOLS = (Lyr.MaxPool2d, Lyr.AvgPool2d, Lyr.AdaptiveAvgPool2d, Lyr.GlobalAvgPool2d)


def last_spatial_layer(shapes, model=None):
    """The paper's default layer: the last conv block's output, i.e. the last layer, in forward
    order, whose output is (N, K, u, v) with u*v > 1 and that is neither a pooling layer nor a
    container (a container's output is its last child's).

    NOTE: skipping pooling follows the paper, which explains VGG16 at relu5_3 (14x14), the layer
    before the last max-pool; a pooled map is coarser and only subsamples the same evidence.

    Parameters
    ----------
    shapes : dict name -> output shape, in forward order (``model.shapes`` after a forward)
    model : the model, to look up layer types (without it, every layer counts)
    Returns
    -------
    name : str (a pooled or 1x1 map only if nothing better exists)
    """
    spatial = _spatial(shapes)
    if not spatial:
        raise LayerError("no layer of this model has a spatial (N, K, u, v) output")
    wide = [n for n in spatial if shapes[n][2] * shapes[n][3] > 1] or spatial
    if model is not None:
        kinds = dict(model.named_layers())
        plain = [n for n in wide if not isinstance(kinds[n], _POOLS + (Sequential,))]
        wide = plain or wide
    return wide[-1]


def _execution_order(model, prefix=""):
    """Layer names in the order the forward records them: children, then their container."""
    out = []
    for name, lay in model.layers:
        if isinstance(lay, Sequential):
            out += _execution_order(lay, prefix + name + ".")
        out.append(prefix + name)
    return out


def cam_head(model):
    """Find CAM's head: A -> global average pooling -> [Flatten | Dropout]* -> final Linear.

    Returns
    -------
    (layer, fc) : the name of the layer whose output is A (the input of the pooling) and the
    name of the final Linear layer. Raises ValueError for any other head.
    """
    layers = dict(model.named_layers())
    order = _execution_order(model)
    leaves = [n for n in order if not isinstance(layers[n], Sequential)]
    tail = ", ".join(f"{n} ({type(layers[n]).__name__})" for n in leaves[-6:])
    why = ("CAM (Zhou et al., arXiv:1512.04150) needs a head of global average pooling followed "
           "directly by the final Linear layer (only Flatten/Dropout in between); this model "
           f"ends with: {tail}. Grad-CAM (gradcam.grad_cam) works with any head")
    i = len(leaves) - 1
    if i < 0 or not isinstance(layers[leaves[i]], Lyr.Linear):
        raise ValueError(why)
    fc = leaves[i]
    i -= 1
    while i >= 0 and isinstance(layers[leaves[i]], (Lyr.Flatten, Lyr.Dropout)):
        i -= 1
    if i < 0:
        raise ValueError(why)
    pool = layers[leaves[i]]
    is_gap = isinstance(pool, Lyr.GlobalAvgPool2d) or (
        isinstance(pool, Lyr.AdaptiveAvgPool2d) and tuple(pool.output_size) == (1, 1))
    if not is_gap:
        raise ValueError(why)
    gap = leaves[i]
    residuals = [n for n, lay in layers.items() if isinstance(lay, Residual)]
    if any(h.startswith(r + ".") for r in residuals for h in leaves[i:]):
        raise ValueError(why + " (the head sits inside a residual block)")
    pos = order.index(gap)
    if pos == 0:
        raise ValueError("CAM needs a layer before the global average pooling to explain")
    return order[pos - 1], fc


# --------------------------------------------------------------------------- forward, backward
def forward_backward(model, x, layer, seed_fn=None, relu_rule="standard", spatial=False):
    """``capture`` for ``gradcam.explain``: also returns the layer's name, accepts
    ``layer=LAST_SPATIAL`` (chosen after the forward) and, with ``seed_fn=None``, runs no
    backward (dA = None, for gradient-free methods).

    Returns
    -------
    logits, A, dA, layer
    """
    x = as_batch(x)
    if layer is LAST_SPATIAL:
        # NOTE: which layers are spatial is known only after a forward; keeping every output
        # for this one pass (and dropping all but one below) avoids a second forward
        keep = model.layer_names()
    elif layer == INPUT:
        keep = ()
    elif layer is None:
        raise LayerError("no layer given: name a layer of the model, or 'input' for pixel space")
    else:
        check_layer(model, layer)
        keep = (layer,)
    with eval_mode(model):
        # NOTE: the backward below stops at ``layer``, so the layers up to it need no cache
        # (less memory and work); at the input it runs all the way and needs them all.
        stop_at = None if layer in (INPUT, LAST_SPATIAL) else layer
        logits = model.forward(x, keep=keep, stop_at=stop_at)
        if layer is LAST_SPATIAL:
            layer = last_spatial_layer(model.shapes, model)
            model.activations = {layer: model.activations[layer]}
        if layer == INPUT:
            A = x.astype(logits.dtype, copy=False)  # the input as the model saw it
        else:
            A = model.activations[layer]
            if spatial and A.ndim != 4:
                raise LayerError(f"layer {layer!r} outputs shape {tuple(A.shape)}, not a spatial "
                                 f"(N, K, u, v) map; spatial layers are: "
                                 f"{', '.join(_spatial(model.shapes))}")
        if seed_fn is None:
            return logits, A, None, layer
        dy = seed_fn(logits)
        if tuple(dy.shape) != tuple(logits.shape):
            raise ValueError(f"seed_fn returned shape {tuple(dy.shape)}, "
                             f"expected {tuple(logits.shape)}")
        back_to = None if layer == INPUT else layer
        dA = model.backward(dy, stop_at=back_to, need_dw=False, relu_rule=relu_rule)
    return logits, A, dA, layer


def capture(model, x, layer, seed_fn, relu_rule="standard"):
    """One forward pass keeping A, one backward pass of the seed dy down to A.

    A = output of ``layer``;  dA = dy^T (d logits / dA) = dy^c/dA for dy = one_hot(c)

    The model runs in eval mode for the call (restored afterwards); no parameter gradient
    is computed or stored.

    Parameters
    ----------
    model : minicnn.Sequential
    x : (N, C, H, W) input, or one (C, H, W) image
    layer : a layer name, or "input" for pixel space (A = x, dA = dy/dx); None is an error
    seed_fn : callable logits (N, classes) -> dy (N, classes), e.g. ``targets.class_score(c)``
    relu_rule : "standard" (the gradient), "deconvnet" or "guided"; how ReLUs pass dA back
    Returns
    -------
    logits : (N, classes); A : the layer's output (N, K, u, v); dA : same shape as A
    """
    logits, A, dA, _ = forward_backward(model, x, layer, seed_fn, relu_rule)
    return logits, A, dA


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
    _, _, dx = capture(model, x, INPUT, class_score(target, model_class_names(model)), relu_rule)
    return dx


# --------------------------------------------------------------------------- Eq. (2)
def weighted_sum(alpha, A):
    """The map before Eq. (2)'s ReLU: one weight per channel, or one per channel and position.

    linear_map[n, i, j] = sum_k alpha[n, k] * A[n, k, i, j]          alpha (N, K)
    linear_map[n, i, j] = sum_k alpha[n, k, i, j] * A[n, k, i, j]    alpha (N, K, U, V)

    Parameters
    ----------
    alpha : (N, K) per-channel or (N, K, U, V) per-position weights; A : (N, K, U, V)
    Returns
    -------
    linear_map : (N, U, V)
    """
    if alpha.ndim == 2 and tuple(alpha.shape) == tuple(A.shape[:2]):
        return (alpha[:, :, None, None] * A).sum(axis=1)
    if alpha.ndim == 4 and tuple(alpha.shape) == tuple(A.shape):
        return (alpha * A).sum(axis=1)
    raise ValueError(f"weights of shape {tuple(alpha.shape)} fit neither (N, K) = "
                     f"{tuple(A.shape[:2])} nor (N, K, U, V) = {tuple(A.shape)}")


def cam_maps(alpha, A, size):
    """Eq. (2) and the post-processing shared by every CAM-family method.

    linear_map = sum_k alpha_k A^k;  coarse = L^c = ReLU(linear_map)  (Eq. (2));
    heatmap = normalize(resize(coarse, size))  (bilinear, half-pixel centres; max 1)

    Parameters
    ----------
    alpha : (N, K) or (N, K, u, v); A : (N, K, u, v); size : (H, W) of the input
    Returns
    -------
    linear_map : (N, u, v); coarse : (N, u, v); heatmap : (N, H, W) in [0, 1]
    """
    xp = get_xp(A)
    linear_map = weighted_sum(alpha, A)
    coarse = xp.maximum(linear_map, 0)  # Eq. (2): keep only what raises y^c
    return linear_map, coarse, normalize(resize(coarse, size))
