"""Shared pieces of the benchmark scripts: the same-run race, the machine's matmul rate, FLOP
counts, a PyTorch twin of any minicnn model, and the peers (Captum, pytorch-grad-cam) if present.

Every comparison runs both sides in ONE process on the SAME inputs and weights, alternating
ours / theirs on every repeat, so drift in the machine's load (2 shared cores here) hits both;
we report medians, min-max, and the per-repeat ratio ours/theirs (its median and range).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/<script>.py` from anywhere
    sys.path.insert(0, ROOT)

from minicnn import layers as L  # noqa: E402
from minicnn.im2col import conv_padding  # noqa: E402
from minicnn.model import Residual, Sequential  # noqa: E402


# --------------------------------------------------------------------------- timing
PAUSE = 0.25  # seconds of idle before every timed call


def race(fns, repeats=7, warmup=1, pause=PAUSE, log=None):
    """Time each callable in ``fns`` (name -> fn), alternating them on every repeat.

    Returns name -> list of seconds. The first name is the reference for ``ratio``. ``log``,
    if given, is called as log(repeat, name, seconds) after every timed call (for runs of
    minutes, to show progress).

    NOTE: the pause matters. BLAS and OpenMP worker threads keep spinning for a while after a
    call returns; without it, the contender that runs next shares the cores with the previous
    one's spinning threads (measured: torch's VGG16 forward 260 ms right after ours, 199 ms
    after a 0.3 s pause).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for rep in range(repeats):
        for k, fn in fns.items():
            time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            if log is not None:
                log(rep, k, times[k][-1])
    return times


def summary(ts):
    return statistics.median(ts), min(ts), max(ts)


def ratio(ours, theirs):
    """Median and range of the per-repeat ratio ours/theirs (same repeat = same machine state)."""
    r = [a / b for a, b in zip(ours, theirs)]
    return statistics.median(r), min(r), max(r)


def ms(ts):
    med, lo, hi = summary(ts)
    return f"{med * 1e3:.0f} ({lo * 1e3:.0f}-{hi * 1e3:.0f})"


def fmt_ratio(ours, theirs):
    med, lo, hi = ratio(ours, theirs)
    return f"{med:.2f} ({lo:.2f}-{hi:.2f})"


def matmul_rate(n=4096, repeats=5):
    """float32 GFLOP/s of an n x n matrix product (2 n^3 flops), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_once(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def table(header, rows):
    """A markdown table (also readable as plain text)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- work counts
def conv_flops(model, x):
    """{layer name: 2 * multiply-adds} of every Conv2d and Linear for input ``x``."""
    model.forward(x)
    flops = {}
    for name, lay in model.named_layers():
        if isinstance(lay, L.Conv2d):
            N, F, OH, OW = model.shapes[name]
            flops[name] = 2 * N * F * OH * OW * lay.params["weight"][0].size
        elif isinstance(lay, L.Linear):
            flops[name] = 2 * model.shapes[name][0] * lay.params["weight"].size
    return flops


# --------------------------------------------------------------------------- the torch twin
def torch_twin(model):
    """The same network in PyTorch, with the same weights (a copy), in eval mode.

    Translates every minicnn layer type (Conv2d incl. TF "same" padding, BatchNorm2d, ReLU,
    ReLU6, pools, Flatten, Dropout, Linear, Sequential, Residual); module names follow the
    minicnn names, so ``twin.get_submodule("features.29")`` is ``model["features.29"]``.
    Returns None when torch is not installed.
    """
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class SamePad(nn.Module):
        """TensorFlow's "same" padding, computed from the input size as minicnn does."""

        def __init__(self, conv):
            super().__init__()
            self.conv, self.k, self.s, self.d = conv, conv.kernel_size, conv.stride, conv.dilation

        def forward(self, x):
            t, b, l, r = conv_padding("same", x.shape[2:], self.k, self.s, self.d)
            return self.conv(nn.functional.pad(x, (l, r, t, b)))

    class Res(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    def conv(lay):
        pad = lay.padding
        same = isinstance(pad, str) and pad.lower() == "same"
        if isinstance(pad, str) and not same:
            pad = 0
        if isinstance(pad, tuple) and len(pad) == 4:
            if pad[0] != pad[1] or pad[2] != pad[3]:
                raise NotImplementedError("asymmetric conv padding in the torch twin")
            pad = (pad[0], pad[2])
        m = nn.Conv2d(lay.in_channels, lay.out_channels, lay.kernel_size, lay.stride,
                      0 if same else pad, lay.dilation, lay.groups, bias="bias" in lay.params)
        return SamePad(m) if same else m

    def gap():
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def build(seq):
        mods = nn.Sequential()
        for name, lay in seq.layers:
            if isinstance(lay, Residual):
                m = Res(build(lay))
            elif isinstance(lay, Sequential):
                m = build(lay)
            else:
                m = {
                    L.Conv2d: lambda: conv(lay),
                    L.BatchNorm2d: lambda: nn.BatchNorm2d(lay.num_features, lay.eps, lay.momentum),
                    L.ReLU6: lambda: nn.ReLU6(),
                    L.ReLU: lambda: nn.ReLU(),
                    L.MaxPool2d: lambda: nn.MaxPool2d(lay.kernel_size, lay.stride, _sym(lay.padding)),
                    L.AvgPool2d: lambda: nn.AvgPool2d(lay.kernel_size, lay.stride, _sym(lay.padding)),
                    L.AdaptiveAvgPool2d: lambda: nn.AdaptiveAvgPool2d(lay.output_size),
                    L.GlobalAvgPool2d: gap,
                    L.Flatten: lambda: nn.Flatten(),
                    L.Dropout: lambda: nn.Dropout(lay.p),
                    L.Linear: lambda: nn.Linear(lay.in_features, lay.out_features, "bias" in lay.params),
                }[type(lay)]()
            mods.add_module(name, m)
        return mods

    net = build(model)
    state = {}
    for key, v in model.state_dict().items():
        state[_torch_key(net, key)] = torch.from_numpy(np.array(v, dtype=np.float32))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"torch twin: missing {missing}, unexpected {unexpected}")
    return net.eval()


def _sym(p):
    return p if isinstance(p, int) else tuple(p)[:2] if len(tuple(p)) == 2 else (p[0], p[2])


def _torch_key(net, key):
    """minicnn key "a.b.weight" -> the twin's key (Residual bodies and SamePad add a level)."""
    parts, mod, out = key.split("."), net, []
    for p in parts[:-1]:
        out.append(p)
        mod = getattr(mod, p)
        if hasattr(mod, "body"):
            out.append("body")
            mod = mod.body
        if hasattr(mod, "conv") and not hasattr(mod, "weight"):
            out.append("conv")
            mod = mod.conv
    return ".".join(out + parts[-1:])


def twin_layer(net, name):
    """The twin's module whose output is minicnn layer ``name``'s output."""
    mod = net
    for p in name.split("."):
        mod = getattr(mod, p)
        if hasattr(mod, "body") and p != name.split(".")[-1]:
            mod = mod.body
    return mod


# --------------------------------------------------------------------------- peers
def captum():
    """The ``captum.attr`` module, or None."""
    try:
        import captum.attr as ca
    except Exception:
        return None
    return ca


def pytorch_grad_cam():
    """The ``pytorch_grad_cam`` package, or None.

    NOTE: it imports torchvision for image helpers these benchmarks never call. Where torchvision
    is missing (the only torchvision wheels for this torch need CUDA libraries), a stub with the
    three names it imports is put in ``sys.modules`` -- for this process only.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules.setdefault(name, types.ModuleType(name))
        tr = sys.modules["torchvision.transforms"]
        for attr in ("Compose", "Normalize", "ToTensor"):
            setattr(tr, attr, object)
        sys.modules["torchvision.transforms.functional"].resize = None
        sys.modules["torchvision"].transforms = tr
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: F401
    except Exception:
        return None
    return pgc


def peak_rss_mib():
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
