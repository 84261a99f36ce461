"""The peer libraries' formulas where they depart from the papers, as registered variants.

``gradcam.explain(..., variant="pytorch-grad-cam")`` or ``variant="torchcam"`` runs the peer's
formula; ``docs/crosscheck.md`` names each departure with the peer's file and line and the
paper's equation. ``VARIANTS`` is a tuple of (method, variant, weighting, why), registered by
``gradcam.registry``.
"""

VARIANTS = ()
