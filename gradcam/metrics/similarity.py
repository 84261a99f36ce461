"""How alike two explanation maps are: the similarity measures of the sanity checks.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292v3, Sec. 3:
a map recomputed on a randomised model is compared with the trained model's map by Spearman
rank correlation (of the maps and of their absolute values) and by SSIM.

    spearman(a, b)                  # (N,) rank correlation of each pair of maps
    spearman(a, b, absolute=True)   # of |a| and |b|
    ssim(a, b)                      # (N,) mean SSIM, Wang et al.'s 11x11 Gaussian window
    hog_correlation(a, b)           # (N,) Pearson's r of the maps' HOG features
    ranks(a)                        # (N, P) ranks 1..P, ties by their average rank

Maps are (N, H, W) (or (N, P) for ``spearman`` and ``ranks``), NumPy or CuPy: each function
returns an (N,) array of the maps' module. A constant map has no rank correlation: NaN (as
scipy.stats.spearmanr). No SciPy or scikit-image at run time; the tests cross-check both where
they are installed, and by hand.
"""

from __future__ import annotations

import math

from minicnn.backend import get_xp

__all__ = ["SSIM_WINDOWS", "hog", "hog_cells", "hog_correlation", "ranks", "spearman",
           "ssim"]

# name -> (window side, Gaussian sigma or None for a box, sample covariance)
SSIM_WINDOWS = {
    "gaussian": (11, 1.5, False),  # Wang et al. 2004, Sec. III-C: 11x11, sigma 1.5, unit sum
    "uniform": (7, None, True),    # scikit-image's structural_similarity default (7x7 box,
                                   # variances scaled by NP / (NP - 1), NP = 49)
}


def _flat(a, b=None):
    xp = get_xp(a)
    a = xp.asarray(a, dtype=xp.float64).reshape(a.shape[0], -1)
    if b is None:
        return a
    b = xp.asarray(b, dtype=xp.float64).reshape(b.shape[0], -1)
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have one shape, got {a.shape} and {b.shape}")
    return a, b


def ranks(a):
    """Rank of every value within its row, 1..P, tied values sharing their average rank.

    rank(a_p) = 1 + #{q : a_q < a_p} + (#{q : a_q = a_p} - 1) / 2

    Parameters
    ----------
    a : (N, ...) maps; each is flattened to P values
    Returns
    -------
    (N, P) float64
    """
    xp = get_xp(a)
    a = _flat(a)
    N, P = a.shape
    order = xp.argsort(a, axis=1)  # tied values get one average rank: their order is moot
    s = xp.take_along_axis(a, order, axis=1)
    # a new group of equal values starts where the sorted value changes (and at each row start)
    start = xp.ones((N, P), dtype=bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    group = xp.cumsum(start.reshape(-1)) - 1  # global group id, rows never share one
    pos = xp.tile(xp.arange(1, P + 1, dtype=xp.float64), N)
    count = xp.bincount(group)
    mean_rank = xp.bincount(group, weights=pos) / count  # average of the group's positions
    r = xp.empty((N, P), dtype=xp.float64)
    # NOTE: fancy indexing, not put_along_axis, which CuPy has only from 14.0
    r[xp.arange(N)[:, None], order] = mean_rank[group].reshape(N, P)
    return r


def spearman(a, b, absolute=False):
    """Spearman's rank correlation of each pair of maps: Pearson's r of their ranks.

    rho = sum_p (R_p - mean R)(S_p - mean S) / sqrt(sum_p (R_p - mean R)^2 sum_p (S_p - mean S)^2)
    with R = ranks(a), S = ranks(b) (ties by average rank); absolute: ranks of |a| and |b|

    Parameters
    ----------
    a, b : (N, H, W) or (N, P) maps of one shape
    absolute : compare |a| with |b| (Adebayo et al.'s "absolute value" rank correlation)
    Returns
    -------
    (N,) float64 in [-1, 1]; NaN where a map is constant
    """
    xp = get_xp(a)
    a, b = _flat(a, b)
    if absolute:
        a, b = xp.abs(a), xp.abs(b)
    R, S = ranks(a), ranks(b)
    R = R - R.mean(axis=1, keepdims=True)
    S = S - S.mean(axis=1, keepdims=True)
    den = xp.sqrt((R * R).sum(axis=1) * (S * S).sum(axis=1))
    num = (R * S).sum(axis=1)
    # NOTE: a constant map has all ranks equal, so den == 0: NaN, never a silent 0 or 1
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), xp.nan)


def _kernel(size, sigma, xp):
    """The 1-D window g (unit sum): the 2-D window is the outer product g g^T."""
    if sigma is None:
        return xp.full(size, 1.0 / size)
    d = xp.arange(size, dtype=xp.float64) - (size - 1) / 2  # made where the maps are: no copy
    g = xp.exp(-(d * d) / (2 * sigma * sigma))
    return g / g.sum()


def _filter(m, g):
    """sum_{k,l} g_k g_l m[..., i + k, j + l] over every window inside the map ("valid")."""
    w = g.shape[0]
    H, W = m.shape[-2:]
    rows = sum(g[k] * m[..., k:k + H - w + 1, :] for k in range(w))
    return sum(g[k] * rows[..., :, k:k + W - w + 1] for k in range(w))


def ssim(a, b, data_range=1.0, window="gaussian", K1=0.01, K2=0.03):
    """Mean structural similarity of each pair of maps (Wang et al., IEEE TIP 13(4), 2004).

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 +
                 sigma_y^2 + C2)),   C1 = (K1 L)^2, C2 = (K2 L)^2
    for every window position, with the window's weighted means, variances and covariance;
    the score is its mean over all windows that lie inside the map (Wang et al.'s MSSIM)

    Parameters
    ----------
    a, b : (N, H, W) maps of one shape, H and W at least the window's side
    data_range : L, the dynamic range of the values (1 for maps normalised to [0, 1])
    window : "gaussian" (Wang et al.'s 11x11 circular Gaussian, sigma 1.5, normalised to unit
        sum; the default) or "uniform" (scikit-image's default: a 7x7 box, with the sample
        variances and covariance, scaled by NP / (NP - 1))
    K1, K2 : Wang et al.'s constants (0.01, 0.03)
    Returns
    -------
    (N,) float64; 1 for identical maps
    """
    if window not in SSIM_WINDOWS:
        raise ValueError(f"unknown SSIM window {window!r}; use one of {tuple(SSIM_WINDOWS)}")
    size, sigma, sample = SSIM_WINDOWS[window]
    xp = get_xp(a)
    if a.ndim != 3 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"ssim compares (N, H, W) maps of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if min(a.shape[-2:]) < size:
        raise ValueError(f"ssim's {window} window is {size}x{size}; the maps are only "
                         f"{a.shape[-2]}x{a.shape[-1]}")
    x = xp.asarray(a, dtype=xp.float64)
    y = xp.asarray(b, dtype=xp.float64)
    g = _kernel(size, sigma, xp)
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    scale = size * size / (size * size - 1) if sample else 1.0
    var_x = scale * (_filter(x * x, g) - mu_x * mu_x)
    var_y = scale * (_filter(y * y, g) - mu_y * mu_y)
    cov = scale * (_filter(x * y, g) - mu_x * mu_y)
    C1, C2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)
         / ((mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)))
    return s.mean(axis=(1, 2))


# --------------------------------------------------------------------------- HOG
def hog_cells(maps, cell=8, bins=9):
    """The histograms of oriented gradients of each cell (Dalal & Triggs, CVPR 2005, Sec. 6).

    g_x = m[i, j+1] - m[i, j-1], g_y = m[i+1, j] - m[i-1, j] (0 on the border), |g| votes for
    the bin of its unsigned orientation atan2(g_y, g_x) mod 180 degrees (bins of 180 / bins
    degrees, hard voting: no interpolation between bins or cells)

    Parameters
    ----------
    maps : (N, H, W); cell : the cell's side in pixels (rows and columns beyond the last whole
        cell are dropped); bins : orientation bins over [0, 180)
    Returns
    -------
    (N, H // cell, W // cell, bins) float64
    """
    xp = get_xp(maps)
    m = xp.asarray(maps, dtype=xp.float64)
    N, H, W = m.shape
    gx, gy = xp.zeros_like(m), xp.zeros_like(m)
    gx[:, :, 1:-1] = m[:, :, 2:] - m[:, :, :-2]
    gy[:, 1:-1, :] = m[:, 2:, :] - m[:, :-2, :]
    mag = xp.sqrt(gx * gx + gy * gy)
    angle = xp.arctan2(gy, gx) % math.pi
    b = xp.minimum((angle / (math.pi / bins)).astype(xp.int64), bins - 1)
    Hc, Wc = H // cell, W // cell
    votes = mag[..., None] * (b[..., None] == xp.arange(bins))
    votes = votes[:, :Hc * cell, :Wc * cell].reshape(N, Hc, cell, Wc, cell, bins)
    return votes.sum(axis=(2, 4))


def hog(maps, cell=8, bins=9, block=2, clip=0.2, eps=1e-5):
    """HOG features: the cell histograms of every block x block window of cells, L2-Hys normed.

    v <- v / sqrt(|v|^2 + eps^2); v <- min(v, clip); v <- v / sqrt(|v|^2 + eps^2)
    (Dalal & Triggs's R-HOG: 8x8-pixel cells, 9 bins, 2x2-cell blocks at a stride of one cell)

    Returns
    -------
    (N, D) float64, D = (H // cell - block + 1) (W // cell - block + 1) block^2 bins
    """
    xp = get_xp(maps)
    h = hog_cells(maps, cell, bins)
    N, Hc, Wc, _ = h.shape
    if Hc < block or Wc < block:
        raise ValueError(f"HOG needs at least {block}x{block} cells of {cell}x{cell} pixels; "
                         f"the maps are {maps.shape[-2]}x{maps.shape[-1]}")
    v = xp.stack([h[:, i:i + block, j:j + block].reshape(N, -1)
                  for i in range(Hc - block + 1) for j in range(Wc - block + 1)], axis=1)
    v = v / xp.sqrt((v * v).sum(axis=2, keepdims=True) + eps * eps)
    v = xp.minimum(v, clip)
    v = v / xp.sqrt((v * v).sum(axis=2, keepdims=True) + eps * eps)
    return v.reshape(N, -1)


def hog_correlation(a, b, **options):
    """Pearson's correlation of the HOG features of each pair of maps (Adebayo et al.'s third
    measure): (N,) float64, NaN where a map's features are constant (e.g. a constant map).

    r = sum_d (u_d - mean u)(v_d - mean v) / sqrt(sum_d (u_d - mean u)^2 sum_d (v_d - mean v)^2)
    with u = hog(a), v = hog(b); ``options`` go to ``hog``
    """
    xp = get_xp(a)
    u, v = hog(a, **options), hog(b, **options)
    u = u - u.mean(axis=1, keepdims=True)
    v = v - v.mean(axis=1, keepdims=True)
    den = xp.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))
    return xp.where(den > 0, (u * v).sum(axis=1) / xp.where(den > 0, den, 1.0), xp.nan)
