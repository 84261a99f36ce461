"""Forward pass: minicnn against PyTorch CPU on the same network, weights and input, same run.

    python benchmarks/bench_forward.py [--models vgg16 efficientnet_lite0 shapes_cnn]
                                       [--batches 1 8] [--repeats 7] [--layers]

For each model and batch size: median ms (min-max) of ours and torch's, the per-repeat ratio
ours/torch, the achieved GFLOP/s (2 x multiply-adds of the conv and linear layers, i.e. the
direct algorithm's count even where Winograd does fewer) and that rate as a share of the
machine's float32 matrix-product rate, measured at the start. ``--layers`` adds a per-layer
table for VGG16's 13 convolutions (forward of the conv alone, ours vs torch.nn.functional.conv2d).
From batch 16 on ours is the cache-free ``forward(x, stop_at=last layer)`` that Score-CAM runs.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import conv_flops, fmt_ratio, matmul_rate, ms, race, summary, table, torch_twin

from minicnn import kernels
from minicnn import zoo

SIZES = {"vgg16": 224, "efficientnet_lite0": 224, "shapes_cnn": 64}
DEFAULT_BATCH = {"vgg16": (1, 8), "efficientnet_lite0": (1, 16), "shapes_cnn": (64,)}
# batches from which the cache-free forward is timed (``forward(x, stop_at=last)``): what
# Score-CAM runs per batch of masked inputs (gradcam/family/scores.py, 16 per forward)
CACHE_FREE_FROM = 16


def build(name):
    """The model ``name`` in eval mode (random weights for VGG16; shipped ones where they exist)."""
    if name == "vgg16":
        return zoo.vgg16().eval()
    if name == "efficientnet_lite0":
        if not hasattr(zoo, "efficientnet_lite0"):
            return None
        try:
            return zoo.efficientnet_lite0(pretrained=True).eval()
        except Exception:  # the weights package is optional: random weights time the same
            return zoo.efficientnet_lite0(pretrained=False).eval()
    if name == "shapes_cnn":
        return zoo.shapes_cnn(pretrained=True).eval()
    raise ValueError(f"unknown model {name!r}")


def models_with_twins(models, batches):
    """Yield (name, model, torch twin, batch, image side) for every model and batch size."""
    for name in models:
        model = build(name)
        if model is None:
            print(f"  {name}: not in minicnn.zoo yet, skipped")
            continue
        net = torch_twin(model)
        for N in batches or DEFAULT_BATCH[name]:
            yield name, model, net, N, SIZES[name]


def forward_rows(models, batches, repeats, rate):
    import torch

    rows = []
    for name, model, net, N, S in models_with_twins(models, batches):
        x = np.random.default_rng(0).standard_normal((N, 3, S, S)).astype(np.float32)
        xt = torch.from_numpy(x)
        flops = sum(conv_flops(model, x).values())
        last = model.layers[-1][0]
        free = N >= CACHE_FREE_FROM

        def ours():
            return model.forward(x, stop_at=last) if free else model.forward(x)

        with torch.no_grad():
            t = race({"ours": ours, "torch": lambda: net(xt)}, repeats)
            diff = float(np.abs(net(xt).numpy() - ours()).max())
        med = summary(t["ours"])[0]
        gf = flops / med / 1e9
        rows.append([f"{name} forward" + (" (cache-free)" if free else ""), N, ms(t["ours"]), ms(t["torch"]),
                     fmt_ratio(t["ours"], t["torch"]), f"{gf:.0f} ({gf / rate:.0%})",
                     f"{diff:.1e}"])
        print(table(HEADER, rows[-1:]).splitlines()[-1], flush=True)
    return rows


HEADER = ["workload", "batch", "minicnn ms", "torch ms", "ratio ours/torch", "GFLOP/s (of matmul)",
          "max |diff|"]


def layer_rows(repeats, rate, N=1):
    """VGG16's convolutions one by one: ours (``kernels.conv2d_forward``) vs torch."""
    import torch

    rows, c_in, S = [], 3, 224
    rng = np.random.default_rng(0)
    for i, v in enumerate(zoo.VGG16_CFG):
        if v == "M":
            S //= 2
            continue
        x = rng.standard_normal((N, c_in, S, S)).astype(np.float32)
        w = (rng.standard_normal((v, c_in, 3, 3)) * 0.05).astype(np.float32)
        b = np.zeros(v, np.float32)
        xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
        with torch.no_grad():
            t = race({"ours": lambda: kernels.conv2d_forward(x, w, b, padding=1),
                      "torch": lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=1)}, repeats)
        flops = 2 * N * v * c_in * 9 * S * S
        g_o, g_t = flops / summary(t["ours"])[0] / 1e9, flops / summary(t["torch"])[0] / 1e9
        rows.append([f"{c_in}->{v} @{S}", ms(t["ours"]), ms(t["torch"]), fmt_ratio(t["ours"], t["torch"]),
                     f"{g_o:.0f} ({g_o / rate:.0%})", f"{g_t:.0f} ({g_t / rate:.0%})"])
        print(table(LAYER_HEADER, rows[-1:]).splitlines()[-1], flush=True)
        c_in = v
    return rows


LAYER_HEADER = ["VGG16 conv (b=1)", "minicnn ms", "torch ms", "ratio", "minicnn GFLOP/s (of matmul)",
                "torch GFLOP/s (of matmul)"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: nothing to race (pip install torch)")
        return 1
    rate = matmul_rate()
    print(f"float32 matrix product (4096^3): {rate:.0f} GFLOP/s")
    print(table(HEADER, []))
    rows = forward_rows(args.models, args.batches, args.repeats, rate)
    lrows = []
    if args.layers:
        print(table(LAYER_HEADER, []))
        lrows = layer_rows(args.repeats, rate)
    return rows, lrows, rate


if __name__ == "__main__":
    main()
