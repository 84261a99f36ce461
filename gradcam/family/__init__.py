"""The CAM family and its pixel-space companions, beyond the Grad-CAM paper: one module per
group of methods, each defining its ``Method`` entries (``METHODS``) next to its papers'
equations. ``gradcam.registry`` lists them after the Grad-CAM paper's own methods, in the order
of ``FAMILY``.
"""

from .scores import METHODS as _scores

FAMILY = () + _scores
