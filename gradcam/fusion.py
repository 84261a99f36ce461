"""Several layers at once: one explanation per layer, fused into one map at the input's size.

    r = explain_layers(model, x, target, method="layercam", layers=("relu2", "relu3", "relu4"),
                       fusion="layercam")
    r.results["relu3"]      # that layer's GradCAMResult (every intermediate, as from explain)
    r.maps                  # (L, N, H, W): each layer's map as it enters the fusion
    r.fused                 # (N, H, W) in [0, 1]

Every layer is explained by its own ``gradcam.explain`` call (same model, input, target, method
and options), so each layer's result holds exactly what a single-layer call returns; its
``coarse`` map L_l = relu(linear_map_l) (Eq. (2)) is what is fused.

fusion="mean": pytorch-grad-cam 1.5.7's aggregation of its ``target_layers``
(pytorch_grad_cam/base_cam.py:171-172 per layer, ``np.maximum(cam, 0)`` then ``scale_cam_image(cam,
target_size)``; base_cam.py:177-181 across layers, ``np.maximum``, ``np.mean(..., axis=1)``,
``scale_cam_image``; ``scale_cam_image`` in pytorch_grad_cam/utils/image.py:161-176 subtracts the
minimum, divides by (1e-7 + the maximum) and resizes with cv2.resize):

    m_l = resize(minmax(L_l), (H, W))       fused = minmax(1/L sum_l m_l)
    minmax(M) = (M - min M) / (max M - min M)  per image; an image whose map is constant gets 0

Bilinear resizing with half-pixel centres is cv2.resize's INTER_LINEAR (``gradcam.resize``).
NOTE: min-max is affine and the resize is linear with rows summing to 1, so normalising before
or after the resize gives the same map; pytorch-grad-cam's 1e-7 is left out (exact division;
a constant map is 0, as there).

fusion="layercam": the multi-layer fusion of LayerCAM (Jiang et al., IEEE TIP 30:5875-5888,
2021, doi:10.1109/TIP.2021.3089943). Maps from shallow layers have small values next to those
of deep layers, so the paper scales them before combining,

    hat M_l = tanh(gamma * M_l / max M_l)          gamma = 2   (the paper's Eq. (9), as torchcam
                                                               0.5.0 cites it, gradient.py:458)

and combines the layers position by position. NOTE: equation numbers not verified against the
paper's full text (Eq. (9) is torchcam's number). Two details are this module's choices, to
be checked against it: the shallow
layers are all but the deepest layer named (the last in the model's forward order), which keeps
its map normalised to max 1, M_L / max M_L; and the combination is the element-wise maximum (as
torchcam's). Every map is resized bilinearly to (H, W) first; the fused map is normalised to
max 1. torchcam 0.5.0 differs: it scales every layer, including the deepest,
after a min-max normalisation (torchcam/methods/gradient.py:457-459 and core.py:316-372,
``torch.maximum``), and pytorch-grad-cam fuses LayerCAM's layers with "mean" above.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from minicnn.backend import get_xp

from .core import explain
from .resize import normalize, resize

__all__ = ["FUSIONS", "LAYERCAM_GAMMA", "LayersResult", "explain_layers", "minmax"]

FUSIONS = ("mean", "layercam")
LAYERCAM_GAMMA = 2.0  # the paper's scale factor gamma


@dataclass(frozen=True, eq=False, repr=False)
class LayersResult:
    """One method at several layers, and the fused map.

    Attributes
    ----------
    method : the method's registered name
    fusion : "mean" or "layercam"
    layers : tuple of the layer names, in the order given
    results : read-only mapping layer name -> GradCAMResult (``gradcam.explain`` at that layer)
    maps : (L, N, H, W) each layer's map as it enters the fusion (in the order of ``layers``):
        "mean": resize(minmax(coarse)); "layercam": tanh(gamma coarse / max) for the shallow
        layers, coarse / max for the deepest, resized
    fused : (N, H, W) in [0, 1]
    """

    method: str
    fusion: str
    layers: tuple
    results: object
    maps: object
    fused: object

    def __repr__(self):
        return (f"LayersResult(method={self.method!r}, fusion={self.fusion!r}, "
                f"layers={self.layers}, fused={tuple(self.fused.shape)})")


def minmax(maps):
    """Per-image min-max normalisation to [0, 1]; a constant map becomes 0.

    out[n] = (maps[n] - min maps[n]) / (max maps[n] - min maps[n])

    Parameters
    ----------
    maps : (N, H, W)
    Returns
    -------
    out : (N, H, W), same module and dtype
    """
    xp = get_xp(maps)
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    flat = span == 0
    return xp.where(flat, xp.zeros_like(maps), (maps - low) / xp.where(flat, xp.ones_like(span),
                                                                       span))


def _forward_position(model, layer):
    names = model.layer_names()
    return names.index(layer) if layer in names else -1  # unknown: explain reports it


def explain_layers(model, x, target=None, method="gradcam", layers=(), fusion="mean",
                   gamma=LAYERCAM_GAMMA, **options):
    """Explain y^c at several layers with one method and fuse the maps.

    mean:     fused = minmax(1/L sum_l resize(minmax(L_l)))                 (pytorch-grad-cam)
    layercam: fused = normalize(max_l resize(hat M_l)),  hat M_l = tanh(gamma L_l / max L_l)
              for every layer but the deepest, L_L / max L_L for it          (LayerCAM, Eq. (9);
              equation numbers not verified against the paper's full text)

    Parameters
    ----------
    model : minicnn.Sequential
    x : (N, C, H, W) input, or one (C, H, W) image
    target : as for ``gradcam.explain`` (None: top-1 per image, the same at every layer)
    method : a registered channel or position method ("gradcam", "layercam", ...)
    layers : non-empty sequence of distinct layer names with spatial outputs
    fusion : "mean" or "layercam" (see the module docstring)
    gamma : LayerCAM's scale factor (fusion="layercam" only), default 2
    **options : the method's own options, passed to every layer's ``explain``
    Returns
    -------
    LayersResult
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; use one of {FUSIONS}")
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers must name one or more distinct layers, got {layers!r}")
    results = {}
    for layer in layers:
        r = explain(model, x, target, method, layer, **options)
        if r.coarse is None or r.coarse.ndim != 3 or r.layer == "input":
            raise ValueError(f"explain_layers fuses layer maps; method {method!r} gives none at "
                             f"layer {layer!r}")
        results[layer] = r
    size = tuple(results[layers[0]].heatmap.shape[-2:])
    xp = get_xp(results[layers[0]].coarse)
    if fusion == "mean":
        maps = xp.stack([resize(minmax(results[n].coarse), size) for n in layers])
        fused = minmax(maps.mean(axis=0))
    else:
        deepest = max(layers, key=lambda n: _forward_position(model, n))
        maps = []
        for n in layers:
            m = normalize(results[n].coarse)  # L_l / max L_l (an all-zero map stays 0)
            maps.append(resize(m if n == deepest else xp.tanh(gamma * m), size))
        maps = xp.stack(maps)
        fused = normalize(maps.max(axis=0))
    return LayersResult(method, fusion, layers, MappingProxyType(results), maps, fused)
