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

from types import MappingProxyType

from .family import FAMILY
from .peers import VARIANTS
from .engine import INPUT, LAST_SPATIAL, LayerError, cam_head, cam_maps, check_layer
from .method import KINDS, LAYER_RULES, Context, Method, MethodOutput, OptionError
from .weights import cam_weights, counterfactual_weights, grad_cam_weights

__all__ = ["KINDS", "LAYER_RULES", "Context", "Method", "MethodOutput", "OptionError",
           "check_variant", "get_method", "method_layer", "method_options", "methods",
           "register", "register_variant", "variants"]

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
) + FAMILY  # the CAM family and the pixel-space paths beyond the Grad-CAM paper
_REGISTRY = {m.name: m for m in _TABLE}
# (method name, variant name) -> (weighting, why): a peer library's formula where it departs
# from the paper (docs/crosscheck.md); ``explain(..., variant=name)`` runs it instead
_VARIANTS = {}


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


def register_variant(method, variant, weighting, why):
    """Register ``weighting`` (Context -> as ``Method.weighting``) as ``variant`` of the
    registered method called ``method``; ``why`` says in one line how it departs from the paper.
    """
    m = get_method(method)
    if not isinstance(variant, str) or not variant:
        raise ValueError(f"a variant is named by a non-empty string, got {variant!r}")
    if (m.name, variant) in _VARIANTS:
        raise ValueError(f"variant {variant!r} of method {m.name!r} is already registered")
    if not callable(weighting):
        raise TypeError(f"variant {variant!r} of {m.name!r}: weighting must be callable")
    _VARIANTS[m.name, variant] = (weighting, str(why))


def variants(method):
    """{variant name: why it departs from the paper} for the registered method ``method``."""
    m = get_method(method)
    return {v: why for (name, v), (_, why) in _VARIANTS.items() if name == m.name}


def check_variant(method, variant):
    """The weighting to run: the method's own for ``variant=None`` (the paper's formula), the
    registered variant's otherwise; ValueError naming the variants that exist."""
    if variant is None:
        return method.weighting
    if (method.name, variant) not in _VARIANTS:
        known = ", ".join(map(repr, variants(method.name))) or "none"
        raise ValueError(f"no variant {variant!r} exists for method {method.name!r} (variants: "
                         f"{known}); variant=None is the paper's formula ({method.citation})")
    return _VARIANTS[method.name, variant][0]


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
    if rule == "network":
        if layer is not None:
            raise LayerError(f"{method.name} explains with the whole network and takes no layer "
                             f"(layer=None), got layer {layer!r}")
        return INPUT
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


for _variant in VARIANTS:
    register_variant(*_variant)
