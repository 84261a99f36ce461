"""Explanations: Grad-CAM, guided backprop and Guided Grad-CAM, minicnn against PyTorch CPU,
Captum and pytorch-grad-cam (where installed), on the same network, weights and input, same run.

    python benchmarks/bench_explain.py [--models vgg16 efficientnet_lite0 shapes_cnn]
                                       [--batches 1 8] [--methods gradcam guided guided_gradcam]
                                       [--repeats 5]

Grad-CAM is taken at the paper's layer (VGG16: features.29 = relu5_3; the last spatial layer
otherwise) for one fixed class per image, and every contender returns the upsampled map:
- minicnn: ``gradcam.grad_cam`` (public API) and ``capture+stop_at`` (the same engine with
  ``Sequential.forward(stop_at=layer)``: no cache below the layer);
- torch head-only: the trunk under no_grad, autograd only from the layer up (the best torch does);
- Captum LayerGradCam / GuidedBackprop / GuidedGradCam; pytorch-grad-cam GradCAM (which
  back-propagates into every parameter) / GuidedBackpropReLUModel.
Ratios are ours/theirs per repeat (median and range), against each peer.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np

from common import captum, fmt_ratio, ms, pytorch_grad_cam, race, table, twin_layer

import gradcam
from bench_forward import SIZES, models_with_twins
from gradcam.core import eval_mode, last_spatial_layer
from gradcam.resize import normalize, resize
from gradcam.targets import class_score

LAYER = {"vgg16": "features.29"}


def grad_cam_grad_from(model, x, layer, target):
    """Grad-CAM with the engine's one change: ``forward(..., stop_at=layer)``."""
    with eval_mode(model):
        logits = model.forward(x, keep=layer, stop_at=layer)
        A = model.activations[layer]
        dA = model.backward(class_score(target)(logits), stop_at=layer, need_dw=False)
    alpha = dA.mean(axis=(2, 3))
    coarse = np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)
    return normalize(resize(coarse, x.shape[-2:]))


def torch_grad_cam(net, layer_mod, xt, target):
    """Head-only Grad-CAM in torch: no graph below the layer, autograd.grad from the layer up."""
    import torch

    store = {}

    def hook(mod, inp, out):
        torch.set_grad_enabled(True)  # NOTE: the trunk ran under no_grad; record from here on
        A = out.detach().requires_grad_(True)
        store["A"] = A
        return A

    h = layer_mod.register_forward_hook(hook)
    try:
        with torch.no_grad():
            y = net(xt)
    finally:
        h.remove()
    A = store["A"]
    score = y[torch.arange(len(target), device=y.device), torch.as_tensor(target, device=y.device)].sum()
    (dA,) = torch.autograd.grad(score, A)
    with torch.no_grad():
        cam = torch.relu((dA.mean((2, 3), keepdim=True) * A).sum(1, keepdim=True))
        cam = torch.nn.functional.interpolate(cam, xt.shape[-2:], mode="bilinear", align_corners=False)
        return cam / cam.amax((2, 3), keepdim=True).clamp_min(1e-12)


def contenders(method, model, net, layer, x, target):
    """name -> callable, ours first, for one method.

    NOTE: every torch-side object is built inside its callable, and the layer module is looked
    up by name on each call: pytorch-grad-cam's guided backprop swaps the net's ReLU modules
    (for new ones) and GradCAM leaves hooks behind unless released, which would otherwise
    break or slow down the other contenders.
    """
    import torch

    xt = torch.from_numpy(x)
    tt = torch.as_tensor(target)
    ca, pgc = captum(), pytorch_grad_cam()
    mod = lambda: twin_layer(net, layer)  # noqa: E731
    fns = {}
    if pgc is not None:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(c)) for c in target]

        def pgc_cam():
            with pgc.GradCAM(model=net, target_layers=[mod()]) as cam:
                return cam(input_tensor=xt, targets=targets)

        # NOTE: GuidedBackpropReLUModel puts back ONE shared nn.ReLU at every ReLU position when
        # it is done, so a hook on one ReLU would fire at all of them: it gets its own copy.
        gb_net = copy.deepcopy(net)

        def pgc_guided():  # NOTE: its API explains one class, of image 0; so batch 1 only
            return pgc.GuidedBackpropReLUModel(model=gb_net, device=torch.device("cpu"))(
                xt.clone(), target_category=int(target[0]))

    if method == "gradcam":
        fns["minicnn grad_cam"] = lambda: gradcam.grad_cam(model, x, target, layer)
        fns["minicnn stop_at"] = lambda: grad_cam_grad_from(model, x, layer, target)
        fns["torch head-only"] = lambda: torch_grad_cam(net, mod(), xt, target)
        if ca is not None:
            def captum_gc():
                a = ca.LayerGradCam(net, mod()).attribute(xt, target=tt, relu_attributions=True)
                return ca.LayerAttribution.interpolate(a, tuple(xt.shape[-2:]), "bilinear")

            fns["Captum LayerGradCam"] = captum_gc
        if pgc is not None:
            fns["pytorch-grad-cam GradCAM"] = pgc_cam
    elif method == "guided":
        fns["minicnn guided_backprop"] = lambda: gradcam.guided_backprop(model, x, target)
        if ca is not None:
            fns["Captum GuidedBackprop"] = lambda: ca.GuidedBackprop(net).attribute(
                xt.clone().requires_grad_(), target=tt)
        if pgc is not None and len(target) == 1:
            fns["pytorch-grad-cam GuidedBackprop"] = pgc_guided
    elif method == "guided_gradcam":
        fns["minicnn guided_grad_cam"] = lambda: gradcam.guided_grad_cam(model, x, target, layer)
        if ca is not None:
            fns["Captum GuidedGradCam"] = lambda: ca.GuidedGradCam(net, mod()).attribute(
                xt.clone().requires_grad_(), target=tt)
        if pgc is not None and len(target) == 1:
            fns["pytorch-grad-cam GradCAM x GuidedBackprop"] = lambda: pgc_guided() * pgc_cam()[0][..., None]
    return fns


HEADER = ["workload", "batch", "minicnn ms", "peer", "peer ms", "ratio ours/peer"]


def explain_rows(models, batches, methods, repeats):
    rows = []
    for name, model, net, N, S in models_with_twins(models, batches):
        x = np.random.default_rng(0).standard_normal((N, 3, S, S)).astype(np.float32)
        layer = LAYER.get(name)
        if layer is None:
            model.forward(x[:1])
            layer = last_spatial_layer(model.shapes, model)
        target = np.arange(N) % 4  # a fixed class per image (4: the shapes nets' classes)
        for method in methods:
            fns = contenders(method, model, net, layer, x, target)
            t = race(fns, repeats)
            ours_names = [k for k in fns if k.startswith("minicnn")]
            for peer in (k for k in fns if not k.startswith("minicnn")):
                rows.append([f"{name} {method} @{layer}", N, " / ".join(ms(t[k]) for k in ours_names),
                             peer, ms(t[peer]), " / ".join(fmt_ratio(t[k], t[peer]) for k in ours_names)])
                print(table(HEADER, rows[-1:]).splitlines()[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=["gradcam", "guided", "guided_gradcam"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="captum")  # "Setting backward hooks on ReLU ..."
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: nothing to race (pip install torch)")
        return 1
    print("peers:", "Captum" if captum() else "(no Captum)",
          "pytorch-grad-cam" if pytorch_grad_cam() else "(no pytorch-grad-cam)")
    print("(Grad-CAM rows: minicnn = gradcam.grad_cam / the engine with stop_at, both ratios)")
    print(table(HEADER, []))
    return explain_rows(args.models, args.batches, args.methods, args.repeats)


if __name__ == "__main__":
    main()
