"""minicnn: a small CNN library in NumPy with hand-written forward and backward passes.

Every op has a forward/backward pair in two tiers with the same signatures and caches: the
readable reference (``minicnn.functional``) and the tuned kernels (``minicnn.kernels``, what
layers run unless ``use_tier("reference")`` says otherwise), plus a plain-loop twin
(``minicnn.naive``). Layers wrap the pairs,
``Sequential`` names and chains them, and ``backward`` can stop at any layer, skip
weight gradients and swap the ReLU rule: what Grad-CAM and guided backprop need.
``model.save(path)`` writes a model (weights, architecture, class names, input size,
preprocessing) and ``minicnn.load(path)`` rebuilds it.
"""

from . import (data, functional, gradcheck, io, kernels, layers, losses, naive, optim, preprocess,
               serialize, tiers, train, zoo)
from .backend import HAS_CUPY, asarray, get_xp, to_numpy
from .model import Residual, Sequential, from_config
from .preprocess import Preprocess
from .serialize import load
from .tiers import use_tier

__all__ = [
    "HAS_CUPY", "Preprocess", "Residual", "Sequential", "asarray", "data", "from_config",
    "functional", "get_xp", "gradcheck", "io", "kernels", "layers", "load", "losses", "naive",
    "optim", "preprocess", "serialize", "tiers", "to_numpy", "train", "use_tier", "zoo",
]
__version__ = "0.1.0"
