"""Grad-CAM++ and Smooth Grad-CAM++: per-position coefficients of the positive gradients.

Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
Convolutional Networks", WACV 2018, arXiv:1710.11063v3 (Sec. 3, Eqs. (5), (10), (12)-(20)).
Omeiza et al., "Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep
Convolutional Neural Network Models", 2019, arXiv:1908.01224v1.

Grad-CAM++ (symbols of the paper; Y^c the smooth class score, S^c = y^c the logit):

    w_k^c = sum_ij alpha^kc_ij relu(dY^c/dA^k_ij)                                    Eq. (5)
    alpha^kc_ij = d2Y/dA^2 / (2 d2Y/dA^2 + sum_ab A^k_ab d3Y/dA^3)   (at A^k_ij)      Eq. (10)
    L^c_ij = relu(sum_k w_k^c A^k_ij)                                                 Eq. (20)

The paper takes Y^c = exp(S^c) (Eq. (12)). For a network of linear pieces (ReLU, linear
layers: d2S/dA^2 = 0, Eq. (16)) the derivatives are powers of the one gradient dA = dS^c/dA
that a single backward gives:

    dY/dA = exp(S^c) dA, d2Y/dA^2 = exp(S^c) dA^2, d3Y/dA^3 = exp(S^c) dA^3   Eqs. (13), (17), (18)
    alpha^kc_ij = dA_ij^2 / (2 dA_ij^2 + (sum_ab A^k_ab) dA_ij^3)                     Eq. (19)

The factor exp(S^c) cancels in alpha (Eq. (19)) but not in Eq. (5): the paper's weights are
exp(y^c) sum_ij alpha^kc_ij relu(dy^c/dA^k_ij), as the authors' code also computes them
(adityac94/Grad_CAM_plus_plus, misc/utils.py, ``first_derivative =
tf.exp(cost)[0][label_index]*target_conv_layer_grad``). exp(y^c) > 0 is one number per image, so
it changes neither alpha, nor the sign pattern of Eq. (20), nor the normalised heatmap. NOTE: the
weights returned here leave it out,

    weights = w_k^c / exp(y^c) = sum_ij alpha^kc_ij relu(dy^c/dA^k_ij)

because exp(y^c) overflows float32 for a logit above 88.7 (ImageNet logits can be that large)
and would make ``linear_map`` and ``coarse`` exp(y^c) times larger than every other method's
for no visible gain. ``details["log_scale"]`` holds y^c, the log of the factor left out: the
paper's w is ``exp(details["log_scale"])[:, None] * weights``. The authors' code also divides
each channel's alphas by their sum, a step the paper does not have and that is not taken here.

Division by zero: alpha is 0 wherever its denominator is exactly 0. That covers 0/0 (dA_ij = 0:
no gradient, no coefficient), and the measure-zero case dA_ij != 0 with dA_ij sum_ab A^k_ab = -2
exactly. Where dA_ij > 0 (the only positions Eq. (5) keeps) and A >= 0 (a ReLU layer) the
denominator is dA^2 (2 + dA sum A) > 0, so no positive-gradient position is ever affected.

Smooth Grad-CAM++ runs the model on n noisy copies x + eps_m of the input (eps_m ~ N(0, std^2)
per pixel), averages each derivative order over the copies, and inserts the averages into the
Grad-CAM++ formulas:

    D^p = 1/n sum_m d^pY/dA^p (x + eps_m) = 1/n sum_m exp(y_m^c) (dA_m)^p      p = 1, 2, 3
    alpha^kc_ij = D^2 / (2 D^2 + sum_ab A^k_ab D^3)      w_k^c = sum_ij alpha^kc_ij relu(D^1)

(the weights returned leave out the common factor exp(y_ref), y_ref = max_m y_m^c, for the
reason above; ``details["log_scale"]`` holds y_ref)

with A the activations of the clean input x (the map is x's: L^c = relu(sum_k w_k^c A^k)).
NOTE: the averaged derivatives are those of Y^c = exp(S^c), as in Grad-CAM++; so each copy
enters with weight exp(y^c_m), and with n = 1 and zero noise the method is Grad-CAM++ exactly.
As torchcam 0.5.0 reads the paper (torchcam/methods/gradient.py:246-247), the paper prints the
average first derivative in alpha's numerator; that would not reduce to Grad-CAM++ (Eq. (10)
has the second derivative there) and is taken here as a misprint, as torchcam does. (Smooth
Grad-CAM++: equation numbers not verified against the paper's full text; that reading, and the
weighting of the copies by exp(y_m) that follows from differentiating Y^c = exp(S^c), are to
be checked against it.)

Options of "smooth-gradcam++" (``gradcam.explain(..., method="smooth-gradcam++", **options)``):

    num_samples  n, the number of noisy copies (default 4)
    std          the noise's standard deviation in the units of x as the model receives it,
                 an absolute value, not relative to x's range (default 0.3; torchcam 0.5.0's
                 defaults are num_samples=4, std=0.3, and its noise is absolute too)
    seed         the seed of numpy.random.default_rng that draws the noise (default 0, so that
                 an explanation is a deterministic function of its input)
    noise        an explicit (num_samples, N, C, H, W) array, added as given (std and seed are
                 then unused): reproduces a run of another library exactly
    The noise used is returned as ``details["noise"]``, with ``details["alpha_ij"]`` and each
    copy's score ``details["sample_scores"]`` (num_samples, N).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp

from ..engine import forward_backward
from ..method import Method, MethodOutput
from ..targets import class_score

__all__ = ["METHODS", "gradcam_pp_alpha", "gradcam_pp_weights", "noisy_copies", "smooth_moments"]

GRAD_CAM_PP = "Chattopadhay et al., WACV 2018, arXiv:1710.11063v3"
SMOOTH_GRAD_CAM_PP = "Omeiza et al. 2019, arXiv:1908.01224v1"


def _divide(num, den):
    """num / den, with 0 wherever den == 0 (0/0 -> 0; no division by zero is evaluated)."""
    xp = get_xp(num)
    zero = den == 0
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(den), den))


def gradcam_pp_alpha(A, D2, D3):
    """Grad-CAM++'s per-position coefficients from the second and third derivatives.

    alpha[n, k, i, j] = D2 / (2 D2 + (sum_ab A[n, k, a, b]) D3)    (0 where the denominator is 0)
    Eq. (10); with D^p = dA^p it is Eq. (19)

    Parameters
    ----------
    A : (N, K, U, V) activations
    D2, D3 : (N, K, U, V) d2Y^c/dA^2 and d3Y^c/dA^3 (any common positive factor cancels)
    Returns
    -------
    alpha : (N, K, U, V)
    """
    S = A.sum(axis=(2, 3), keepdims=True)  # sum_ab A^k_ab, one number per channel
    return _divide(D2, 2 * D2 + S * D3)


def gradcam_pp_weights(A, dA):
    """Grad-CAM++ weights (Eqs. (19) and (5)), without the per-image factor exp(y^c).

    w[n, k] = sum_ij alpha[n, k, i, j] relu(dA[n, k, i, j])     (the paper's w / exp(y^c))
    alpha = dA^2 / (2 dA^2 + (sum_ab A^k_ab) dA^3)                    (0 where the denominator is 0)

    Parameters
    ----------
    A : (N, K, U, V) activations
    dA : (N, K, U, V) dy^c/dA, the gradient of the logit y^c (not of exp(y^c))
    Returns
    -------
    w : (N, K)
    """
    xp = get_xp(A)
    alpha = gradcam_pp_alpha(A, dA * dA, dA * dA * dA)
    return (alpha * xp.maximum(dA, 0)).sum(axis=(2, 3))


def _scores(logits, target):
    """y^c per image: logits[n, c_n] (N,)."""
    xp = get_xp(logits)
    return logits[xp.arange(logits.shape[0]), xp.asarray(target)]


def _gradcam_pp(ctx):
    """Eqs. (19), (5): alpha^kc_ij and w_k^c / exp(y^c) = sum_ij alpha relu(dy^c/dA)."""
    alpha = gradcam_pp_alpha(ctx.A, ctx.dA * ctx.dA, ctx.dA * ctx.dA * ctx.dA)
    w = gradcam_pp_weights(ctx.A, ctx.dA)
    return MethodOutput(weights=w, details={"alpha_ij": alpha,
                                            "log_scale": _scores(ctx.logits, ctx.target)})


# --------------------------------------------------------------------------- Smooth Grad-CAM++
def noisy_copies(x, num_samples, std, seed, noise=None, dtype=None):
    """The noise eps (num_samples, N, C, H, W) a smoothed method adds to x, drawn or given.

    eps[m] ~ N(0, std^2) per pixel, from ``numpy.random.default_rng(seed)`` (drawn on the host,
    then moved to x's array module); an explicit ``noise`` is used as given (std, seed unused).

    Parameters
    ----------
    x : (N, C, H, W) input; num_samples : int >= 1; std : float >= 0, in the units of x;
    seed : int or None; noise : None or an array of shape (num_samples, N, C, H, W);
    dtype : dtype of the result (default: x's floating dtype, else float64)
    Returns
    -------
    eps : (num_samples, N, C, H, W)
    """
    xp = get_xp(x)
    n = int(num_samples)
    if n != num_samples or n < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    shape = (n,) + tuple(x.shape)
    dtype = dtype or (x.dtype if x.dtype.kind == "f" else "float64")
    if noise is None:
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        eps = np.random.default_rng(seed).standard_normal(shape) * float(std)
        return xp.asarray(eps).astype(dtype)
    if tuple(getattr(noise, "shape", ())) != shape:
        got = tuple(noise.shape) if hasattr(noise, "shape") else type(noise).__name__
        raise ValueError(f"noise must have shape (num_samples, *x.shape) = {shape}, got {got}")
    return xp.asarray(noise).astype(dtype)


def smooth_moments(ys, grads):
    """The averaged derivatives of Y^c = exp(y^c) over noisy copies, up to a common factor.

    D^p = 1/n sum_m exp(y_m - y_ref) dA_m^p  (p = 1, 2, 3),   y_ref = max_m y_m   per image

    The true averages are exp(y_ref) D^p; factoring exp(y_ref) out keeps every exponent <= 0.

    Parameters
    ----------
    ys : (n, N) the logits y^c of each copy; grads : (n, N, K, U, V) dy^c/dA of each copy
    Returns
    -------
    D1, D2, D3 : (N, K, U, V); y_ref : (N,)
    """
    xp = get_xp(grads)
    y_ref = ys.max(axis=0)
    e = xp.exp((ys - y_ref).astype("float64")).astype(grads.dtype)[:, :, None, None, None]
    n = grads.shape[0]
    return ((e * grads).sum(axis=0) / n, (e * grads ** 2).sum(axis=0) / n,
            (e * grads ** 3).sum(axis=0) / n, y_ref)


def _smooth_gradcam_pp(ctx):
    """Grad-CAM++ over noisy copies: the averaged D^1, D^2, D^3 in Eqs. (10) and (5)."""
    o = ctx.options
    xp = get_xp(ctx.A)
    eps = noisy_copies(ctx.x, o["num_samples"], o["std"], o["seed"], o["noise"], ctx.A.dtype)
    seed_fn = class_score(ctx.target)
    x = ctx.x.astype(ctx.A.dtype, copy=False)
    ys, grads = [], []
    for m in range(eps.shape[0]):  # one forward and backward per copy, to ctx.layer
        logits, _, dA, _ = forward_backward(ctx.model, x + eps[m], ctx.layer, seed_fn)
        ys.append(_scores(logits, ctx.target))
        grads.append(dA)
    ys, grads = xp.stack(ys), xp.stack(grads)
    D1, D2, D3, y_ref = smooth_moments(ys, grads)
    alpha = gradcam_pp_alpha(ctx.A, D2, D3)
    w = (alpha * xp.maximum(D1, 0)).sum(axis=(2, 3))  # the paper's w / exp(y_ref)
    return MethodOutput(weights=w, details={"noise": eps, "alpha_ij": alpha, "sample_scores": ys,
                                            "log_scale": y_ref})


METHODS = (
    Method("gradcam++", "Grad-CAM++", GRAD_CAM_PP + ", Eqs. (5), (19), (20)", "channel", True,
           "last-spatial", _gradcam_pp),
    Method("smooth-gradcam++", "Smooth Grad-CAM++", SMOOTH_GRAD_CAM_PP + " (with "
           + GRAD_CAM_PP.split(", ")[-1] + ", Eqs. (5), (10))", "channel", True, "last-spatial",
           _smooth_gradcam_pp, options={"num_samples": 4, "std": 0.3, "seed": 0, "noise": None}),
)
