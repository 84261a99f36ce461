"""The peer libraries' formulas where they depart from the papers, as registered variants.

``gradcam.explain(..., variant="pytorch-grad-cam")`` or ``variant="torchcam"`` runs the peer's
formula; ``docs/crosscheck.md`` names each departure with the peer's file and line and the
paper's equation. ``VARIANTS`` is a tuple of (method, variant, weighting, why), registered by
``gradcam.registry``; ``gradcam.conventions.from_result(peer, r)`` applies the peer's
post-processing (``gradcam.peers.post``).

    pytorch-grad-cam 1.5.7   gradcam.peers.pytorch_grad_cam
    torchcam 0.5.0           gradcam.peers.torchcam
"""

from ..family import FAMILY
from .pytorch_grad_cam import VARIANTS as _PGC
from .torchcam import VARIANTS as _TORCHCAM

# NOTE (until the family's branches are merged): a variant whose method is not registered yet
# is left out, so that this package imports on any merge order
_FAMILY_NAMES = {m.name for m in FAMILY}
VARIANTS = tuple(v for v in _PGC + _TORCHCAM if v[0] in _FAMILY_NAMES)
