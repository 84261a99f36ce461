"""minicnn: a small CNN library in NumPy with hand-written forward and backward passes.

Every op has a forward/backward pair in two tiers with the same signatures and caches: the
readable reference (``minicnn.functional``) and the tuned kernels (``minicnn.kernels``, what
layers run unless ``use_tier("reference")`` says otherwise), plus a plain-loop twin
(``minicnn.naive``). Layers wrap the pairs,
``Sequential`` names and chains them, and ``backward`` can stop at any layer, skip
weight gradients and swap the ReLU rule: what Grad-CAM and guided backprop need.
"""

from . import data, functional, gradcheck, io, kernels, layers, losses, naive, optim, tiers, train, zoo
from .backend import HAS_CUPY, asarray, get_xp, to_numpy
from .model import Residual, Sequential, from_config
from .tiers import use_tier

__all__ = [
    "HAS_CUPY", "Residual", "Sequential", "asarray", "data", "from_config", "functional",
    "get_xp", "gradcheck", "io", "kernels", "layers", "load", "losses", "naive", "optim", "tiers",
    "to_numpy", "train", "use_tier", "zoo",
]
__version__ = "0.1.0"


def load(path, device="numpy"):
    """Rebuild a model saved with ``model.save(path)`` (weights + architecture, no pickles)."""
    from . import io

    return io.load(path, device=device)
