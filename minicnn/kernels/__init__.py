"""The tuned tier: every op of ``minicnn.functional``, same signatures, same caches, faster.

Layers run these by default (``minicnn.use_tier`` switches them to the reference tier). The
caches are the reference tier's NamedTuples, so a cache made by either tier's forward is
consumed correctly by either tier's backward.

- ``conv``: blocked im2col on worker threads, the "wide grid" for stride-1 windows, Winograd
  F(2x2, 3x3) (``winograd``) for wide 3x3 layers, a backward that computes only what is asked;
- ``pool``: max-pool as running maxima over the window's taps, or over copied rows;
- ``elementwise``: ReLU/ReLU6 and batch norm in blocks of channels;
- ``blocks``: the thread pool, block plans, blocks of channels and reusable buffers.

Ops with no faster version (average pools, GAP, linear, dropout) are the reference functions.
Why each fast path exists, with measurements: benchmarks/README.md, "Kernel notes".
"""

from .. import functional as _reference
from ..functional import (RELU_RULES, BatchNormCache, Conv2dCache, LinearCache, PoolCache,
                          avgpool2d_backward, avgpool2d_forward, dropout_backward, dropout_forward,
                          global_avg_pool_backward, global_avg_pool_forward, linear_backward,
                          linear_forward)
from .conv import conv2d_backward, conv2d_forward
from .elementwise import batchnorm2d_backward, batchnorm2d_forward, relu_backward, relu_forward
from .pool import maxpool2d_backward, maxpool2d_forward, maxpool2d_infer

# the same names as the reference tier, by construction (tests/test_tiers.py checks each one's
# signature against its reference twin)
__all__ = list(_reference.__all__)
