"""GPU: minicnn on CuPy (``model.to("cupy")``) against PyTorch CUDA fp32, same run, same weights.

    python benchmarks/bench_gpu.py [--batches 1 32] [--repeats 10] [--cam-batches 1 8]
    python benchmarks/bench_gpu.py --fake     # smoke run of the code path on the tests' fake device

Workloads on VGG16 at 224x224: forward, and Grad-CAM at features.29 (relu5_3); then Score-CAM
and Ablation-CAM at the same layer (``--cam-batches`` images per call, ``--cam-batch-size``
masked or ablated copies per forward): batches of perturbed forwards are where a GPU pays.
Torch runs in float32 with TF32 OFF (``allow_tf32 = False`` for matmul and cuDNN: TF32 would
round inputs to 10 mantissa bits, a different computation) and cuDNN autotuning on (its best
kernels). Every timed call ends with a device synchronisation on its own side (CuPy's current
stream / ``torch.cuda.synchronize``), so the clock measures finished work, not queued launches.
Torch Grad-CAM is the common "full backward" one (hooks on the layer, ``score.backward()``,
which also computes every parameter gradient) and, for reference, the head-only one.
Without torch (or without a CUDA device for it) the minicnn rows still print, their peer
columns "-", with a note; the Score-CAM / Ablation-CAM rows have no GPU peer here (their CPU
race against pytorch-grad-cam and torchcam is ``bench_cam_race.py``).

Without CuPy (or a CUDA device) it prints one "skipped" line and exits 0. ``--fake`` runs the
same code on tests/fakecupy.py (NumPy underneath; a 1/16-width VGG16 at 32x32, one repeat):
it proves the code path, and its times mean nothing. Targets (ISSUE): forward b=32 <= 1.3x
torch; Grad-CAM b=32 <= 1.0x torch's full-backward Grad-CAM.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import fmt_ratio, ms, table, torch_twin


def _timed(fn, sync, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def race_gpu(fns, repeats, warmup=3):
    """name -> (fn, sync); alternates the contenders on every repeat, as ``common.race``;
    ``warmup`` untimed calls of each first (kernel compilation, cuDNN autotuning, memory pool)."""
    times = {k: [] for k in fns}
    for k, (fn, sync) in fns.items():
        for _ in range(warmup):
            fn()
        sync()
    for _ in range(repeats):
        for k, (fn, sync) in fns.items():
            times[k] += _timed(fn, sync, 1, warmup=0)
    return times


def _install_fake():
    """Put the tests' strict fake device in CuPy's place (``--fake``): minicnn.backend's seam."""
    import os

    import minicnn.backend as backend

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tests"))
    from fakecupy import FAKE

    backend._cupy, backend.HAS_CUPY = FAKE, True


def _torch_or_note(fake):
    """(torch or None, why-not note or None)."""
    if fake:
        return None, "torch rows skipped: --fake runs on the NumPy fake device"
    try:
        import torch
    except ImportError:
        return None, "torch rows skipped: PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, "torch rows skipped: PyTorch has no CUDA device here"
    return torch, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cam-batches", nargs="+", type=int, default=[1, 8],
                        help="images per Score-CAM / Ablation-CAM call")
    parser.add_argument("--cam-batch-size", type=int, default=64,
                        help="masked / ablated copies per forward (the methods' batch_size)")
    parser.add_argument("--fake", action="store_true",
                        help="smoke run on the tests' fake device (tiny VGG16, one repeat)")
    args = parser.parse_args(argv)
    if args.fake:
        _install_fake()
        args.batches, args.cam_batches, args.repeats = [1, 2], [1], 1
    from minicnn.backend import require_cupy

    try:
        cp = require_cupy()
    except RuntimeError as e:
        print(f"bench_gpu: skipped: {e}")
        return 0
    import gradcam
    from minicnn import zoo

    from bench_explain import grad_cam_grad_from

    torch, note = _torch_or_note(args.fake)
    if note:
        print(f"bench_gpu: {note}")
    model = zoo.vgg16(width=1 / 16, num_classes=10) if args.fake else zoo.vgg16()
    side, classes = (32, 10) if args.fake else (224, 1000)
    model.eval()
    net = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        net = torch_twin(model).cuda()
    model.to("cupy")
    layer = "features.29"
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    print(f"device: {dev.decode() if isinstance(dev, bytes) else dev}; CuPy {cp.__version__}"
          + (f"; torch {torch.__version__} (TF32 off)" if torch else ""))
    cp_sync = cp.cuda.get_current_stream().synchronize
    rows = []
    for N in args.batches:
        x = np.random.default_rng(0).standard_normal((N, 3, side, side)).astype(np.float32)
        target = np.arange(N) % classes
        xg = cp.asarray(x)
        fns = {"ours forward": (lambda: model.forward(xg), cp_sync),
               "ours grad_cam": (lambda: gradcam.grad_cam(model, xg, target, layer), cp_sync),
               "ours stop_at": (lambda: grad_cam_grad_from(model, xg, layer, target), cp_sync)}
        if torch is not None:
            fns.update(_torch_fns(torch, net, layer, x, target, side))
            diff = float(np.abs(cp.asnumpy(model.forward(xg))
                                - fns["torch forward"][0]().cpu().numpy()).max())
            print(f"batch {N}: max |logit diff| ours vs torch {diff:.1e}")
        t = race_gpu(fns, args.repeats, warmup=0 if args.fake else 3)
        new = []
        for ours, peer in [("ours forward", "torch forward"),
                           ("ours grad_cam", "torch full-backward grad_cam"),
                           ("ours stop_at", "torch full-backward grad_cam"),
                           ("ours stop_at", "torch head-only grad_cam")]:
            if peer in t:
                new.append([ours[5:], N, ms(t[ours]), peer, ms(t[peer]), fmt_ratio(t[ours], t[peer])])
            elif not any(r[0] == ours[5:] for r in new):  # no torch: ours alone, once
                new.append([ours[5:], N, ms(t[ours]), "-", "-", "-"])
        rows += new
        print(table(HEADER, new), flush=True)
    for N in args.cam_batches:
        x = np.random.default_rng(1).standard_normal((N, 3, side, side)).astype(np.float32)
        xg, target = cp.asarray(x), np.arange(N) % classes
        fns = {m: (lambda m=m: gradcam.explain(model, xg, target, m, layer,
                                               batch_size=args.cam_batch_size), cp_sync)
               for m in ("scorecam", "ablationcam")}
        t = race_gpu(fns, args.repeats, warmup=0 if args.fake else 3)
        new = [[f"{m} (batch_size {args.cam_batch_size})", N, ms(t[m]), "-", "-", "-"] for m in t]
        rows += new
        print(table(HEADER, new), flush=True)
    print(table(HEADER, rows))
    return rows


def _torch_fns(torch, net, layer, x, target, side):
    """Torch's contenders on CUDA: forward, full-backward and head-only Grad-CAM."""
    from bench_explain import torch_grad_cam

    from common import twin_layer

    N = len(x)
    xt = torch.from_numpy(x).cuda()
    tt = torch.as_tensor(target).cuda()
    mod = twin_layer(net, layer)
    tsync = torch.cuda.synchronize

    def t_forward():
        with torch.no_grad():
            return net(xt)

    def t_full():
        store = {}
        h = mod.register_forward_hook(lambda m, i, o: store.__setitem__("A", o) or o.retain_grad())
        try:
            net.zero_grad(set_to_none=True)
            y = net(xt)
            y[torch.arange(N, device=xt.device), tt].sum().backward()
        finally:
            h.remove()
        A = store["A"]
        with torch.no_grad():
            cam = torch.relu((A.grad.mean((2, 3), keepdim=True) * A).sum(1, keepdim=True))
            cam = torch.nn.functional.interpolate(cam, (side, side), mode="bilinear")
            return cam / cam.amax((2, 3), keepdim=True).clamp_min(1e-12)

    return {"torch forward": (t_forward, tsync), "torch full-backward grad_cam": (t_full, tsync),
            "torch head-only grad_cam": (lambda: torch_grad_cam(net, mod, xt, tt.cpu().numpy()),
                                         tsync)}


HEADER = ["GPU workload (VGG16)", "batch", "minicnn ms", "peer", "peer ms", "ratio ours/peer"]


if __name__ == "__main__":
    rc = main()
    raise SystemExit(rc if isinstance(rc, int) else 0)
