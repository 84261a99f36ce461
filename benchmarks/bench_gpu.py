"""GPU: minicnn on CuPy (``model.to("cupy")``) against PyTorch CUDA fp32, same run, same weights.

    python benchmarks/bench_gpu.py [--batches 1 32] [--repeats 10]

Workloads on VGG16 at 224x224: forward, and Grad-CAM at features.29 (relu5_3). Torch runs in
float32 with TF32 OFF (``allow_tf32 = False`` for matmul and cuDNN: TF32 would round inputs to
10 mantissa bits, a different computation) and cuDNN autotuning on (its best kernels).
Every timed call ends with a device synchronisation on its own side (CuPy's current stream /
``torch.cuda.synchronize``), so the clock measures finished work, not queued launches.
Torch Grad-CAM is the common "full backward" one (hooks on the layer, ``score.backward()``,
which also computes every parameter gradient) and, for reference, the head-only one.

Fails with one clear line when CuPy (or a CUDA device) is missing. Targets (ISSUE): forward
b=32 <= 1.3x torch; Grad-CAM b=32 <= 1.0x torch's full-backward Grad-CAM.
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


def race_gpu(fns, repeats):
    """name -> (fn, sync); alternates the contenders on every repeat, as ``common.race``."""
    times = {k: [] for k in fns}
    for k, (fn, sync) in fns.items():
        _timed(fn, sync, 1, warmup=2)
    for _ in range(repeats):
        for k, (fn, sync) in fns.items():
            times[k] += _timed(fn, sync, 1, warmup=0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    from minicnn.backend import require_cupy

    try:
        cp = require_cupy()
    except RuntimeError as e:
        print(f"bench_gpu: {e}", file=sys.stderr)
        return 2
    import gradcam
    from minicnn import zoo

    from bench_explain import grad_cam_grad_from

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and not torch.cuda.is_available():
        print("bench_gpu: PyTorch has no CUDA device here; timing minicnn alone")
        torch = None

    model = zoo.vgg16().eval()
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
        x = np.random.default_rng(0).standard_normal((N, 3, 224, 224)).astype(np.float32)
        target = np.arange(N) % 1000
        xg = cp.asarray(x)
        fns = {"ours forward": (lambda: model.forward(xg), cp_sync),
               "ours grad_cam": (lambda: gradcam.grad_cam(model, xg, target, layer), cp_sync),
               "ours stop_at": (lambda: grad_cam_grad_from(model, xg, layer, target), cp_sync)}
        if torch is not None:
            from bench_explain import torch_grad_cam

            from common import twin_layer

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
                    cam = torch.nn.functional.interpolate(cam, (224, 224), mode="bilinear")
                    return cam / cam.amax((2, 3), keepdim=True).clamp_min(1e-12)

            fns.update({"torch forward": (t_forward, tsync), "torch full-backward grad_cam": (t_full, tsync),
                        "torch head-only grad_cam": (lambda: torch_grad_cam(net, mod, xt, tt.cpu().numpy()), tsync)})
            diff = float(np.abs(cp.asnumpy(model.forward(xg)) - t_forward().cpu().numpy()).max())
            print(f"batch {N}: max |logit diff| ours vs torch {diff:.1e}")
        t = race_gpu(fns, args.repeats)
        for ours, peer in [("ours forward", "torch forward"), ("ours grad_cam", "torch full-backward grad_cam"),
                           ("ours stop_at", "torch full-backward grad_cam"),
                           ("ours stop_at", "torch head-only grad_cam")]:
            if peer in t:
                rows.append([ours[5:], N, ms(t[ours]), peer, ms(t[peer]), fmt_ratio(t[ours], t[peer])])
            elif peer == "torch forward":
                rows.append([ours[5:], N, ms(t[ours]), "-", "-", "-"])
        print(table(HEADER, rows[-4:]), flush=True)
    print(table(HEADER, rows))
    return rows


HEADER = ["GPU workload (VGG16, 224)", "batch", "minicnn ms", "peer", "peer ms", "ratio ours/peer"]


if __name__ == "__main__":
    rc = main()
    raise SystemExit(rc if isinstance(rc, int) else 0)
