"""Metrics of explanation maps: pure, vectorised functions of (N, H, W) maps.

- ``localisation``: where a map points, against known ground truth (masks, boxes): pointing
  game, box IoU, mass inside the object (Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1).

``from gradcam import metrics`` gives every public name of the submodules.
"""

from .localisation import (area_share, box_iou, connected_components, localisation,  # noqa: F401
                           map_correlation, mass_ceiling, mass_inside, object_share,
                           pixel_saliency, pointing_game, weaker_instance, weaker_share)
