"""Score-CAM and Ablation-CAM: ours against pytorch-grad-cam and torchcam, same weights, same run.

    python benchmarks/bench_cam_race.py [--models vgg16 efficientnet_lite0] [--repeats 3]
                                        [--batch-size 16] [--methods scorecam ablationcam]
    python benchmarks/bench_cam_race.py --quick      # a smoke run on the shapes CNN at 64x64

Contenders (batch 1; one class; each returns its map), all on the same torch twin of the same
weights (VGG16: random weights; EfficientNet-Lite0: the shipped ImageNet weights) and the same
input (matplotlib's grace_hopper.jpg through EfficientNet-Lite0's preprocessing, 224x224):
- Score-CAM: ``gradcam.explain(method="scorecam")``; pytorch-grad-cam ``ScoreCAM``; torchcam
  ``ScoreCAM``. Every library runs ``--batch-size`` masked inputs per forward (pytorch-grad-cam's
  default is 16, torchcam's 32; at 224 on 2 cores torch was not faster with 32).
- Ablation-CAM: ``gradcam.explain(method="ablationcam")`` (runs only the layers above A);
  pytorch-grad-cam ``AblationCAM`` (runs the whole network for every batch of ablations).

Layers: VGG16 ``features.29`` (relu5_3, 512 channels at 14x14), EfficientNet-Lite0 ``_relu1``
(the head, 1280 channels at 7x7). The forwards each side runs are counted and printed: ours
skips channels whose mask is zero (constant A^k) and shares one forward among identical masks,
both exact (``gradcam.family.perturb``); the peers run one forward per channel.

Timing: ``common.race`` alternates the contenders on every repeat after a pause (the machine
has 2 cores shared with other work). The table gives the min (the least disturbed run) and the
median of each side, and the ratio of the mins; the per-repeat ratios' range shows the noise.
No warm-up call for the 224 models: one Score-CAM call is a minute or more.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import warnings

import numpy as np

from common import pytorch_grad_cam, race, table, torch_twin, twin_layer

import gradcam
from gradcam.images import model_input
from minicnn import zoo

LAYERS = {"vgg16": "features.29", "efficientnet_lite0": "_relu1", "shapes_cnn": "relu4"}
HEADER = ["method", "model @ layer", "channels (ours ran)", "contender", "min s", "median s",
          "ratio of mins ours/peer", "per-repeat ratios"]


def torchcam():
    """The ``torchcam.methods`` module, or None."""
    try:
        import torchcam.methods as tcm
    except Exception:
        return None
    return tcm


def build(name):
    """(model in eval mode, input x (1, 3, S, S) float32, target class)."""
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    if name == "shapes_cnn":
        model = zoo.shapes_cnn(pretrained=True).eval()
        x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
        return model, x, 1
    lite = zoo.efficientnet_lite0(pretrained=True).eval()
    x, _ = model_input(lite, photo)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if name == "efficientnet_lite0":
        return lite, x, int(lite.forward(x).argmax())  # "military uniform"
    if name == "vgg16":
        model = zoo.vgg16().eval()  # random weights, shared by both sides through the twin
        return model, x, int(model.forward(x).argmax())
    raise ValueError(f"unknown model {name!r}")


def contenders(method, model, net, layer, x, target, batch_size):
    """name -> callable, ours first."""
    import torch

    xt = torch.from_numpy(x)
    pgc, tcm = pytorch_grad_cam(), torchcam()
    fns = {}

    fns["minicnn " + method] = lambda: gradcam.explain(model, x, target, method, layer=layer,
                                                       batch_size=batch_size).heatmap
    if pgc is not None:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(target)]
        if method == "scorecam":
            def pgc_score():
                with pgc.ScoreCAM(model=net, target_layers=[twin_layer(net, layer)]) as cam:
                    cam.batch_size = batch_size  # read by ScoreCAM.get_cam_weights
                    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
                        return cam(input_tensor=xt, targets=targets)

            fns["pytorch-grad-cam ScoreCAM"] = pgc_score
        else:
            def pgc_ablation():
                with pgc.AblationCAM(model=net, target_layers=[twin_layer(net, layer)],
                                     batch_size=batch_size) as cam:
                    with contextlib.redirect_stderr(io.StringIO()):
                        return cam(input_tensor=xt, targets=targets)

            fns["pytorch-grad-cam AblationCAM"] = pgc_ablation
    if tcm is not None and method == "scorecam":
        def tc_score():
            with tcm.ScoreCAM(net, layer, batch_size=batch_size,
                              input_shape=tuple(x.shape[1:])) as ex:
                with torch.no_grad():
                    net(xt)
                return ex(class_idx=target)

        fns["torchcam ScoreCAM"] = tc_score
    return fns


def forwards_ours(model, x, method, layer):
    """(K, inputs our method runs besides explain's forward), from A: Score-CAM runs the black
    image and one input per distinct non-constant channel; Ablation-CAM one per non-zero one."""
    model.forward(x, keep=[layer])
    A = model.activations[layer][0].reshape(model.shapes[layer][1], -1)
    if method == "ablationcam":
        return A.shape[0], int((A != 0).any(axis=1).sum())
    live = A[A.max(axis=1) != A.min(axis=1)]
    return A.shape[0], 1 + len(np.unique(live, axis=0))


def logged_race(fns, repeats, warmup, label):
    """``common.race`` that prints every time as it is measured: one Score-CAM call at 224
    takes minutes on a 2-core machine."""
    def log(rep, name, seconds):
        print(f"  {label} repeat {rep + 1}: {name} {seconds:.2f} s", flush=True)

    return race(fns, repeats, warmup, log=log)


def race_rows(models, methods, repeats, batch_size, warmup):
    out = []
    for name in models:
        model, x, target = build(name)
        net = torch_twin(model)
        layer = LAYERS[name]
        for method in methods:
            K, ran = forwards_ours(model, x, method, layer)
            fns = contenders(method, model, net, layer, x, target, batch_size)
            t = logged_race(fns, repeats, warmup, f"{method} {name}")
            ours = next(iter(fns))
            for peer in list(fns)[1:]:
                r = [a / b for a, b in zip(t[ours], t[peer])]
                row = [method, f"{name} @{layer}", f"{K} ({ran})", peer,
                       f"{min(t[ours]):.2f} / {min(t[peer]):.2f}",
                       f"{statistics.median(t[ours]):.2f} / {statistics.median(t[peer]):.2f}",
                       f"{min(t[ours]) / min(t[peer]):.3g}",
                       f"{min(r):.3g}-{max(r):.3g}"]
                out.append(row)
                print(table(HEADER, [row]).splitlines()[-1], flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "efficientnet_lite0"])
    parser.add_argument("--methods", nargs="+", default=["scorecam", "ablationcam"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true",
                        help="shapes CNN at 64x64, one repeat (a smoke run)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to race (pip install torch)")
        return []
    if args.quick:
        args.models, args.repeats = ["shapes_cnn"], 1
    print(f"peers: {'pytorch-grad-cam' if pytorch_grad_cam() else '(no pytorch-grad-cam)'}, "
          f"{'torchcam' if torchcam() else '(no torchcam)'}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); batch size {args.batch_size}")
    print("(min s and median s: ours / the peer's; 'ours ran': inputs our method ran, "
          "the peers run one per channel)")
    print(table(HEADER, []))
    warm = 1 if args.quick else 0
    return race_rows(args.models, args.methods, args.repeats, args.batch_size, warm)


if __name__ == "__main__":
    main()
