"""Peak memory (RSS) per workload, minicnn against PyTorch CPU, each in a fresh process.

    python benchmarks/bench_memory.py [--batch 1] [--workloads ...]

Every workload runs in its own subprocess (``--child NAME``) so peaks never mix; the child
builds the VGG16 topology with random weights (our side never imports torch; torch's side
imports the small helper modules only, a few MiB), runs the workload twice and prints its peak RSS (VmHWM, MiB). "model alone" is
the same process after building the model: the difference is what the workload adds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import peak_rss_mib, table

WORKLOADS = {
    # name: (side, description)
    "ours model alone": "minicnn VGG16 built, nothing run",
    "ours forward": "model.forward",
    "ours grad_cam": "gradcam.grad_cam at features.29 (public API, caches every layer)",
    "ours grad_cam stop_at": "the same engine with forward(stop_at=layer)",
    "ours guided_backprop": "gradcam.guided_backprop",
    "torch model alone": "torch VGG16 built, nothing run",
    "torch forward": "no_grad forward",
    "torch head-only grad_cam": "trunk under no_grad, autograd from features.29 up",
    "captum LayerGradCam": "captum.attr.LayerGradCam at features.29",
    "pytorch-grad-cam GradCAM": "pytorch_grad_cam.GradCAM at features.29",
    "captum GuidedBackprop": "captum.attr.GuidedBackprop",
}
PAIRS = [("ours model alone", "torch model alone"), ("ours forward", "torch forward"),
         ("ours grad_cam", "torch head-only grad_cam"), ("ours grad_cam stop_at", "torch head-only grad_cam"),
         ("ours grad_cam stop_at", "captum LayerGradCam"), ("ours grad_cam", "pytorch-grad-cam GradCAM"),
         ("ours guided_backprop", "captum GuidedBackprop")]


def child(name, batch):
    """Run one workload in this (fresh) process and return its peak RSS in MiB."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    target = list(range(batch))
    if name.startswith("ours"):
        import gradcam
        from minicnn import zoo

        model = zoo.vgg16().eval()
        if name == "ours forward":
            run = lambda: model.forward(x)  # noqa: E731
        elif name == "ours grad_cam":
            run = lambda: gradcam.grad_cam(model, x, target, "features.29")  # noqa: E731
        elif name == "ours grad_cam stop_at":
            from bench_explain import grad_cam_grad_from

            run = lambda: grad_cam_grad_from(model, x, "features.29", np.array(target))  # noqa: E731
        elif name == "ours guided_backprop":
            run = lambda: gradcam.guided_backprop(model, x, target)  # noqa: E731
        else:
            run = lambda: None  # noqa: E731
    else:
        import torch
        from torch import nn

        feats, c_in = [], 3
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if v == "M":
                feats.append(nn.MaxPool2d(2))
            else:
                feats += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
        net = nn.Sequential()
        net.add_module("features", nn.Sequential(*feats))
        net.add_module("avgpool", nn.AdaptiveAvgPool2d(7))
        net.add_module("flatten", nn.Flatten())
        net.add_module("classifier", nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                                                   nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
                                                   nn.Linear(4096, 1000)))
        net.eval()
        xt, tt = torch.from_numpy(x), torch.tensor(target)
        layer = net.features[29]
        if name == "torch forward":
            def run():
                with torch.no_grad():
                    net(xt)
        elif name == "torch head-only grad_cam":
            from bench_explain import torch_grad_cam

            run = lambda: torch_grad_cam(net, layer, xt, target)  # noqa: E731
        elif name == "captum LayerGradCam":
            import captum.attr as ca

            run = lambda: ca.LayerGradCam(net, layer).attribute(xt, target=tt)  # noqa: E731
        elif name == "captum GuidedBackprop":
            import captum.attr as ca

            run = lambda: ca.GuidedBackprop(net).attribute(xt.clone().requires_grad_(), target=tt)  # noqa: E731
        elif name == "pytorch-grad-cam GradCAM":
            from common import pytorch_grad_cam

            pgc = pytorch_grad_cam()
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            def run():
                with pgc.GradCAM(model=net, target_layers=[layer]) as cam:
                    cam(input_tensor=xt, targets=[ClassifierOutputTarget(c) for c in target])
        else:
            run = lambda: None  # noqa: E731
    run()
    run()
    return peak_rss_mib()


def measure(name, batch):
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(batch)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"], None


HEADER = ["workload (VGG16, 224x224)", "batch", "minicnn peak MiB", "peer", "peer peak MiB", "ours/peer"]


def memory_rows(batch, names=None):
    names = names or list(WORKLOADS)
    peaks = {}
    for name in names:
        peaks[name], err = measure(name, batch)
        print(f"  {name}: {peaks[name] if peaks[name] else err} MiB", flush=True)
    rows = []
    for ours, peer in PAIRS:
        if peaks.get(ours) and peaks.get(peer):
            rows.append([ours[5:], batch, f"{peaks[ours]:.0f}", peer, f"{peaks[peer]:.0f}",
                         f"{peaks[ours] / peaks[peer]:.2f}"])
    return rows, peaks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--child", default=None)
    parser.add_argument("--workloads", nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({"peak_mib": child(args.child, args.batch)}))
        return 0
    rows, _ = memory_rows(args.batch, args.workloads)
    print(table(HEADER, rows))
    return rows


if __name__ == "__main__":
    main()
