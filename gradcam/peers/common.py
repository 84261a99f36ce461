"""Steps the two peer libraries share: per-channel min-max with their epsilon, upsampling every
channel, scoring masked inputs by the logit, and the float32 round trips the libraries make.

Each function is one step of a peer's pipeline, on our arrays (NumPy or CuPy, ``xp``); the
variants in ``pytorch_grad_cam.py`` and ``torchcam.py`` chain them in the peer's order.
"""

from __future__ import annotations

from ..family.perturb import masked_scores
from ..resize import resize


def channel_minmax(M, eps):
    """(M - min) / (max - min + eps) per image and channel, over the spatial axes.

    Parameters
    ----------
    M : (N, K, h, w);  eps : the peer's constant (1e-8 in both libraries' Score-CAM,
        1e-7 in pytorch-grad-cam's scale_cam_image)
    Returns
    -------
    (N, K, h, w)
    """
    lo = M.min(axis=(2, 3), keepdims=True)
    hi = M.max(axis=(2, 3), keepdims=True)
    return (M - lo) / (hi - lo + eps)


def upsample_channels(M, size, align_corners):
    """Bilinear resize of every channel: (N, K, u, v) -> (N, K, H, W)."""
    N, K = M.shape[:2]
    out = resize(M.reshape((N * K,) + tuple(M.shape[2:])), size, align_corners=align_corners)
    return out.reshape((N, K) + tuple(out.shape[1:]))


def scores_of(ctx, masks, batch_size):
    """y^c (the logit) of the whole network on the masked inputs: s[n, k] = f(x_n * M[n, k])_c.

    ``family.perturb.masked_scores`` with score="logit", on x in the model's dtype.

    Parameters
    ----------
    ctx : gradcam.method.Context (its model, x and target classes c)
    masks : (N, K, H, W), broadcast against x_n over the colour axis
    batch_size : masked inputs per forward (the result does not depend on it)
    Returns
    -------
    s : (N, K)
    """
    x = ctx.x.astype(ctx.A.dtype, copy=False)
    return masked_scores(ctx.model.forward, x, ctx.target, masks, score="logit",
                         batch_size=batch_size)


def float32_round_trip(a):
    """``a`` rounded to float32 and back to its dtype: where a peer stores a step in float32
    (``np.float32(...)``, ``torch.Tensor(list)``), whatever the model's dtype."""
    return a.astype("float32").astype(a.dtype)
