"""A small float64 network with a bias in every affine layer, in minicnn and in the oracle.

conv1 (bias) -> bn1 (eval, random statistics) -> relu1 -> pool1 (max 2x2)
-> res [conv (bias) -> relu] (residual) -> conv2 (bias) -> relu2 -> pool2 (avg 2x2)
-> flatten -> fc (bias)

Every parameter and batch-norm statistic is drawn from ``seed``, so batch norm's shift
beta - gamma mu / sqrt(var + eps) is a real bias. ``linear=True`` drops the ReLUs and the
max-pool (an average pool instead): the network is then affine in x (Integrated Gradients is
exact on it). Used by tests/test_fullgrad.py and tests/test_paths.py; the oracle
(tests/oracle.py) runs the same parameters through its own forward, for autograd.
"""

import numpy as np

from minicnn import Residual, Sequential
from minicnn import layers as L

F64 = dict(dtype="float64")
C, K, HW, CLASSES = 2, 3, 8, 4


def _layers(linear):
    act = [] if linear else [("relu", L.ReLU())]
    pool = L.AvgPool2d(2) if linear else L.MaxPool2d(2)
    return ([("conv1", L.Conv2d(C, K, 3, padding=1, **F64)), ("bn1", L.BatchNorm2d(K, **F64))]
            + ([] if linear else [("relu1", L.ReLU())]) + [("pool1", pool)]
            + [("res", Residual([("conv", L.Conv2d(K, K, 3, padding=1, **F64))] + act))]
            + [("conv2", L.Conv2d(K, K, 3, padding=1, **F64))]
            + ([] if linear else [("relu2", L.ReLU())])
            + [("pool2", L.AvgPool2d(2)), ("flatten", L.Flatten()),
               ("fc", L.Linear(K * (HW // 4) ** 2, CLASSES, **F64))])


def _spec(linear):
    act = [] if linear else [("relu", "relu", {})]
    return ([("conv1", "conv", dict(pads=1)), ("bn1", "batchnorm", dict(train=False))]
            + ([] if linear else [("relu1", "relu", {})])
            + [("pool1", "avgpool" if linear else "maxpool", dict(k=2))]
            + [("res", "residual", [("conv", "conv", dict(pads=1))] + act)]
            + [("conv2", "conv", dict(pads=1))] + ([] if linear else [("relu2", "relu", {})])
            + [("pool2", "avgpool", dict(k=2)), ("flatten", "flatten", {}), ("fc", "linear", {})])


def network(seed=0, linear=False):
    """(model, spec, params): the minicnn model in eval mode, the oracle's spec, the arrays."""
    model = Sequential(_layers(linear)).eval()
    rng = np.random.default_rng(seed)
    params = {}
    for key, arr in model.state_dict().items():
        if key.endswith("running_var"):
            params[key] = rng.uniform(0.5, 2.0, arr.shape)
        else:
            params[key] = rng.normal(0, 0.7, arr.shape)
    model.load_state_dict(params)
    return model, _spec(linear), params


def inputs(n=2, seed=1):
    """(n, C, HW, HW) float64 inputs, N(0, 1)."""
    return np.random.default_rng(seed).normal(size=(n, C, HW, HW))
