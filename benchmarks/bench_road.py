"""ROAD's noisy linear imputation at 224 x 224: ``gradcam.metrics`` against pytorch-grad-cam's
``NoisyLinearImputer`` (a copy of the official code: scipy.sparse, one ``spsolve`` per mask),
same photo, same masks, same run.

    python benchmarks/bench_road.py [--threads 2] [--repeats 3] [--plain]

Input: matplotlib's grace_hopper.jpg through EfficientNet-Lite0's preprocessing, 3 x 224 x 224
float32. Masks: the official ROAD masks (``metrics.removal_masks``, exact counts) of our
Grad-CAM heatmap at ``_relu1`` (7 x 7 upsampled to 224), at the paper's 9 percentiles
(10 ... 90), MoRF and LeRF: 9 masks per order, each a system with 3 right-hand sides (the
channels). This is the imputation work of ``metrics.road`` on one image and one order, and of
pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage`` (one
imputer call per image and percentile), without the model's forwards.

Contenders: ours, ``linear_imputation_multigrid`` (what ``road`` runs: one call for the 9 masks,
as ``road`` batches them); pytorch-grad-cam's imputer, 9 calls; with ``--plain`` also our plain
solver ``linear_imputation`` (conjugate gradients from the coarse-grid solution, what ``road``
ran before the multigrid solver: about a minute per order). Before timing, the three are
compared without noise (their largest difference, in the images' units: the inputs span about
-2 ... 2.6).

Timing: ``common.race`` alternates the contenders on every repeat after a pause; the machine has
2 shared cores, so the per-repeat ratio (ours / pytorch-grad-cam, same machine state) is the
number to read, with its range.
"""

from __future__ import annotations

import argparse


# NOTE: thread counts must be set before NumPy's BLAS (and torch) load to take effect
import threads  # noqa: E402,F401  (sets them from --threads)

import numpy as np  # noqa: E402

from common import fmt_ratio, ms, pytorch_grad_cam, race, table  # noqa: E402

import gradcam  # noqa: E402
from gradcam import metrics  # noqa: E402
from gradcam.images import model_input  # noqa: E402
from gradcam.metrics.road import ORDERS, PERCENTILES  # noqa: E402
from minicnn import zoo  # noqa: E402

PHOTO = "grace_hopper.jpg"
HEADER = ["order", "contender", "median ms (min-max)", "ratio to pytorch-grad-cam per repeat"]


def inputs():
    """(x (1, 3, 224, 224) float32, Lite0's Grad-CAM heatmap (1, 224, 224) at ``_relu1``)."""
    from matplotlib import cbook

    model = zoo.efficientnet_lite0(pretrained=True).eval()
    x = model_input(model, cbook.get_sample_data(PHOTO, asfileobj=False))[0].astype(np.float32)
    r = gradcam.explain(model, x, None, "gradcam", layer="_relu1")
    return x, np.ascontiguousarray(r.heatmap, dtype=np.float32)


def contenders(x, masks, plain, noise=True):
    """name -> callable imputing the P masks (P, H, W) of image x (1, C, H, W)."""
    import torch
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    P = masks.shape[0]
    xs = np.repeat(x, P, axis=0)
    z = 0.01 * np.random.default_rng(0).standard_normal(xs.shape) if noise else None
    imputer = NoisyLinearImputer(noise=0.01 if noise else 0.0)
    img = torch.from_numpy(x[0])
    kept = [torch.from_numpy((~m).astype(np.float32)) for m in masks]  # theirs: 1 = kept
    fns = {"multigrid": lambda: metrics.linear_imputation_multigrid(xs, masks, z),
           "pytorch-grad-cam": lambda: np.stack([imputer(img, k).numpy() for k in kept])}
    if plain:
        fns["plain CG"] = lambda: metrics.linear_imputation(xs, masks, z)
    return fns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", action="store_true",
                        help="also time the plain CG solver (slow: about a minute per order)")
    args = parser.parse_args(argv)
    if pytorch_grad_cam() is None:
        raise SystemExit("bench_road needs pytorch-grad-cam (and scipy): see benchmarks/README.md")
    import torch

    torch.set_num_threads(int(args.threads))
    x, maps = inputs()
    rows = []
    for order in ORDERS:
        masks = np.asarray(metrics.removal_masks(maps, PERCENTILES, order)[0])
        quiet = {k: fn() for k, fn in contenders(x, masks, args.plain, noise=False).items()}
        ref = quiet["pytorch-grad-cam"]
        print(f"{order}: removed {masks.mean(axis=(1, 2)).round(2).tolist()} of the pixels; "
              + "; ".join(f"{k} vs pytorch-grad-cam max |diff| {np.abs(v - ref).max():.1e}"
                          for k, v in quiet.items() if k != "pytorch-grad-cam"))
        t = race(contenders(x, masks, args.plain), repeats=args.repeats, warmup=0)
        for k in t:
            ratio = "1" if k == "pytorch-grad-cam" else fmt_ratio(t[k], t["pytorch-grad-cam"])
            rows.append([order.upper(), k, ms(t[k]), ratio])
    print(f"{PHOTO}, 3 x 224 x 224, percentiles {PERCENTILES}, "
          f"{args.threads} threads")
    print(table(HEADER, rows))
    return rows


if __name__ == "__main__":
    main()
