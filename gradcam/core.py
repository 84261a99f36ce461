"""The Grad-CAM engine: one forward, one backward, then a weighted sum of feature maps.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4 (Sec. 3, Eqs. (1)-(2), Fig. 2). CAM: Zhou et al.,
arXiv:1512.04150.

    logits, A, dA = capture(model, x, layer, seed_fn)   # forward keeping A; backward of dy to A
    alpha = grad_cam_weights(A, dA)                     # (N, K)      Eq. (1)
    L     = weighted_sum(alpha, A)                      # (N, U, V)   sum_k alpha_k A^k
    coarse = ReLU(L)                                    # (N, U, V)   Eq. (2)
    heatmap = normalize(resize(coarse, (H, W)))         # (N, H, W) in [0, 1]

Everything is returned in a ``GradCAMResult`` so each step can be printed and compared.

Conventions of this module (also in DESIGN.md):

- Evaluation mode. An explanation must be a deterministic function of the input, so every
  function here runs the model in eval mode (Dropout is the identity, BatchNorm uses its
  running statistics) and then restores each layer's previous ``training`` flag. Parameters
  and buffers are never written, no parameter gradient is computed (``need_dw=False``)
  and the gradients of an earlier training backward are kept (see ``eval_mode``).
- Input. ``x`` is (N, C, H, W); a single (C, H, W) image is accepted and gets a batch axis
  (results then have N = 1). NaN or inf input is a ValueError.
- Layer. ``layer=None`` picks the paper's "last convolutional layer": the last layer, in the
  order the forward pass runs them, whose output is spatial, (N, K, u, v) with u*v > 1, and
  that is not a pooling layer or a container (see ``last_spatial_layer``). For
  ``zoo.shapes_cnn`` and ``zoo.shapes_gap`` (one trunk, two heads) it is ``relu4`` (16x16), for
  ``zoo.vgg16`` ``features.29`` (relu5_3, 14x14 at 224x224, the layer the paper explains).
  Any layer with a spatial output can be named instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from minicnn import layers as Lyr
from minicnn.backend import get_xp
from minicnn.model import Residual, Sequential

from .resize import normalize, resize
from .targets import class_score, resolve_target
from .weights import METHODS, cam_weights

_LAST_SPATIAL = object()  # sentinel: "choose the last spatial layer after the forward pass"


class LayerError(KeyError, ValueError):
    """An unknown or unsuitable layer name (catch it as KeyError or as ValueError)."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False, repr=False)
class GradCAMResult:
    """Every intermediate of one explanation (N images, K channels, u x v map, H x W input).

    Attributes
    ----------
    method : "gradcam", "counterfactual" or "cam"
    layer : name of the layer whose output is A
    logits : (N, classes) scores y (before any softmax)
    target : (N,) int class c explained for each image
    class_names : list of N names of the targets, or None if the model has no class names
    activations : (N, K, u, v) A, the layer's output
    gradients : (N, K, u, v) dA = dy^c/dA (not negated, also for the counterfactual)
    weights : (N, K) alpha (Eq. (1); negated gradients for the counterfactual; w^c for CAM)
    linear_map : (N, u, v) L = sum_k alpha_k A^k, before the ReLU (for CAM: M_c)
    coarse : (N, u, v) ReLU(L), unnormalised (Eq. (2))
    heatmap : (N, H, W) coarse resized bilinearly (half-pixel centres) and divided by its max
    """

    method: str
    layer: str
    logits: object
    target: np.ndarray
    class_names: list | None
    activations: object
    gradients: object
    weights: object
    linear_map: object
    coarse: object
    heatmap: object

    def __repr__(self):
        names = f", class_names={self.class_names}" if self.class_names is not None else ""
        return (f"GradCAMResult(method={self.method!r}, layer={self.layer!r}, "
                f"target={self.target.tolist()}{names}, A={tuple(self.activations.shape)}, "
                f"coarse={tuple(self.coarse.shape)}, heatmap={tuple(self.heatmap.shape)})")


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


def _as_batch(x):
    """Validate the input: (N, C, H, W) (or one (C, H, W) image), numeric, finite."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]  # one image -> a batch of one
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) or one (C, H, W) image, "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"input must be a numeric array, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not bool(get_xp(x).isfinite(x).all()):
        raise ValueError("input contains NaN or inf; an explanation needs finite pixels")
    return x


def _class_names(model):
    names = getattr(model, "class_names", None)
    return list(names) if names is not None else None


def check_layer(model, layer):
    """Raise ``LayerError`` (listing the valid names) unless ``layer`` names a layer of ``model``."""
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


def _engine(model, x, layer, seed_fn, relu_rule="standard", spatial=False):
    """capture(), plus the layer's name; ``layer`` may be _LAST_SPATIAL. See ``capture``."""
    x = _as_batch(x)
    if layer is _LAST_SPATIAL:
        # NOTE: which layers are spatial is known only after a forward; keeping every output
        # for this one pass (and dropping all but one below) avoids a second forward
        keep = model.layer_names()
    elif layer is None:
        keep = ()
    else:
        check_layer(model, layer)
        keep = (layer,)
    with eval_mode(model):
        # NOTE: the backward below stops at ``layer``, so the layers up to it need no cache
        # (less memory and work); with layer=None it runs to the input and needs them all.
        named = isinstance(layer, str)
        logits = model.forward(x, keep=keep, stop_at=layer if named else None)
        if layer is _LAST_SPATIAL:
            layer = last_spatial_layer(model.shapes, model)
            model.activations = {layer: model.activations[layer]}
        if layer is None:
            A = x.astype(logits.dtype, copy=False)  # the input as the model saw it
        else:
            A = model.activations[layer]
            if spatial and A.ndim != 4:
                raise LayerError(f"layer {layer!r} outputs shape {tuple(A.shape)}, not a spatial "
                                 f"(N, K, u, v) map; spatial layers are: "
                                 f"{', '.join(_spatial(model.shapes))}")
        dy = seed_fn(logits)
        if tuple(dy.shape) != tuple(logits.shape):
            raise ValueError(f"seed_fn returned shape {tuple(dy.shape)}, "
                             f"expected {tuple(logits.shape)}")
        dA = model.backward(dy, stop_at=layer, need_dw=False, relu_rule=relu_rule)
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
    layer : layer name, or None for the input itself (A = x, dA = dy/dx: pixel-space maps)
    seed_fn : callable logits (N, classes) -> dy (N, classes), e.g. ``targets.class_score(c)``
    relu_rule : "standard" (the gradient), "deconvnet" or "guided"; how ReLUs pass dA back
    Returns
    -------
    logits : (N, classes); A : the layer's output (N, K, u, v); dA : same shape as A
    """
    logits, A, dA, _ = _engine(model, x, layer, seed_fn, relu_rule)
    return logits, A, dA


def weighted_sum(alpha, A):
    """The unrectified map: L[n] = sum_k alpha[n, k] * A[n, k]     (inside Eq. (2))

    Parameters
    ----------
    alpha : (N, K); A : (N, K, U, V)
    Returns
    -------
    L : (N, U, V)
    """
    return (alpha[:, :, None, None] * A).sum(axis=1)


def _result(method, model, x_hw, layer, logits, c, A, dA, alpha):
    """Eq. (2) and the post-processing, shared by every CAM-family method."""
    xp = get_xp(A)
    L = weighted_sum(alpha, A)
    coarse = xp.maximum(L, 0)  # Eq. (2): keep only what raises y^c
    heatmap = normalize(resize(coarse, x_hw))
    names = _class_names(model)
    if names is not None and len(names) == logits.shape[1]:
        names = [names[i] for i in c]
    else:
        names = None
    return GradCAMResult(method, layer, logits, c, names, A, dA, alpha, L, coarse, heatmap)


# --------------------------------------------------------------------------- methods
def grad_cam(model, x, target=None, layer=None, counterfactual=False):
    """Grad-CAM (Selvaraju et al., arXiv:1610.02391v4, Eqs. (1)-(2)) or its counterfactual.

    alpha_k^c = 1/Z sum_{i,j} dy^c/dA^k_ij          Eq. (1)   (negated: counterfactual)
    L^c = ReLU(sum_k alpha_k^c A^k)                  Eq. (2)

    Parameters
    ----------
    model : minicnn.Sequential (run in eval mode for the call, then restored)
    x : (N, C, H, W) input, or one (C, H, W) image (then N = 1)
    target : None (top-1 per image), int, class name, or N ints/names
    layer : layer name; None = the last layer with spatial output (see the module docstring)
    counterfactual : weights from -dy^c/dA: regions whose removal would raise y^c
    Returns
    -------
    GradCAMResult (method "gradcam" or "counterfactual")
    """
    x = _as_batch(x)
    names = _class_names(model)
    logits, A, dA, layer = _engine(model, x, _LAST_SPATIAL if layer is None else layer,
                                   class_score(target, names), spatial=True)
    c = resolve_target(target, logits, names)  # pure: the same classes the seed used
    method = "counterfactual" if counterfactual else "gradcam"
    alpha = METHODS[method](A, dA)
    return _result(method, model, x.shape[-2:], layer, logits, c, A, dA, alpha)


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


def cam(model, x, target=None, layer=None):
    """CAM (Zhou et al., arXiv:1512.04150, Sec. 2) on a GAP + Linear model.

    M_c(i, j) = sum_k w_k^c A^k_ij     (w: the final Linear's weight, A: the input of the GAP)

    Returned like Grad-CAM for comparability: ``weights`` = w^c, ``linear_map`` = M_c (the raw
    CAM of the paper, bias excluded) and ``coarse`` = ReLU(M_c), ``heatmap`` its normalised
    resize. ``gradients`` holds dy^c/dA from the same single backward (it equals w^c / Z at
    every position: see ``gradcam.weights``), so Grad-CAM's coarse map is ``coarse / Z``.

    Parameters
    ----------
    model : minicnn.Sequential ending in GAP -> [Flatten | Dropout]* -> Linear
    x : (N, C, H, W) input, or one (C, H, W) image
    target : as for ``grad_cam``
    layer : None, or the name of the layer feeding the GAP (the only layer CAM is defined at)
    Returns
    -------
    GradCAMResult (method "cam"). Raises ValueError for any other head or layer.
    """
    x = _as_batch(x)
    A_layer, fc = cam_head(model)
    if layer is not None and layer != A_layer:
        check_layer(model, layer)
        raise LayerError(f"CAM is defined only at the input of the global average pooling, "
                         f"the output of layer {A_layer!r}; got layer {layer!r}")
    names = _class_names(model)
    logits, A, dA, _ = _engine(model, x, A_layer, class_score(target, names), spatial=True)
    c = resolve_target(target, logits, names)
    alpha = cam_weights(model[fc].params["weight"], c)(A, dA)
    return _result("cam", model, x.shape[-2:], A_layer, logits, c, A, dA, alpha)
