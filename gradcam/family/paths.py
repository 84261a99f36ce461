"""Pixel-space companions: SmoothGrad and Integrated Gradients (input gradients at other inputs).

SmoothGrad: Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv:1706.03825v1.
The sensitivity map M_c(x) = dy^c/dx is averaged over noisy copies of the input:

    M^_c(x) = 1/n sum_{s=1}^n M_c(x + g_s),   g_s ~ N(0, sigma^2)   (the SmoothGrad average)

with the noise level given as sigma / (x_max - x_min) (the paper finds 10%-20% works best) and
n = 50 samples (past about 50 the paper sees diminishing returns). Here x_max and x_min are
each image's own extremes over (C, H, W); options ``num_samples`` (n, default 50), ``std`` (the
noise level, default 0.15), ``seed`` (default 0, so a run is a deterministic function of its
input, as every explanation here is) and ``noise``: an explicit (n, N, C, H, W) array g that
replaces the draw (then ``num_samples``, ``std`` and ``seed`` are unused), so a run can be
reproduced exactly in another library. ``details["noise"]`` holds the g that was added.

Integrated Gradients: Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017,
arXiv:1703.01365v2. Along the straight path from a baseline x' to x:

    IG_i(x) = (x_i - x'_i) * int_0^1 dy^c/dx_i (x' + a (x - x')) da          Eq. (1)
    sum_i IG_i(x) = y^c(x) - y^c(x')                   completeness (Prop. 1)

The integral is a quadrature over ``steps`` = m points a_k with weights w_k (option ``rule``;
options ``baseline``: None for zeros, a number or an array broadcast to x):

    "right"      a_k = k/m, k = 1..m, w_k = 1/m   the paper's Riemann sum; error O(1/m)
    "midpoint"   a_k = (k - 1/2)/m,   w_k = 1/m   error O(1/m^2) for a smooth integrand
    "trapezoid"  a_k = k/m, k = 0..m, w_k = 1/m (1/(2m) at both ends); m + 1 gradients; O(1/m^2)

The default is the paper's right sum with m = 50 (the paper: "between 20 and 300 steps are
enough to approximate the integral (within 5%)"; 50 is Captum's default too). NOTE: for a ReLU
network the integrand is piecewise constant in a (the network is piecewise linear), so every
rule's error is O(1/m), set by the kinks the path crosses; the O(1/m^2) orders hold for smooth
integrands (tested on one). For a network that is linear in x (no ReLU, no max-pool) the
integrand is constant and every rule is exact (tested to 1e-10). ``details`` hold the baseline,
the points and weights, y^c(x) - y^c(x') and the completeness gap sum_i IG_i - that difference.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_xp

from ..method import Method, MethodOutput

__all__ = ["METHODS", "RULES", "integrated_gradients", "path_rule", "smooth_grad",
           "smoothgrad_noise"]

RULES = ("right", "midpoint", "trapezoid")


# --------------------------------------------------------------------------- SmoothGrad
def smoothgrad_noise(x, num_samples=50, std=0.15, seed=0):
    """The noise SmoothGrad adds: g_s = sigma_n z_s with z_s ~ N(0, 1) from ``seed``.

    sigma_n = std * (max x[n] - min x[n])   per image n (the paper's noise level)

    Parameters
    ----------
    x : (N, C, H, W);  num_samples : n;  std : noise level, a fraction of each image's range
    seed : int for numpy.random.default_rng (drawn on the host, then moved to x's device)
    Returns
    -------
    noise : (n, N, C, H, W), x's module and dtype
    """
    xp = get_xp(x)
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    span = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
    z = xp.asarray(np.random.default_rng(seed).standard_normal((int(num_samples),) + x.shape))
    return (z * (std * span).reshape(1, -1, 1, 1, 1)).astype(x.dtype, copy=False)


def smooth_grad(gradient, x, noise):
    """M^_c(x) = 1/n sum_s M_c(x + g_s), with M_c = ``gradient`` (a callable x -> dy^c/dx).

    Parameters
    ----------
    gradient : callable (N, C, H, W) -> (N, C, H, W);  x : (N, C, H, W);  noise : (n, N, C, H, W)
    Returns
    -------
    (N, C, H, W) the mean gradient
    """
    if tuple(noise.shape[1:]) != tuple(x.shape) or noise.shape[0] < 1:
        raise ValueError(f"noise must be (num_samples, *x.shape) = (n, "
                         f"{', '.join(map(str, x.shape))}), got {tuple(noise.shape)}")
    total = 0
    for g in noise:  # one backward per sample, each of the N images at once
        total = total + gradient(x + g)
    return total / noise.shape[0]


def _smoothgrad(ctx):
    xp = get_xp(ctx.A)
    o = ctx.options
    if o["noise"] is not None:
        noise = xp.asarray(o["noise"], dtype=ctx.A.dtype)
    else:
        noise = smoothgrad_noise(ctx.A, o["num_samples"], o["std"], o["seed"])
    pixels = smooth_grad(ctx.input_gradient, ctx.A, noise)
    return MethodOutput(pixels=pixels, details={"noise": noise})


# --------------------------------------------------------------------------- IG
def path_rule(steps=50, rule="right"):
    """Points a_k in [0, 1] and weights w_k with int_0^1 g(a) da ~ sum_k w_k g(a_k).

    Parameters
    ----------
    steps : m >= 1;  rule : "right" (the paper's), "midpoint" or "trapezoid" (see the module)
    Returns
    -------
    alphas, weights : float64 host arrays, (m,) or (m + 1,) for "trapezoid"; weights sum to 1
    """
    m = int(steps)
    if m < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rule == "right":
        return np.arange(1, m + 1) / m, np.full(m, 1.0 / m)
    if rule == "midpoint":
        return (np.arange(m) + 0.5) / m, np.full(m, 1.0 / m)
    if rule == "trapezoid":
        w = np.full(m + 1, 1.0 / m)
        w[[0, -1]] = 0.5 / m
        return np.arange(m + 1) / m, w
    raise ValueError(f"unknown rule {rule!r}; use one of {RULES}")


def integrated_gradients(gradient, x, baseline, steps=50, rule="right"):
    """IG(x) = (x - x') * sum_k w_k dy^c/dx (x' + a_k (x - x'))   (Eq. (1), quadrature).

    Parameters
    ----------
    gradient : callable (N, C, H, W) -> dy^c/dx;  x, baseline : (N, C, H, W)
    steps, rule : the quadrature (``path_rule``)
    Returns
    -------
    attributions : (N, C, H, W);  mean_gradient : (N, C, H, W) the weighted mean of the
    gradients along the path;  alphas, weights : the quadrature (host arrays)
    """
    alphas, weights = path_rule(steps, rule)
    delta = x - baseline
    mean = 0
    for a, w in zip(alphas.tolist(), weights.tolist()):
        mean = mean + w * gradient(baseline + a * delta)
    return delta * mean, mean, alphas, weights


def _integrated_gradients(ctx):
    xp = get_xp(ctx.A)
    x = ctx.A
    b = ctx.options["baseline"]
    baseline = xp.zeros_like(x) if b is None else \
        xp.broadcast_to(xp.asarray(b, dtype=x.dtype), x.shape).copy()
    attr, mean, alphas, weights = integrated_gradients(
        ctx.input_gradient, x, baseline, ctx.options["steps"], ctx.options["rule"])
    n, c = xp.arange(x.shape[0]), xp.asarray(ctx.target)
    difference = ctx.logits[n, c] - ctx.forward_from(baseline)[n, c]
    gap = attr.reshape(x.shape[0], -1).sum(axis=1) - difference
    return MethodOutput(pixels=attr, details={
        "baseline": baseline, "alphas": alphas, "weights": weights, "mean_gradient": mean,
        "score_difference": difference, "completeness_gap": gap})


METHODS = (
    Method("smoothgrad", "SmoothGrad",
           "Smilkov et al., 2017, arXiv:1706.03825v1 (the mean of input gradients over noisy "
           "copies)", "pixel", True, "input", _smoothgrad,
           options={"num_samples": 50, "std": 0.15, "seed": 0, "noise": None}, fast_n=10),
    Method("integrated-gradients", "Integrated Gradients",
           "Sundararajan et al., ICML 2017, arXiv:1703.01365v2, Eq. (1) (its right Riemann sum)",
           "pixel", True, "input", _integrated_gradients,
           options={"baseline": None, "steps": 50, "rule": "right"}, fast_n=10),
)
