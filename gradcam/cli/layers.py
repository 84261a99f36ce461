"""``gradcam layers``: every layer's name, type and output shape (one forward on zeros), with
the default Grad-CAM layer and CAM's layer marked.

    gradcam layers --model NAME_OR_PATH [--size H W]
"""

from __future__ import annotations

import numpy as np

from . import common


def add_parser(subparsers):
    """Register ``gradcam layers``."""
    p = subparsers.add_parser("layers", help="list layers, types and output shapes",
                              description="Every layer's name, type and output shape.")
    common.add_model(p)
    common.add_size(p)
    p.set_defaults(func=run)
    return p


def run(args):
    """Print the table of layers."""
    from ..core import eval_mode, last_spatial_layer

    model = common.resolve_model(args.model, pretrained=False)
    H, W = common.input_size(model, args.size)
    x = np.zeros((1, common.input_channels(model), H, W), dtype=model.dtype)
    with eval_mode(model):
        model.forward(x)
    shapes, kinds = model.shapes, dict(model.named_layers())
    default = last_spatial_layer(shapes, model)
    cam_layer = common.cam_layer(model)
    width = max(len(n) for n in shapes)
    print(f"model {args.model}, input {tuple(x.shape)}")
    print(f"{'layer':<{width}}  {'type':<18} output shape")
    for name, kind in kinds.items():
        marks = [m for m, hit in (("default Grad-CAM layer", name == default),
                                  ("CAM layer", name == cam_layer)) if hit]
        mark = f"   <- {', '.join(marks)}" if marks else ""
        shape = str(shapes.get(name, "-"))
        print(f"{name:<{width}}  {type(kind).__name__:<18} {shape}{mark}")
    return 0
