"""The method registry: one table of every explanation method, run by ``gradcam.explain``.

An entry (``Method``) says what a method needs and what its weighting returns; ``explain``
runs every entry the same way:

    1. layer = the caller's ``layer``, or for ``layer=None`` the entry's rule (LAYER_RULES)
    2. one forward keeping A = the layer's output; one backward of dy = one_hot(c) down to A
       under the entry's ReLU rule, dA = dy^c/dA (none when ``needs_grad`` is False: dA = None)
    3. out = entry.weighting(Context(model, x, layer, target, logits, A, dA, options))
    4. by the entry's kind:
         "channel"   out = alpha (N, K)          linear_map = sum_k alpha_k A^k
         "position"  out = alpha (N, K, u, v)    linear_map = sum_k alpha_k(i, j) A^k(i, j)
                     then coarse = L^c = ReLU(linear_map) (Eq. (2)) and heatmap = its resize
         "pixel"     out = a map at the input's resolution (N, C, H, W)  (``pixels``)

(``gradcam.core.GradCAMResult`` says what each result field holds for each kind.) A new method
is one entry in ``_TABLE``: a weighting function of the context, and its facts. A weighting
can run the model again from the layer up (``Context.forward_from``: Score-CAM, Ablation-CAM)
or take the input gradient at another input (``Context.input_gradient``: SmoothGrad,
Integrated Gradients); a gradient-free entry (Eigen-CAM) sets ``needs_grad=False``.

    gradcam.methods()                  # {name: Method}, in table order
    gradcam.methods()["gradcam"].citation
    gradcam.explain(model, x, method="guided-gradcam", layer="relu3")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .engine import INPUT, LAST_SPATIAL, LayerError, cam_head, cam_maps, check_layer, input_gradient
from .weights import cam_weights, counterfactual_weights, grad_cam_weights

KINDS = ("channel", "position", "pixel")

LAYER_RULES = {
    "last-spatial": "the paper's last convolutional layer (engine.last_spatial_layer); any layer "
                    "with a spatial (N, K, u, v) output may be named instead",
    "gap-input": "the input of the global average pooling of a GAP + Linear head "
                 "(engine.cam_head); no other layer",
    "input": "pixel space, layer='input' (A = x); no other layer",
}


@dataclass(frozen=True, eq=False, repr=False)
class Context:
    """What a weighting function sees: one forward (and backward) of one batch.

    Attributes
    ----------
    model : minicnn.Sequential, in eval mode for the weighting call
    x : (N, C, H, W) input
    layer : the layer whose output is A ("input" for pixel space)
    target : (N,) int64 class c per image (resolved; host array)
    logits : (N, classes) scores y
    A : the layer's output, (N, K, u, v) (for "input": x in the model's dtype)
    dA : dy^c/dA, same shape as A, under the method's ReLU rule; None if not ``needs_grad``
    options : read-only mapping, the method's options (its defaults updated by the caller's)
    """

    model: Any
    x: Any
    layer: str
    target: Any
    logits: Any
    A: Any
    dA: Any
    options: Mapping[str, Any]

    def forward_from(self, A_new):
        """The logits of the model run from ``layer`` up, with A_new in place of A.

        y = f_{>layer}(A_new)      A_new : like A, (N', K, u, v); returns (N', classes)

        At layer "input" this is the whole forward, ``model.forward(A_new)``.
        """
        if self.layer == INPUT:
            return self.model.forward(A_new)
        return self.model.forward_from(self.layer, A_new)

    def input_gradient(self, x=None, relu_rule="standard"):
        """dy^c/dx for the context's classes c at input ``x`` (default: the context's own x),
        with the given ReLU backward rule ("standard", "deconvnet" or "guided"): (N, C, H, W)."""
        return input_gradient(self.model, self.x if x is None else x, self.target, relu_rule)


@dataclass(frozen=True, eq=False)
class Method:
    """One registered explanation method.

    Attributes
    ----------
    name : the registry key, e.g. "gradcam" (lower case, words joined by "-")
    title : the method's name as its paper writes it, e.g. "Grad-CAM"
    citation : "Authors, venue year, arXiv:NNNN.NNNNNvN, Eq./Sec." (the paper is the spec)
    kind : "channel" (weighting returns alpha (N, K)), "position" (alpha (N, K, u, v)) or
        "pixel" (a map at the input's resolution, (N, C, H, W))
    needs_grad : False for gradient-free methods: no backward is run and ``Context.dA`` is None
    layer_rule : a key of LAYER_RULES: the layer ``layer=None`` means, and which others are valid
    weighting : callable Context -> alpha or the pixel map (by ``kind``)
    relu_rule : how ReLUs pass the gradient back in the method's backward ("standard": the true
        gradient; "deconvnet", "guided": Zeiler & Fergus's and Springenberg et al.'s rules)
    options : the method's keyword options and their defaults (``explain(..., **options)``)
    """

    name: str
    title: str
    citation: str
    kind: str
    needs_grad: bool
    layer_rule: str
    weighting: Callable[[Context], Any]
    relu_rule: str = "standard"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.layer_rule not in LAYER_RULES:
            raise ValueError(f"method {self.name!r}: layer_rule {self.layer_rule!r} is not one "
                             f"of {tuple(LAYER_RULES)}")
        if not callable(self.weighting):
            raise TypeError(f"method {self.name!r}: weighting must be callable")
        if not isinstance(self.needs_grad, bool):
            raise TypeError(f"method {self.name!r}: needs_grad must be True or False")
        if not self.needs_grad and self.relu_rule != "standard":
            raise ValueError(f"method {self.name!r}: a relu_rule needs a backward "
                             f"(needs_grad=True)")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


class OptionError(TypeError, ValueError):
    """An option the method does not accept (catch it as TypeError or as ValueError)."""


# --------------------------------------------------------------------------- weightings
def _gradcam(ctx):
    """alpha_k^c = 1/Z sum_ij dy^c/dA^k_ij  (Eq. (1))."""
    return grad_cam_weights(ctx.A, ctx.dA)


def _counterfactual(ctx):
    """alpha_k^c = 1/Z sum_ij -dy^c/dA^k_ij  (Sec. "Counterfactual Explanations")."""
    return counterfactual_weights(ctx.A, ctx.dA)


def _cam(ctx):
    """alpha_k^c = w_k^c, the final Linear's row for class c (CAM, Sec. 2)."""
    _, fc = cam_head(ctx.model)
    return cam_weights(ctx.model[fc].params["weight"], ctx.target, ctx.A)


def _backward_to_input(ctx):
    """The map is the backward itself, dA at layer "input", under the method's ReLU rule."""
    return ctx.dA


def _guided_gradcam(ctx):
    """Guided backprop times Grad-CAM's heatmap at the context's layer (Sec. "Guided Grad-CAM").

    G[n, ch, h, w] = guided_backprop[n, ch, h, w] * heatmap[n, h, w]
    """
    _, _, heatmap = cam_maps(grad_cam_weights(ctx.A, ctx.dA), ctx.A, ctx.x.shape[-2:])
    return ctx.input_gradient(relu_rule="guided") * heatmap[:, None]


GRAD_CAM = "Selvaraju et al., ICCV 2017, arXiv:1610.02391v4"

_TABLE = (
    Method("gradcam", "Grad-CAM", GRAD_CAM + ", Eqs. (1)-(2)", "channel", True,
           "last-spatial", _gradcam),
    Method("counterfactual", "Counterfactual",
           GRAD_CAM + ', Sec. "Counterfactual Explanations"', "channel", True,
           "last-spatial", _counterfactual),
    Method("cam", "CAM", "Zhou et al., CVPR 2016, arXiv:1512.04150v1, Sec. 2", "channel", True,
           "gap-input", _cam),
    Method("saliency", "Saliency (gradient)",
           "Simonyan et al., ICLR 2014 workshop, arXiv:1312.6034v2, Sec. 3.1", "pixel", True,
           "input", _backward_to_input),
    Method("deconvnet", "Deconvnet", "Zeiler & Fergus, ECCV 2014, arXiv:1311.2901v3, Sec. 2.1",
           "pixel", True, "input", _backward_to_input, relu_rule="deconvnet"),
    Method("guided-backprop", "Guided Backprop",
           "Springenberg et al., ICLR 2015 workshop, arXiv:1412.6806v3, Sec. 3.4, Fig. 1",
           "pixel", True, "input", _backward_to_input, relu_rule="guided"),
    Method("guided-gradcam", "Guided Grad-CAM", GRAD_CAM + ', Sec. 3 "Guided Grad-CAM"',
           "pixel", True, "last-spatial", _guided_gradcam),
)
_REGISTRY = {m.name: m for m in _TABLE}


# --------------------------------------------------------------------------- the registry
def methods():
    """The registry: a new dict name -> ``Method`` in table order (iterating it gives the names)."""
    return dict(_REGISTRY)


def register(method):
    """Add a ``Method`` to the registry (a name may be registered once). Returns the method."""
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a gradcam.registry.Method, got {type(method).__name__}")
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def get_method(name):
    """The registered ``Method`` called ``name``; ValueError listing the names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; methods are: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def check_variant(method, variant):
    """``variant=None`` is the paper's formula, the only one so far."""
    if variant is not None:
        raise ValueError(f"no variant {variant!r} exists for method {method.name!r}; "
                         f"variant=None is the paper's formula ({method.citation})")


def method_options(method, options):
    """The method's options: its defaults updated by ``options``; OptionError for unknown keys."""
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        accepted = ", ".join(method.options) or "no options"
        raise OptionError(f"method {method.name!r} got unknown option(s) "
                          f"{', '.join(map(repr, unknown))}; it accepts: {accepted}")
    return MappingProxyType({**method.options, **options})


def method_layer(method, model, layer):
    """The layer to run ``method`` at: a layer name, "input", or engine.LAST_SPATIAL (chosen
    after the forward). ``layer=None`` means the method's default (its ``layer_rule``)."""
    rule = method.layer_rule
    if rule == "input":
        if layer not in (None, INPUT):
            raise LayerError(f"{method.name} is a pixel-space method, defined at the input only; "
                             f"use layer='input' (or None), got layer {layer!r}")
        return INPUT
    if rule == "gap-input":
        A_layer, _ = cam_head(model)  # ValueError for any other head
        if layer is not None and layer != A_layer:
            check_layer(model, layer)
            raise LayerError(f"CAM is defined only at the input of the global average pooling, "
                             f"the output of layer {A_layer!r}; got layer {layer!r}")
        return A_layer
    if layer == INPUT:
        pixel = ", ".join(n for n, m in _REGISTRY.items() if m.layer_rule == "input")
        raise LayerError(f"{method.name} weights the channels of a layer's (N, K, u, v) output; "
                         f"layer 'input' (pixel space) is for the pixel-space methods: {pixel}")
    return LAST_SPATIAL if layer is None else layer
