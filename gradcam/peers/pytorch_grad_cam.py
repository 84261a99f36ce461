"""pytorch-grad-cam 1.5.7 (jacobgil/pytorch-grad-cam), where its formulas depart from the papers.

Each weighting reproduces the library's raw map (``BaseCAM.get_cam_image``, before
``compute_cam_per_layer``'s ReLU and ``scale_cam_image``); ``gradcam.conventions.from_result(
"pytorch-grad-cam", r)`` then applies that post-processing. Files and lines are those of the
installed 1.5.7 wheel; docs/crosscheck.md gives each departure with the paper's equation and
its measured size.

Every weighting takes a ``gradcam.method.Context`` and returns what the paper's entry
returns: alpha, (N, K) or (N, K, u, v), or a ``MethodOutput`` with the peer's own map.

    method         pytorch-grad-cam                      departs from the paper by
    gradcam++      grad_cam_plusplus.py:19-35            + 1e-6 in alpha's denominator
    xgradcam       xgrad_cam.py:24-32                    + 1e-7 in the sum of A
    scorecam       score_cam.py:23-57                    corner-aligned upsampling; min-max
                                                         after it (+1e-8); softmax over the
                                                         channels of the raw logit (float32)
    ablationcam    ablation_cam.py:75-150,               ablates to min - 1e7 (minus 1e7 more
                   ablation_layer.py:220-235             per row of a batch) unless min(A) == 0
    eigencam       utils/svd_on_activations.py:5-21      centres A; LAPACK's sign; float32
    eigengradcam   eigen_grad_cam.py:14-21               the same on dA * A
    fullgrad       fullgrad_cam.py:45-94                 min-max per channel (not per layer),
                                                         half-pixel resize
"""

from __future__ import annotations

from minicnn.backend import get_xp

from ..family.fullgrad import full_gradient
from ..method import MethodOutput
from ..family.scores import softmax_channels
from .common import channel_minmax, float32_round_trip, scores_of, upsample_channels

NAME = "pytorch-grad-cam"
SCORE_BATCH = 16  # ScoreCAM's BATCH_SIZE (score_cam.py:42-45); the result does not depend on it
ABLATION_BATCH = 32  # AblationCAM(batch_size=32): the ablation value depends on the row in it
ABLATION_VALUE = 1e7  # ablation_layer.py:231


def grad_cam_pp(ctx):
    """Grad-CAM++ as ``GradCAMPlusPlus.get_cam_weights`` (grad_cam_plusplus.py:19-35).

    a_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3 + 1e-6),  0 where g_ij = 0   (g = dA)
    alpha_k = sum_ij ReLU(g_ij) a_ij

    The paper's Eq. (19) (arXiv:1710.11063v3) has no 1e-6: with gradients of order 1e-3 (a GAP
    head divides by Z) g^2 is of order 1e-6 and the constant changes alpha by tens of percent.
    """
    xp = get_xp(ctx.A)
    g = ctx.dA
    g2 = g * g
    S = ctx.A.sum(axis=(2, 3), keepdims=True)
    a = xp.where(g != 0, g2 / (2 * g2 + S * (g2 * g) + 1e-6), 0.0)
    return (xp.maximum(g, 0) * a).sum(axis=(2, 3))


def xgrad_cam(ctx):
    """XGrad-CAM as ``XGradCAM.get_cam_weights`` (xgrad_cam.py:24-32).

    alpha_k = sum_ij dA_ij A_ij / (sum_ab A_ab + 1e-7)
    """
    S = ctx.A.sum(axis=(2, 3), keepdims=True)
    return (ctx.dA * ctx.A / (S + 1e-7)).sum(axis=(2, 3))


def score_cam(ctx):
    """Score-CAM as ``ScoreCAM.get_cam_weights`` (score_cam.py:23-57).

    M_k = UpsamplingBilinear2d(A_k)      corner-aligned (align_corners=True)
    M_k = (M_k - min M_k) / (max M_k - min M_k + 1e-8)      per image and channel, after it
    s_k = y^c(x * M_k)                    the raw logit (ClassifierOutputTarget), float32
    alpha = softmax_k(s)                  over the channels, in float32; no baseline term
    """
    masks = channel_minmax(upsample_channels(ctx.A, ctx.x.shape[-2:], True), 1e-8)
    scores = float32_round_trip(scores_of(ctx, masks, SCORE_BATCH))
    alpha = softmax_channels(scores.astype("float32")).astype(ctx.A.dtype)
    return MethodOutput(weights=alpha, details={"masks": masks, "scores": scores})


def ablation_values(m, rows, dtype):
    """What ``AblationLayer.__call__`` (ablation_layer.py:220-235) writes into the ablated
    channel of each of ``rows`` copies of one image's A whose minimum is ``m``.

    v_i = 0 if m == 0;  else v_0 = m - 1e7 and v_i = v_{i-1} - 1e7: the layer takes
    ``torch.min(output)`` of the whole batch AFTER the rows before i were ablated.
    """
    out, low = [], m
    for _ in range(rows):
        v = 0.0 if low == 0 else dtype.type(low) - dtype.type(ABLATION_VALUE)
        out.append(v)
        low = min(low, v)
    return out


def ablation_cam(ctx):
    """Ablation-CAM as ``AblationCAM.get_cam_weights`` (ablation_cam.py:75-150).

    y_k = y^c with channel k of A set to v (``ablation_values``), batches of 32 channels
    alpha_k = (y - y_k) / y       y, y_k stored in float32

    The paper (Desai & Ramaswamy, WACV 2020, Eq. (3)) sets channel k to zero; the library
    does too when min(A) == 0 (after a ReLU), and otherwise to min(A) - 1e7, 2e7, ... (the
    value grows with the row in the batch), which saturates the layers above.
    """
    xp = get_xp(ctx.A)
    N, K = ctx.A.shape[:2]
    y = float32_round_trip(ctx.logits[xp.arange(N), xp.asarray(ctx.target)])
    yk = xp.empty((N, K), dtype=ctx.A.dtype)
    # NOTE: a layer inside a residual block needs the block's input, per image (forward_from)
    saved = dict(ctx.model.residual_inputs)
    for n in range(N):
        skips = {b: s[n:n + 1] for b, s in saved.items()}
        m = float(ctx.A[n].min())
        for k0 in range(0, K, ABLATION_BATCH):
            ks = list(range(k0, min(k0 + ABLATION_BATCH, K)))
            batch = xp.repeat(ctx.A[n][None], len(ks), axis=0)
            for i, v in enumerate(ablation_values(m, len(ks), ctx.A.dtype)):
                batch[i, ks[i]] = v
            y_ab = ctx.model.forward_from(ctx.layer, batch, skips=skips)
            yk[n, k0:k0 + len(ks)] = y_ab[:, int(ctx.target[n])]
    yk = float32_round_trip(yk)
    return (y[:, None] - yk) / y[:, None]


def first_component(M):
    """``get_2d_projection`` (utils/svd_on_activations.py:5-21) of one batch.

    X = M_n reshaped (u*v, K), centred per channel;  X = U S V^T (LAPACK, full matrices)
    P_n = X V_1 reshaped (u, v), in float32, with the sign LAPACK returns

    Returns (P (N, u, v) in M's dtype after the float32 round trip, V_1 (N, K)).

    NOTE: not ``family.eigen.principal_projection(M, centre=True, sign=None)``: that one runs a
    stacked reduced SVD, and only the library's own call (one image at a time, full matrices)
    is sure to get the sign LAPACK gives the library.
    """
    xp = get_xp(M)
    N, K = M.shape[:2]
    M = xp.where(xp.isnan(M), 0.0, M)
    P, V1 = [], []
    for n in range(N):
        X = M[n].reshape(K, -1).T
        X = X - X.mean(axis=0)
        _, _, VT = xp.linalg.svd(X, full_matrices=True)
        P.append((X @ VT[0]).reshape(M.shape[2:]))
        V1.append(VT[0])
    return float32_round_trip(xp.stack(P)), xp.stack(V1)


def eigen_cam(ctx):
    """Eigen-CAM as ``EigenCAM.get_cam_image``: ``get_2d_projection(A)`` (eigen_cam.py:15-22).

    alpha = V_1 (N, K); the map is the projection of the CENTRED A, so it is the linear_map
    (sum_k V_1k A^k differs from it by a constant per image).
    """
    P, V1 = first_component(ctx.A)
    return MethodOutput(weights=V1, linear_map=P, details={"v1": V1})


def eigen_grad_cam(ctx):
    """EigenGradCAM as ``get_2d_projection(dA * A)`` (eigen_grad_cam.py:14-21).

    alpha_k(i, j) = V_1k dA^k_ij (N, K, u, v); the map is the projection of the centred dA * A.
    """
    P, V1 = first_component(ctx.dA * ctx.A)
    return MethodOutput(weights=V1[:, :, None, None] * ctx.dA, linear_map=P, details={"v1": V1})


def channel_maps(term, size):
    """``scale_accross_batch_and_channels`` (utils/image.py:179-189): every (image, channel)
    min-max normalised on its own (+1e-7), in float32, and resized (cv2, half-pixel) to size.

    (N, K, h, w) -> (N, K, H, W)
    """
    m = float32_round_trip(channel_minmax(term, 1e-7))
    return upsample_channels(m, size, False) if tuple(m.shape[2:]) != tuple(size) else m


def full_grad(ctx):
    """FullGrad as ``FullGrad.compute_cam_per_layer`` (fullgrad_cam.py:45-90).

    S = sum_c phi(|dy^c/dx * x|)_c + sum_l sum_k phi(|dy^c/dz_l * b_l|)_k
    phi: min-max per image AND channel (+1e-7), then cv2.resize to (H, W)

    Layers: every Conv2d with a bias and every BatchNorm2d (its shift b = beta - gamma mu /
    sqrt(var + eps), fullgrad_cam.py:35-43). The paper's psi (arXiv:1905.00780v4, Eq. (4);
    equation numbers not verified against the paper's full text), as the authors' code applies
    it, rescales each layer's whole (K, h, w) block at once, and the
    input term over its three colour channels at once; normalising channel by channel gives
    every channel, however weak, the same range.
    """
    xp = get_xp(ctx.A)
    _, input_term, bias_terms = full_gradient(ctx.model, ctx.A, ctx.target)
    size = tuple(ctx.x.shape[-2:])
    S = channel_maps(xp.abs(input_term), size).sum(axis=1)
    spatial = [n for n, t in bias_terms.items() if t.ndim == 4]
    for name in spatial:
        S = S + channel_maps(xp.abs(bias_terms[name]), size).sum(axis=1)
    return MethodOutput(linear_map=S, details={"bias_layers": tuple(spatial)})


VARIANTS = (
    ("gradcam++", NAME, grad_cam_pp, "alpha's denominator + 1e-6 (grad_cam_plusplus.py:26-28)"),
    ("xgradcam", NAME, xgrad_cam, "sum of A + 1e-7 (xgrad_cam.py:28-30)"),
    ("scorecam", NAME, score_cam, "corner-aligned upsampling, min-max after it, softmax over "
     "channels of the raw logit (score_cam.py:24-56)"),
    ("ablationcam", NAME, ablation_cam, "ablates to min(A) - 1e7 (more per batch row) unless "
     "min(A) == 0 (ablation_layer.py:228-233)"),
    ("eigencam", NAME, eigen_cam, "centres A before the SVD, keeps LAPACK's sign "
     "(svd_on_activations.py:15-18)"),
    ("eigengradcam", NAME, eigen_grad_cam, "as eigencam, on dA * A (eigen_grad_cam.py:21)"),
    ("fullgrad", NAME, full_grad, "min-max per channel, not per layer; cv2 (half-pixel) "
     "resize (fullgrad_cam.py:56-73)"),
)
