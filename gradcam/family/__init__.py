"""The CAM family and its pixel-space companions, beyond the Grad-CAM paper: one module per
group of methods, each defining its ``Method`` entries (``METHODS``) next to its papers'
equations. ``gradcam.registry`` lists them after the Grad-CAM paper's own methods, in the order
of ``FAMILY``.

    plusplus      gradcam++, smooth-gradcam++       (gradcam_pp_alpha, gradcam_pp_weights, ...)
    elementwise   xgradcam, hirescam, gradcam-elementwise, layercam
                  (xgradcam_weights, hirescam_weights, elementwise_weights, layercam_weights)
    scores        scorecam, sscam, iscam, ablationcam (gradcam.family.perturb: masks, batched scores)
    eigen         eigencam, eigengradcam            (principal_projection, eigen_cam_weights, ...)
    fullgrad      fullgrad                          (full_gradient, layer_bias, fullgrad_psi)
    paths         smoothgrad, integrated-gradients  (smooth_grad, integrated_gradients, path_rule)
    occlusion     occlusion                         (occlusion_map, window_starts)
"""

from .eigen import METHODS as _eigen
from .elementwise import METHODS as _elementwise
from .fullgrad import METHODS as _fullgrad
from .occlusion import METHODS as _occlusion
from .paths import METHODS as _paths
from .plusplus import METHODS as _plusplus
from .scores import METHODS as _scores

FAMILY = _plusplus + _elementwise + _scores + _eigen + _fullgrad + _paths + _occlusion
