"""VGG16-topology forward time (224x224, float32) and the machine's float32 matrix-product rate.

    python benchmarks/bench_forward.py [--batch 1] [--repeats 7]

Prints medians and min-max over repeats, the achieved GFLOP/s of the forward (counting
2 * MACs of the conv and linear layers), and that rate as a share of the measured matrix-
product rate. Where PyTorch is installed, it runs the same topology with the same weights
in the same process, alternating with ours, and prints the ratio ours / torch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minicnn import layers as L
from minicnn import zoo


def timeit(fn, repeats):
    fn()  # warm-up: page in buffers, let BLAS spin up its threads
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_rate(n=4096, repeats=5):
    """float32 GFLOP/s of an n x n matrix product (2 n^3 flops), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return 2 * n**3 / min(timeit(lambda: a @ b, repeats)) / 1e9


def forward_flops(model, x):
    """2 * multiply-adds of every Conv2d and Linear for input ``x`` (from recorded shapes)."""
    model.forward(x)
    flops = 0
    for name, lay in model.named_layers():
        if isinstance(lay, L.Conv2d):
            N, F, OH, OW = model.shapes[name]
            flops += 2 * N * F * OH * OW * lay.params["weight"][0].size
        elif isinstance(lay, L.Linear):
            flops += 2 * model.shapes[name][0] * lay.params["weight"].size
    return flops


def torch_twin(model):
    """The same VGG16 in PyTorch with the same weights, or None without torch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    feats, c_in = [], 3
    for v in zoo.VGG16_CFG:
        if v == "M":
            feats.append(nn.MaxPool2d(2))
        else:
            feats += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(*feats))
    net.add_module("avgpool", nn.AdaptiveAvgPool2d(7))
    net.add_module("flatten", nn.Flatten())
    net.add_module("classifier", nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                                               nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                               nn.Linear(4096, 1000)))
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                         for k, v in model.state_dict().items()})
    return net.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rate = matmul_rate()
    print(f"float32 matrix product (4096^3): {rate:.0f} GFLOP/s")
    model = zoo.vgg16().eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype("float32")
    flops = forward_flops(model, x)
    net = torch_twin(model)
    ours, theirs = [], []
    if net is None:
        ours = timeit(lambda: model.forward(x), args.repeats)
    else:
        import torch

        xt = torch.from_numpy(x)
        model.forward(x)
        with torch.no_grad():
            net(xt)
            for _ in range(args.repeats):  # alternate, so drift in machine load hits both
                ours += timeit(lambda: model.forward(x), 1)
                theirs += timeit(lambda: net(xt), 1)
            diff = np.abs(net(xt).numpy() - model.forward(x)).max()
    med = statistics.median(ours)
    print(f"VGG16 forward, batch {args.batch}, {args.size}x{args.size}: minicnn median "
          f"{med * 1e3:.0f} ms (min {min(ours) * 1e3:.0f}, max {max(ours) * 1e3:.0f}); "
          f"{flops / med / 1e9:.0f} GFLOP/s = {flops / med / 1e9 / rate:.0%} of the matmul rate")
    if theirs:
        tmed = statistics.median(theirs)
        print(f"  PyTorch CPU median {tmed * 1e3:.0f} ms (min {min(theirs) * 1e3:.0f}, max "
              f"{max(theirs) * 1e3:.0f}); ratio ours/torch {med / tmed:.2f} "
              f"(per-run min-max {min(o / t for o, t in zip(ours, theirs)):.2f}-"
              f"{max(o / t for o, t in zip(ours, theirs)):.2f}); max |logit diff| {diff:.2e}")
    else:
        print("  (PyTorch not installed: no same-run comparison; pip install torch==2.13.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
