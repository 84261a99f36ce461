"""The CAM family and its pixel-space companions, beyond the Grad-CAM paper: one module per
group of methods, each defining its ``Method`` entries (``METHODS``) next to its papers'
equations. ``gradcam.registry`` lists them after the Grad-CAM paper's own methods, in the order
of ``FAMILY``.
"""

from .eigen import METHODS as _eigen
from .fullgrad import METHODS as _fullgrad
from .paths import METHODS as _paths

FAMILY = () + _eigen + _fullgrad + _paths
