"""Metrics of explanation maps: pure, vectorised functions of (N, H, W) maps.

- ``localisation``: where a map points, against known ground truth (masks, boxes): pointing
  game, box IoU, mass inside the object (Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1).
- ``similarity``: how alike two maps are: Spearman's rank correlation (ties by average rank,
  with or without absolute values) and SSIM (Adebayo et al.'s sanity checks, arXiv:1810.03292v3).
- ``occlusion``: the Grad-CAM paper's faithfulness test (Sec. 5.3), the rank correlation of a
  map with the model's occlusion map.

``from gradcam import metrics`` gives every public name of the submodules.
"""

from .localisation import (area_share, box_iou, connected_components, localisation,  # noqa: F401
                           map_correlation, mass_ceiling, mass_inside, object_share,
                           pixel_saliency, pointing_game, weaker_instance, weaker_share)
from .occlusion import OcclusionCorrelation, occlusion_correlation  # noqa: F401
from .similarity import (SSIM_WINDOWS, hog, hog_cells, hog_correlation, ranks,  # noqa: F401
                         spearman, ssim)
