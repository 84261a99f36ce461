"""Scaling of the VGG16 forward with batch size and image side, minicnn against PyTorch CPU.

    python benchmarks/bench_scaling.py [--batches 1 2 4 8 16] [--sides 112 224 448] [--repeats 3]

Batch sizes run at 224x224, sides at batch 1. Each cell: median ms of ours and torch's
(alternating in the same run), the per-repeat ratio ours/torch, and ms per image.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import fmt_ratio, race, summary, table, torch_twin

from minicnn import zoo


def scaling_rows(batches, sides, repeats):
    import torch

    model = zoo.vgg16().eval()
    net = torch_twin(model)
    rows = []
    cases = [(N, 224) for N in batches] + [(1, S) for S in sides if S != 224 or 1 not in batches]
    for N, S in cases:
        x = np.random.default_rng(0).standard_normal((N, 3, S, S)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            t = race({"ours": lambda: model.forward(x), "torch": lambda: net(xt)}, repeats)
        mo, mt = summary(t["ours"])[0], summary(t["torch"])[0]
        rows.append([N, S, f"{mo * 1e3:.0f}", f"{mt * 1e3:.0f}", fmt_ratio(t["ours"], t["torch"]),
                     f"{mo * 1e3 / N:.0f} / {mt * 1e3 / N:.0f}"])
        print(table(HEADER, rows[-1:]).splitlines()[-1], flush=True)
    return rows


HEADER = ["batch", "side", "minicnn ms", "torch ms", "ratio ours/torch", "ms per image (ours / torch)"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--sides", nargs="+", type=int, default=[112, 224, 448])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: nothing to race (pip install torch)")
        return 1
    print(table(HEADER, []))
    return scaling_rows(args.batches, args.sides, args.repeats)


if __name__ == "__main__":
    main()
