"""``explain``: run any registered method; the result type; the paper-named entry points.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391v4 (Sec. 3, Eqs. (1)-(2), Fig. 2). CAM: Zhou et al.,
arXiv:1512.04150v1.

    r = explain(model, x, target, method="gradcam", layer=None)   # any name in methods()
    r.weights, r.linear_map, r.coarse, r.heatmap    # alpha, sum_k alpha_k A^k, L^c, the resized map
    grad_cam(model, x, target, layer, counterfactual=False)       # = explain(method="gradcam")
    cam(model, x, target, layer)                                  # = explain(method="cam")

The steps (one forward keeping A, one backward of dy^c to A, the method's weighting, Eq. (2),
the resize) are in ``gradcam.engine`` and ``gradcam.registry``; every intermediate is returned
in a ``GradCAMResult`` so each step can be printed and compared. The conventions (eval mode,
input, layer names) are those of ``gradcam.engine``. ``layer=None`` always means the method's
default layer: the paper's last convolutional layer for Grad-CAM and its counterfactual, the
input of the global average pooling for CAM, "input" (pixel space) for the pixel-space maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from minicnn.backend import get_xp

from .engine import (INPUT, LayerError, as_batch, cam_head, cam_maps, capture, check_layer,
                     eval_mode, forward_backward, last_spatial_layer, model_class_names,
                     weighted_sum)
from .registry import (Context, MethodOutput, check_variant, get_method, method_layer,
                       method_options)
from . import smoothing
from .resize import normalize, resize
from .targets import class_score, resolve_target

# NOTE: the engine's names stay importable from here too (the command line and the evaluation
# import them from gradcam.core); they are defined once, in gradcam.engine
__all__ = ["GradCAMResult", "cam", "explain", "grad_cam", "pixel_heatmap",
           "INPUT", "LayerError", "cam_head", "capture", "check_layer", "eval_mode",
           "last_spatial_layer", "weighted_sum"]


@dataclass(frozen=True, eq=False, repr=False)
class GradCAMResult:
    """Every intermediate of one explanation (N images, K channels, u x v map, C x H x W input).

    Which fields a method fills depends on its kind (``gradcam.methods()[r.method].kind``):
    "channel" (Grad-CAM, counterfactual, CAM) and "position" methods weight the channels of A
    and fill weights, linear_map and coarse; "pixel" methods (saliency, deconvnet, guided
    backprop, guided Grad-CAM) return a map at the input's resolution in ``pixels`` instead.

    Attributes
    ----------
    method : the method's registered name, e.g. "gradcam", "counterfactual", "cam", "saliency"
    layer : name of the layer whose output is A; "input" for pixel space (A = x). For
        "guided-gradcam" it is Grad-CAM's layer (the pixel map is still at the input)
    logits : (N, classes) scores y (before any softmax)
    target : (N,) int class c explained for each image
    class_names : list of N names of the targets, or None if the model has no class names
    activations : A, the layer's output, (N, K, u, v); at "input" the input x (N, C, H, W) in
        the model's dtype
    gradients : dA = dy^c/dA, same shape as A (not negated, also for the counterfactual), from
        the backward under the method's ReLU rule (for deconvnet and guided backprop that rule's
        signal, not a gradient); None for gradient-free methods
    weights : alpha. channel: (N, K) (Eq. (1); negated gradients for the counterfactual; w^c
        for CAM); position: (N, K, u, v); pixel: None
    linear_map : (N, u, v) sum_k alpha_k A^k, the map before Eq. (2)'s ReLU (for CAM: M_c);
        pixel: None
    coarse : (N, u, v) L^c = ReLU(linear_map), unnormalised (Eq. (2)); pixel: None
    heatmap : (N, H, W) in [0, 1]. channel and position: coarse resized bilinearly (half-pixel
        centres) and divided by its per-image max. pixel: max over the C channels of |pixels|
        (Simonyan et al.'s saliency map, arXiv:1312.6034v2, Sec. 3.1), divided by its
        per-image max. An all-zero map stays zero.
    pixels : pixel: (N, C, H, W), the method's map at the input's resolution (the array
        ``gradcam.saliency`` etc. return); channel and position: None
    details : read-only mapping of the method's other intermediates by name (e.g. Score-CAM's
        masks and scores, the noise a smoothed method drew); empty for the paper's methods

    Kind "network" (FullGrad): ``layer`` is "input", activations and gradients are x and dy^c/dx,
    weights is None, linear_map and coarse are (N, H, W) at the input's resolution.
    """

    method: str
    layer: str
    logits: object
    target: object
    class_names: list | None
    activations: object
    gradients: object
    weights: object
    linear_map: object
    coarse: object
    heatmap: object
    pixels: object = None
    details: object = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self):
        names = f", class_names={self.class_names}" if self.class_names is not None else ""
        maps = "".join(f", {k}={tuple(v.shape)}" for k, v in
                       (("coarse", self.coarse), ("pixels", self.pixels)) if v is not None)
        return (f"GradCAMResult(method={self.method!r}, layer={self.layer!r}, "
                f"target={self.target.tolist()}{names}, A={tuple(self.activations.shape)}"
                f"{maps}, heatmap={tuple(self.heatmap.shape)})")


def pixel_heatmap(pixels):
    """The (N, H, W) picture of a pixel-space map: max over channels of |pixels|, per-image max 1.

    heatmap[n, h, w] = max_ch |pixels[n, ch, h, w]| / max_{h,w} (same)   (Simonyan et al., Sec. 3.1)
    """
    return normalize(get_xp(pixels).abs(pixels).max(axis=1))


def _checked(method, out, want):
    if out is None or tuple(out.shape) != tuple(want):
        got = "nothing" if out is None else f"shape {tuple(out.shape)}"
        raise ValueError(f"the weighting of method {method.name!r} (kind {method.kind!r}) "
                         f"returned {got}, expected {tuple(want)}")
    return out


# --------------------------------------------------------------------------- explain
def explain(model, x, target=None, method="gradcam", layer=None, variant=None, *,
            eigen_smooth=False, aug_smooth=False, **options):
    """Explain the class score y^c with any registered method (``gradcam.methods()``).

    A = layer output, dA = dy^c/dA;  out = Method.weighting(Context(..., A, dA, ...))
    channel/position: alpha = out, L^c = ReLU(sum_k alpha_k A^k) (Eq. (2)); pixel: pixels = out

    Parameters
    ----------
    model : minicnn.Sequential (run in eval mode for the call, then restored)
    x : (N, C, H, W) input, or one (C, H, W) image (then N = 1), floating point and finite,
        preprocessed as the model was trained; integer input (uint8 0-255 pixels) is refused
        with a ValueError saying how to scale it (``gradcam.engine.as_batch``)
    target : None (top-1 per image), int, class name, or N ints/names
    method : a registered name ("gradcam", "counterfactual", "cam", "saliency", "deconvnet",
        "guided-backprop", "guided-gradcam", ...)
    layer : a layer name, "input" (pixel space), or None = the method's default layer
        (``Method.layer_rule``: the last spatial layer for Grad-CAM, see ``gradcam.engine``)
    variant : None, the paper's formula; or a peer library's formula where it departs from the
        paper ("pytorch-grad-cam", "torchcam": ``gradcam.registry.variants(method)``)
    eigen_smooth : channel and position methods: the map is the first principal component of
        alpha * A instead of sum_k alpha_k A^k (pytorch-grad-cam's option; ``gradcam.smoothing``)
    aug_smooth : channel and position methods: the maps averaged over horizontal flips x
        intensity factors 0.9, 1, 1.1, each un-flipped (pytorch-grad-cam's option; same module)
    **options : the method's own options (``Method.options``; none for the methods above)
    Returns
    -------
    GradCAMResult (its docstring says what each field holds for each kind of method).
    Raises ValueError for an unknown method or variant, OptionError (a TypeError and a
    ValueError) for an option the method does not take, LayerError for a bad layer.
    """
    m = get_method(method)
    weighting = check_variant(m, variant)
    opts = method_options(m, options)
    x = as_batch(x, finite=False)  # NOTE: forward_backward checks the pixels: one sync, not two
    if (eigen_smooth or aug_smooth) and m.kind not in ("channel", "position"):
        raise ValueError(f"eigen_smooth and aug_smooth smooth the maps of channel and position "
                         f"methods; {m.name!r} is a {m.kind!r} method")
    if aug_smooth:
        return smoothing.aug_smooth(lambda xt, c: explain(
            model, xt, c, method, layer, variant, eigen_smooth=eigen_smooth, **options), x, target)
    where = method_layer(m, model, layer)
    names = model_class_names(model)
    seed_fn = class_score(target, names) if m.needs_grad else None
    with eval_mode(model):
        logits, A, dA, where = forward_backward(model, x, where, seed_fn, m.relu_rule,
                                                spatial=True)
        c = resolve_target(target, logits, names)  # pure: the same classes the seed used
        out = weighting(Context(model, x, where, c, logits, A, dA, opts))
    if names is not None and len(names) == logits.shape[1]:
        names = [names[i] for i in c]
    else:
        names = None
    head = (m.name, where, logits, c, names, A, dA)
    if not isinstance(out, MethodOutput):
        out = MethodOutput(pixels=out) if m.kind == "pixel" else MethodOutput(weights=out)
    details = MappingProxyType(dict(out.details))
    if m.kind == "pixel":
        pixels = _checked(m, out.pixels, x.shape)
        return GradCAMResult(*head, None, None, None, pixel_heatmap(pixels), pixels, details)
    size = tuple(x.shape[-2:])
    if m.kind == "network":
        if out.weights is not None or out.linear_map is None:
            raise ValueError(f"the weighting of method {m.name!r} (kind 'network') must return "
                             f"MethodOutput(linear_map=(N, H, W)) and no weights")
        linear_map = _checked(m, out.linear_map, (x.shape[0],) + size)
        coarse = get_xp(linear_map).maximum(linear_map, 0)
        return GradCAMResult(*head, None, linear_map, coarse, normalize(coarse), None, details)
    alpha = _checked(m, out.weights, A.shape[:2] if m.kind == "channel" else A.shape)
    if eigen_smooth:
        linear_map, sigma = smoothing.eigen_smooth_map(alpha, A)
        out = out._replace(linear_map=linear_map)
        details = MappingProxyType({**details, "eigen_smooth_singular_values": sigma})
    if out.linear_map is None:
        linear_map, coarse, heatmap = cam_maps(alpha, A, size)
    else:  # the method forms its own map (e.g. Eigen-CAM after centring)
        linear_map = _checked(m, out.linear_map, (A.shape[0],) + tuple(A.shape[2:]))
        coarse = get_xp(linear_map).maximum(linear_map, 0)  # Eq. (2)
        heatmap = normalize(resize(coarse, size))
    return GradCAMResult(*head, alpha, linear_map, coarse, heatmap, None, details)


# --------------------------------------------------------------------------- paper-named
def grad_cam(model, x, target=None, layer=None, counterfactual=False):
    """Grad-CAM (Selvaraju et al., arXiv:1610.02391v4, Eqs. (1)-(2)) or its counterfactual.

    alpha_k^c = 1/Z sum_{i,j} dy^c/dA^k_ij          Eq. (1)   (negated: counterfactual)
    L^c = ReLU(sum_k alpha_k^c A^k)                  Eq. (2)

    Parameters
    ----------
    model : minicnn.Sequential (run in eval mode for the call, then restored)
    x : (N, C, H, W) input, or one (C, H, W) image (then N = 1)
    target : None (top-1 per image), int, class name, or N ints/names
    layer : layer name; None = the last layer with spatial output (see ``gradcam.engine``)
    counterfactual : weights from -dy^c/dA: regions whose removal would raise y^c
    Returns
    -------
    GradCAMResult (method "gradcam" or "counterfactual"): ``explain`` with that method
    """
    return explain(model, x, target, "counterfactual" if counterfactual else "gradcam", layer)


def cam(model, x, target=None, layer=None):
    """CAM (Zhou et al., arXiv:1512.04150v1, Sec. 2) on a GAP + Linear model.

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
    GradCAMResult (method "cam"): ``explain`` with that method. Raises ValueError for any
    other head or layer.
    """
    return explain(model, x, target, "cam", layer)
