"""Grad-CAM conventions: how well-known implementations turn A and dy^c/dA into a heatmap.

Selvaraju et al., "Grad-CAM", arXiv:1610.02391v4, Eqs. (1)-(2) fix the map up to a positive
scale, L^c = ReLU(sum_k alpha_k^c A^k) with alpha_k^c = 1/Z sum_ij dy^c/dA^k_ij; everything
after (and the scale) is a convention, and implementations disagree on each choice:

    choice          options (who)
    alpha           mean over i,j (Eq. (1); everyone) | sum (the original Lua code: Z = u*v
                    times larger, 196x at 14x14)
    ReLU            on (Eq. (2)) | off (Captum's LayerGradCam default: the signed map)
    upsampling      bilinear, half-pixel centres (PyTorch align_corners=False, OpenCV, Pillow;
                    minicnn) | bilinear, corner-aligned (align_corners=True; scipy
                    ``zoom(order=1)`` in tf-keras-vis, Torch7 ``image.scale``) | nearest
                    (Captum's ``LayerAttribution.interpolate`` default) | none (the coarse map)
    normalisation   / max (minicnn) | (x - min) / (max - min + eps) (pytorch-grad-cam,
                    tf-keras-vis) | ReLU(x) / max(x) (the Keras tutorial: NaN on a map
                    that is all zero) | none (Captum, the Lua code's returned map)
    order           normalise after resizing (minicnn, tf-keras-vis) | before and after
                    (pytorch-grad-cam) | no resizing at all (the Keras tutorial)

Each preset below is one function ``(A, dA, size) -> map`` that spells out its source's
pipeline from our raw intermediates, step by step, with the formula and the source in its
docstring; ``PRESETS`` maps names to them. Every preset also carries its choices as data
(``preset.spec``), which ``gradcam.compare`` reads to say how a user's map differs from ours.

    from gradcam import conventions
    r = gradcam.grad_cam(model, x)
    conventions.apply("pytorch-grad-cam", r.activations, r.gradients, size=x.shape[-2:])
    conventions.from_result("captum", r)            # size = the heatmap's
    conventions.PRESETS["minicnn"](A, dA, (H, W))   # == r.heatmap

Size: ``size`` (H, W) is the output size of the resizing step; presets without one (the Keras
tutorial, ``minicnn-coarse``) return the (u, v) map whatever ``size`` is. A resize to the map's
own size is the identity in every mode, so any preset can be compared at the coarse size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minicnn.backend import get_xp

from .peers.bicubic import resize_bicubic
from .resize import normalize, resize

RESIZE_MODES = {  # spec name -> (resize mode, align_corners)
    "bilinear": ("bilinear", False), "bilinear-corners": ("bilinear", True),
    "nearest": ("nearest", False),
}


@dataclass(frozen=True)
class Spec:
    """The choices of one convention (see the module docstring's table).

    alpha : "mean" | "sum";  relu : bool;  resize : None | "bilinear" | "bilinear-corners" |
    "nearest";  norm : "none" | "max" | "minmax" | "relu/max";  norm_before_resize : bool
    """

    alpha: str
    relu: bool
    resize: str | None
    norm: str
    norm_before_resize: bool = False
    source: str = ""


PRESETS = {}


def preset(name, **spec):
    """Register a preset function under ``name`` with its ``Spec``."""
    def register(fn):
        fn.spec = Spec(**spec)
        fn.preset_name = name
        PRESETS[name] = fn
        return fn
    return register


# --------------------------------------------------------------------------- the steps
def linear_map(A, dA, alpha="mean"):
    """linear_map = sum_k alpha_k A^k, before Eq. (2)'s ReLU, with alpha_k = mean_ij dA (Eq. (1))
    or sum_ij dA (Lua).

    Parameters
    ----------
    A, dA : (N, K, u, v);  alpha : "mean" or "sum"
    Returns
    -------
    linear_map : (N, u, v)
    """
    if alpha not in ("mean", "sum"):
        raise ValueError(f"alpha must be 'mean' or 'sum', got {alpha!r}")
    w = dA.mean(axis=(2, 3)) if alpha == "mean" else dA.sum(axis=(2, 3))
    return (w[:, :, None, None] * A).sum(axis=1)


def relu(m):
    """max(m, 0)."""
    return get_xp(m).maximum(m, 0)


def minmax(m, eps=0.0):
    """(m - min) / (max - min + eps), per image (pytorch-grad-cam, tf-keras-vis, Torch7).

    NOTE: with eps = 0 a constant map would be 0/0; it is returned as zeros instead.
    """
    xp = get_xp(m)
    lo = m.min(axis=(-2, -1), keepdims=True)
    span = m.max(axis=(-2, -1), keepdims=True) - lo + eps
    return (m - lo) / xp.where(span > 0, span, xp.ones_like(span))


def relu_over_max(m):
    """ReLU(m) / max(m), per image: the Keras tutorial's step, kept exactly as written, so a
    map whose maximum is 0 gives 0/0 = NaN (as in Keras), with no warning here."""
    peak = m.max(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return relu(m) / peak


def upsample(m, size, kind):
    """Resize (N, u, v) -> (N, H, W) with a ``RESIZE_MODES`` kind; identity at size (u, v)."""
    mode, corners = RESIZE_MODES[kind]
    return resize(m, size, mode=mode, align_corners=corners)


# --------------------------------------------------------------------------- the presets
@preset("minicnn", alpha="mean", relu=True, resize="bilinear", norm="max",
        source="this project (docs/design.md; GradCAMResult.heatmap)")
def minicnn(A, dA, size):
    """minicnn's reference heatmap (``GradCAMResult.heatmap``; docs/design.md):

        L = ReLU(sum_k alpha_k A^k),  alpha_k = 1/Z sum_ij dA^k_ij          Eqs. (1)-(2)
        heatmap = up(L) / max(up(L))     up: bilinear, half-pixel centres (align_corners=False)

    An all-zero map stays all zero (no NaN).
    """
    return normalize(upsample(relu(linear_map(A, dA)), size, "bilinear"))


@preset("minicnn-coarse", alpha="mean", relu=True, resize=None, norm="none",
        source="this project (GradCAMResult.coarse)")
def minicnn_coarse(A, dA, size=None):
    """minicnn's raw coarse map (``GradCAMResult.coarse``), unnormalised, at the layer's size:

        L = ReLU(sum_k alpha_k A^k),  alpha_k = 1/Z sum_ij dA^k_ij          Eqs. (1)-(2)
    """
    return relu(linear_map(A, dA))


@preset("pytorch-grad-cam", alpha="mean", relu=True, resize="bilinear", norm="minmax",
        norm_before_resize=True,
        source="jacobgil/pytorch-grad-cam: base_cam.py, utils/image.py scale_cam_image")
def pytorch_grad_cam(A, dA, size):
    """pytorch-grad-cam's ``GradCAM(model, [layer])(x)`` (jacobgil/pytorch-grad-cam):

        alpha = mean_ij grads                           GradCAM.get_cam_weights
        cam = max(sum_k alpha_k A^k, 0)                 BaseCAM.compute_cam_per_layer
        cam = scale_cam_image(cam, (W, H)):             utils/image.py
              cam = cam - min(cam);  cam = cam / (1e-7 + max(cam));  cv2.resize(cam, (W, H))
        out = scale_cam_image(max(mean over layers, 0)) BaseCAM.aggregate_multi_layers

    cv2.resize's default INTER_LINEAR is bilinear with half-pixel centres (as PyTorch's
    align_corners=False). The library computes in float32; this reproduction in the input's
    dtype.
    """
    cam = minmax(relu(linear_map(A, dA)), 1e-7)
    cam = upsample(cam, size, "bilinear")
    return minmax(relu(cam), 1e-7)  # one target layer: the mean over layers is the map itself


@preset("captum", alpha="mean", relu=False, resize="nearest", norm="none",
        source="captum LayerGradCam (relu_attributions=False) + LayerAttribution.interpolate")
def captum(A, dA, size):
    """Captum's ``LayerGradCam(model, layer).attribute(x, c)`` upsampled the way its docs show:

        attr = sum_k mean_ij(dA^k) A^k          (N, 1, u, v); relu_attributions=False: no ReLU
        LayerAttribution.interpolate(attr, (H, W))  -> F.interpolate(mode="nearest")

    No normalisation: the signed, raw map. (``attribute_to_layer_input=False``: A is the
    layer's output, as here.)
    """
    return upsample(linear_map(A, dA), size, "nearest")


@preset("captum-relu", alpha="mean", relu=True, resize="nearest", norm="none",
        source="captum LayerGradCam (relu_attributions=True), as inside GuidedGradCam")
def captum_relu(A, dA, size):
    """Captum's ``LayerGradCam(...).attribute(x, c, relu_attributions=True)``, interpolated with
    the default "nearest" (the map ``GuidedGradCam`` multiplies guided backprop by):

        attr = ReLU(sum_k mean_ij(dA^k) A^k);   F.interpolate(attr, (H, W), mode="nearest")
    """
    return upsample(relu(linear_map(A, dA)), size, "nearest")


@preset("tf-keras-vis", alpha="mean", relu=True, resize="bilinear-corners", norm="minmax",
        source="keisen/tf-keras-vis: gradcam.py Gradcam.__call__, utils.standardize")
def tf_keras_vis(A, dA, size):
    """tf-keras-vis's ``Gradcam(model)(score, x)`` (keisen/tf-keras-vis, defaults):

        weights = K.mean(grads, axis=spatial);  cam = sum(A * weights, axis=-1)
        cam = K.relu(cam)                              activation_modifier
        cam = scipy.ndimage.zoom(cam, H/u, order=1)    linear, corner-aligned (grid_mode=False:
                                                       src = dst * (u - 1) / (H - 1))
        cam = (cam - min) / (max - min + K.epsilon())  standardize_cam, epsilon 1e-7
    """
    cam = upsample(relu(linear_map(A, dA)), size, "bilinear-corners")
    return minmax(cam, 1e-7)


@preset("keras-tutorial", alpha="mean", relu=True, resize=None, norm="relu/max",
        source="keras.io examples/vision/grad_cam.py make_gradcam_heatmap")
def keras_tutorial(A, dA, size=None):
    """The Keras tutorial's ``make_gradcam_heatmap`` (keras.io, "Grad-CAM class activation
    visualization"):

        pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
        heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
        heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)

    The coarse (u, v) map (the tutorial resizes only its colour-mapped uint8 picture). Note
    the division by the max of the map BEFORE the ReLU: 0/0 = NaN on a map whose maximum is
    0 (reproduced here), all -0.0 when every value is negative.
    """
    return relu_over_max(linear_map(A, dA))


@preset("grad-cam-lua", alpha="sum", relu=True, resize="bilinear-corners", norm="none",
        source="ramprs/grad-cam: misc/utils.lua utils.grad_cam, classification.lua")
def grad_cam_lua(A, dA, size):
    """The original Torch7 code (ramprs/grad-cam, ``misc/utils.lua``, ``classification.lua``):

        weights = torch.sum(gradients:view(K, -1), 2)   -- "Global average pool" in the comment,
                                                        -- but a SUM: Z = u*v times Eq. (1)
        map = sum_k weights_k A^k;  map = map:cmul(torch.gt(map, 0))           (the ReLU)
        gcam = image.scale(map, W, H)     -- bilinear, corner-aligned: src = dst*(u-1)/(H-1)

    ``gcam`` is what its Guided Grad-CAM multiplies by; its heatmap PNG is
    ``utils.to_heatmap(gcam)``, whose ``image.toDisplayTensor`` rescales min..max to 0..1
    first (then the same as ``tf-keras-vis``'s map, up to its 1e-7).
    """
    return upsample(relu(linear_map(A, dA, "sum")), size, "bilinear-corners")


# --------------------------------------------------------------------------- helpers
def apply(name, A, dA, size=None):
    """Run preset ``name`` on (N, K, u, v) activations and gradients; ``size`` (H, W) or int.

    ``size=None`` keeps the coarse resolution (u, v).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown convention {name!r}; presets are: {', '.join(PRESETS)}")
    if size is None:
        size = tuple(A.shape[-2:])
    return PRESETS[name](A, dA, size)


def from_result(name, r, size=None):
    """Convention ``name``'s final map from a ``GradCAMResult``; ``size`` defaults to its
    heatmap's (for "torchcam": None keeps the layer's size, as its extractors return).

    "pytorch-grad-cam" and "torchcam" post-process ``r.linear_map``, so they apply to any
    CAM-family method's result (``PEER_POST``; run the method with ``variant=name`` for the
    library's own formula). The other presets are Grad-CAM pipelines: they recompute the map
    from ``r.activations`` and ``r.gradients`` (for ``r.method == "counterfactual"`` pass
    ``-r.gradients`` to ``apply`` yourself: the presets take dy^c/dA as the anchors do).
    """
    if name in PEER_POST:
        return PEER_POST[name](r, size)
    return apply(name, r.activations, r.gradients,
                 tuple(r.heatmap.shape[-2:]) if size is None else size)


# --------------------------------------------------------------------------- the peers, any method
def _peer_map(name, r):
    if r.pixels is not None or r.linear_map is None:
        raise ValueError(f"{name} post-processes the maps of the CAM family; method {r.method!r} "
                         f"is a pixel-space method (its map is r.pixels)")
    return r.linear_map


def pytorch_grad_cam_post(r, size=None):
    """pytorch-grad-cam 1.5.7's post-processing of a raw map L = ``r.linear_map``, one layer:

        cam = scale_cam_image(max(L, 0), (W, H))       base_cam.py:171-172: min-max (1e-7),
                                                       then cv2.resize (half-pixel bilinear)
        out = scale_cam_image(max(cam, 0))             base_cam.py:177-181 (mean over layers)

    FullGrad (``r.weights is None``: a map at the input's size) is summed over its layers and
    only min-max normalised (fullgrad_cam.py:92-94). ``size`` (H, W): the heatmap's by default.
    An ``aug_smooth`` result: each run's map (``details["aug_coarse"]``, un-flipped) goes
    through the two steps above, then the mean (``forward_augmentation_smoothing``,
    base_cam.py:189-204: min-max per run, no normalisation after the mean).
    """
    L = _peer_map("pytorch-grad-cam", r)
    if r.weights is None:
        return minmax(L, 1e-7)
    size = tuple(r.heatmap.shape[-2:]) if size is None else size
    # NOTE: a run's map divided by its maximum is the same map after min-max (to the 1e-7)
    runs = r.details.get("aug_coarse", L[None])
    out = 0
    for m in runs:
        out = out + minmax(relu(upsample(minmax(relu(m), 1e-7), size, "bilinear")), 1e-7)
    return out / len(runs)


def torchcam_post(r, size=None):
    """torchcam 0.5.0's post-processing of a raw map L = ``r.linear_map``:

        cam = ReLU(L)         core.py:298-299 (every extractor but CAM, whose ``_relu`` is False)
        cam = (cam - min) / (max - min + 1e-8)      ``_normalize``, core.py:193-201

    at the layer's size, as the extractors return it; with ``size`` (H, W), resized as
    ``torchcam.utils.overlay_mask`` does (Pillow's bicubic, utils.py:49; ``peers.bicubic``).
    """
    L = _peer_map("torchcam", r)
    cam = minmax(L if r.method == "cam" else relu(L), 1e-8)
    return cam if size is None else resize_bicubic(cam, size)


PEER_POST = {"pytorch-grad-cam": pytorch_grad_cam_post, "torchcam": torchcam_post}
TORCHCAM_LAYERCAM_GAMMA = 2.0  # LayerCAM._scale_cams (torchcam/methods/gradient.py:457-459)


def fuse(name, results, size=None):
    """A peer's map from one method's results at several layers (``gradcam.explain`` per layer).

    "pytorch-grad-cam" (base_cam.py:161-181, ``target_layers=[...]``):
        m_l = resize(minmax(ReLU(L_l)), (H, W));  out = minmax(ReLU(mean_l m_l))   (eps 1e-7)
    "torchcam" (core.py:316-372 ``fuse_cams``; every method, LayerCAM with its scaling):
        m_l = minmax(ReLU(L_l)) (eps 1e-8), for LayerCAM tanh(2 m_l) (gradient.py:457-459)
        out = max_l resize(m_l, (h, w))   bilinear, half-pixel; (h, w) the largest layer's size

    Parameters
    ----------
    name : "pytorch-grad-cam" or "torchcam";  results : GradCAMResults of one method and input
    size : pytorch-grad-cam: (H, W), default the heatmaps'; torchcam: (h, w), default the
        largest of the layers' sizes (dimension by dimension, as ``fuse_cams``)
    Returns
    -------
    (N, H, W) or (N, h, w)
    """
    results = list(results)
    if name == "pytorch-grad-cam":
        size = tuple(results[0].heatmap.shape[-2:]) if size is None else size
        maps = [upsample(minmax(relu(_peer_map(name, r)), 1e-7), size, "bilinear")
                for r in results]
        return minmax(relu(sum(maps) / len(maps)), 1e-7)
    if name != "torchcam":
        raise ValueError(f"fuse reproduces 'pytorch-grad-cam' and 'torchcam', got {name!r}")
    maps = [torchcam_post(r) for r in results]
    if len(maps) == 1:
        return maps[0]  # fuse_cams returns a single map as it is
    if results[0].method == "layercam":
        maps = [get_xp(m).tanh(TORCHCAM_LAYERCAM_GAMMA * m) for m in maps]
    if size is None:
        size = tuple(max(m.shape[d] for m in maps) for d in (-2, -1))
    fused = upsample(maps[0], size, "bilinear")
    for m in maps[1:]:
        fused = get_xp(fused).maximum(fused, upsample(m, size, "bilinear"))
    return fused


def describe(spec):
    """One line: the choices of a ``Spec`` in words."""
    resize_words = {None: "no resizing (coarse map)", "bilinear": "half-pixel bilinear",
                    "bilinear-corners": "corner-aligned bilinear", "nearest": "nearest"}
    norm_words = {"none": "not normalised", "max": "/ max", "minmax": "min-max normalised",
                  "relu/max": "ReLU(x) / max(x)"}
    parts = [f"alpha = {spec.alpha} of gradients", "ReLU" if spec.relu else "no ReLU",
             resize_words[spec.resize], norm_words[spec.norm]]
    if spec.norm_before_resize:
        parts[-1] += " before and after resizing"
    return ", ".join(parts)
