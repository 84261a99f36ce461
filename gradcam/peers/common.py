"""Steps the two peer libraries share: per-channel min-max, upsampling every channel, scoring
masked inputs, a channel softmax and the float32 round trips the libraries make.

Each function is one step of a peer's pipeline, on our arrays (NumPy or CuPy, ``xp``); the
variants in ``pytorch_grad_cam.py`` and ``torchcam.py`` chain them in the peer's order.
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..resize import resize


def channel_minmax(M, eps):
    """(M - min) / (max - min + eps) per image and channel, over the spatial axes.

    Parameters
    ----------
    M : (N, K, h, w);  eps : the peer's constant (pytorch-grad-cam 1e-8, torchcam 1e-8)
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


def masked_scores(ctx, masks, batch_size, scale=1.0):
    """y^c of the whole network on the masked inputs, one per image and mask.

    s[n, k] = f(scale * (x_n * masks[n, k]))_{c_n}

    Parameters
    ----------
    ctx : gradcam.method.Context (its model, x and target classes c)
    masks : (N, K, H, W), broadcast against x_n over the colour axis
    batch_size : how many masked inputs one forward takes (results do not depend on it)
    scale : a scalar the masked input is multiplied by (torchcam's IS-CAM coefficient)
    Returns
    -------
    s : (N, K) in the model's dtype
    """
    xp = get_xp(masks)
    N, K = masks.shape[:2]
    rows = []
    for n in range(N):
        c = int(ctx.target[n])
        for k0 in range(0, K, batch_size):
            batch = ctx.x[n][None] * masks[n, k0:k0 + batch_size, None]
            rows.append(ctx.model.forward(scale * batch)[:, c])
    return xp.concatenate(rows).reshape(N, K)


def softmax(s, axis=-1):
    """exp(s - max) / sum exp(s - max) along ``axis`` (as torch.softmax)."""
    xp = get_xp(s)
    e = xp.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def float32_round_trip(a):
    """``a`` rounded to float32 and back to its dtype: where a peer stores a step in float32
    (``np.float32(...)``, ``torch.Tensor(list)``), whatever the model's dtype."""
    return a.astype("float32").astype(a.dtype)
