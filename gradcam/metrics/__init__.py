"""Metrics of explanation maps: pure, vectorised functions of (N, H, W) maps.

- ``localisation``: where a map points, against known ground truth (masks, boxes): pointing
  game, box IoU, mass inside the object (Selvaraju et al., arXiv:1610.02391v4, Sec. 4.1).
- ``similarity``: how alike two maps are: Spearman's rank correlation (ties by average rank,
  with or without absolute values) and SSIM (Adebayo et al.'s sanity checks, arXiv:1810.03292v3).
- ``occlusion``: the Grad-CAM paper's faithfulness test (Sec. 5.3), the rank correlation of a
  map with the model's occlusion map.
- ``faithfulness``: what the model does when the map's pixels are removed or kept: deletion and
  insertion curves (Petsiuk et al., arXiv:1806.07421), Average Drop and Increase in Confidence
  (Chattopadhay et al., arXiv:1710.11063v3, Sec. 5), the signed confidence change.
- ``road``: Remove And Debias (Rong et al., arXiv:2202.00449v2): removal with noisy linear
  imputation, most- and least-relevant first; ``imputation`` (the system, the plain
  conjugate-gradient solver) and ``multigrid`` (the fast solver ``road`` runs).
- ``perturbation``: what those share (baselines, the salience order, batched class scores).

``from gradcam import metrics`` gives every public name of the submodules.
"""

from .faithfulness import (FaithfulnessCurve, average_drop, confidence_change,  # noqa: F401
                           deletion, increase_in_confidence, insertion, masked_confidence,
                           perturbation_counts)
from .localisation import (area_share, box_iou, connected_components, localisation,  # noqa: F401
                           map_correlation, mass_ceiling, mass_inside, object_share,
                           pixel_saliency, pointing_game, weaker_instance, weaker_share)
from .occlusion import OcclusionCorrelation, occlusion_correlation  # noqa: F401
from .perturbation import baseline_image, blur, salience_order  # noqa: F401
from .imputation import linear_imputation  # noqa: F401
from .multigrid import linear_imputation_multigrid  # noqa: F401
from .road import RoadResult, removal_masks, road  # noqa: F401
from .similarity import (SSIM_WINDOWS, hog, hog_cells, hog_correlation, ranks,  # noqa: F401
                         spearman, ssim)
