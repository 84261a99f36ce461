"""The types of the method registry: ``Method`` (one entry), ``Context`` (what a weighting
sees) and ``MethodOutput`` (what a weighting may return besides a bare array).

Kept apart from ``gradcam.registry`` (the table) so that the method families in
``gradcam.family`` can define their entries without importing the table that lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from .engine import INPUT, input_gradient

KINDS = ("channel", "position", "pixel", "network")

LAYER_RULES = {
    "last-spatial": "the paper's last convolutional layer (engine.last_spatial_layer); any layer "
                    "with a spatial (N, K, u, v) output may be named instead",
    "gap-input": "the input of the global average pooling of a GAP + Linear head "
                 "(engine.cam_head); no other layer",
    "input": "pixel space, layer='input' (A = x); no other layer",
    "network": "the whole network: no layer (layer=None); the context holds A = x and dA = dy/dx",
}


class MethodOutput(NamedTuple):
    """What a weighting returns when a bare array does not say it all.

    weights : alpha, (N, K) for "channel", (N, K, u, v) for "position"; None for "network"
    linear_map : None: ``explain`` forms sum_k alpha_k A^k (Eq. (2) before its ReLU). Given, it
        replaces that sum: (N, u, v), or (N, H, W) at the input's resolution for "network"
        (e.g. Eigen-CAM's projection after centring, FullGrad's summed maps)
    details : the method's other intermediates by name (Score-CAM's masks and scores, the
        noise a smoothed method drew, ...): ``GradCAMResult.details``
    pixels : "pixel" kind only: the (N, C, H, W) map (instead of returning it bare)
    """

    weights: Any = None
    linear_map: Any = None
    details: Mapping[str, Any] = MappingProxyType({})
    pixels: Any = None


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
    kind : "channel" (weighting returns alpha (N, K)), "position" (alpha (N, K, u, v)),
        "pixel" (a map at the input's resolution, (N, C, H, W)) or "network" (a
        ``MethodOutput`` with a linear map (N, H, W) at the input's resolution, no layer)
    needs_grad : False for gradient-free methods: no backward is run and ``Context.dA`` is None
    layer_rule : a key of LAYER_RULES: the layer ``layer=None`` means, and which others are valid
    weighting : callable Context -> alpha or the pixel map (by ``kind``)
    relu_rule : how ReLUs pass the gradient back in the method's backward ("standard": the true
        gradient; "deconvnet", "guided": Zeiler & Fergus's and Springenberg et al.'s rules)
    options : the method's keyword options and their defaults (``explain(..., **options)``)
    fast_n : what an image costs, for the evaluation's "fast" protocol: the most images it
        scores the method on (a method of many forwards or backwards per image, measured in
        ``gradcam.evaluate_family``'s docstring); None: every image asked for
    photo_fast : False where one photo costs minutes (a whole-network forward per channel and
        noisy copy): the fast protocol on photos leaves the method out
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
    fast_n: int | None = None
    photo_fast: bool = True

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
        if self.fast_n is not None and (isinstance(self.fast_n, bool)
                                        or not isinstance(self.fast_n, int) or self.fast_n < 1):
            raise ValueError(f"method {self.name!r}: fast_n must be None or an int >= 1")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


class OptionError(TypeError, ValueError):
    """An option the method does not accept (catch it as TypeError or as ValueError)."""
