"""The Grad-CAM paper's faithfulness test: rank correlation with the occlusion map.

Selvaraju et al., arXiv:1610.02391v4, Sec. 5.3 "Faithfulness vs. Interpretability": a map is
faithful to the model if it ranks the pixels as occluding them changes the class score. The
occlusion map is Zeiler & Fergus's (arXiv:1311.2901v3, Sec. 4.2), the registry's method
"occlusion" (``gradcam.family.occlusion``); the correlation is Spearman's
(``gradcam.metrics.similarity.spearman``).

    res = metrics.occlusion_correlation(model, x, maps, target, window=8, stride=4)
    res.rho          # (N,) one rank correlation per image
    res.occlusion    # (N, H, W) the signed occlusion map S^c it was measured against
"""

from __future__ import annotations

from typing import NamedTuple

from ..core import explain
from .similarity import spearman

__all__ = ["OcclusionCorrelation", "occlusion_correlation"]


class OcclusionCorrelation(NamedTuple):
    """rho : (N,) Spearman's rank correlation of each map with its occlusion map;
    occlusion : (N, H, W) S^c, the mean drop of the class score over the windows hiding a pixel"""

    rho: object
    occlusion: object


def occlusion_correlation(model, x, maps, target=None, window=8, stride=4, baseline=0.0,
                          score="probability", batch_size=32):
    """Spearman's rank correlation between each map and the model's occlusion map.

    rho_n = spearman(maps_n, S^c_n),   S^c = explain(model, x, c, "occlusion", window, stride, ...)

    Parameters
    ----------
    model : minicnn.Sequential
    x : (N, C, H, W) input
    maps : (N, H, W) heatmaps at the input's size (e.g. ``explain(...).heatmap``)
    target : as for ``gradcam.explain`` (None: each image's top-1 class)
    window, stride, baseline, score, batch_size : the occlusion's options
        (``gradcam.family.occlusion.occlusion_map``)
    Returns
    -------
    OcclusionCorrelation(rho (N,), occlusion (N, H, W)); rho is NaN for a constant map
    """
    occ = explain(model, x, target, method="occlusion", window=window, stride=stride,
                  baseline=baseline, score=score, batch_size=batch_size).linear_map
    if tuple(maps.shape) != tuple(occ.shape):
        raise ValueError(f"maps must be (N, H, W) = {tuple(occ.shape)} like the input, got "
                         f"{tuple(maps.shape)}")
    return OcclusionCorrelation(spearman(maps, occ), occ)
