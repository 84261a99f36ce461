"""The peer libraries' formulas where they depart from the papers, as registered variants.

``gradcam.explain(..., variant="pytorch-grad-cam")`` or ``variant="torchcam"`` runs the peer's
formula; ``docs/crosscheck.md`` names each departure with the peer's file and line and the
paper's equation. ``VARIANTS`` is a tuple of (method, variant, weighting, why), registered by
``gradcam.registry``; ``gradcam.conventions.from_result(peer, r)`` applies the peer's
post-processing, for any method of the family.

    pytorch-grad-cam 1.5.7   gradcam.peers.pytorch_grad_cam
    torchcam 0.5.0           gradcam.peers.torchcam
    shared steps             gradcam.peers.common;  Pillow's bicubic: gradcam.peers.bicubic
"""

from .pytorch_grad_cam import VARIANTS as _PGC
from .torchcam import VARIANTS as _TORCHCAM

VARIANTS = _PGC + _TORCHCAM

# The class each peer library implements a registered method with (checked against the installed
# libraries in tests/test_peers_family.py); the README's methods table reads it.
PEER_CLASSES = {
    "pytorch-grad-cam": {
        "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
        "hirescam": "HiResCAM", "gradcam-elementwise": "GradCAMElementWise",
        "layercam": "LayerCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM",
        "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "fullgrad": "FullGrad",
    },
    "torchcam": {
        "cam": "CAM", "gradcam": "GradCAM", "gradcam++": "GradCAMpp",
        "smooth-gradcam++": "SmoothGradCAMpp", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
        "scorecam": "ScoreCAM", "sscam": "SSCAM", "iscam": "ISCAM",
    },
}
