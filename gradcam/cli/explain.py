"""``gradcam explain``: explanations for image files, one PNG and one .npz per image, method
and class.

    gradcam explain IMAGE... --model NAME_OR_PATH [--target CLASS ...] [--layer NAME]
                    [--method NAME|all] [--out DIR] [--alpha 0.5] [--cmap jet] [--size H W]

Beside each PNG, the .npz holds the raw maps (for a CAM-family method: coarse, heatmap, alpha,
linear_map, layer; for a pixel-space method: map), the logits, the target, the method, the
model input x and the overlay's blend_alpha.
"""

from __future__ import annotations

import os
import re

import numpy as np

from . import common


def add_parser(subparsers):
    """Register ``gradcam explain``."""
    p = subparsers.add_parser(
        "explain", help="explain image files",
        description="Explain image files: one PNG and one .npz per image, method and class.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    common.add_model(p)
    p.add_argument("--target", action="append", metavar="CLASS",
                   help="class name or index; repeatable or comma list (default: top-1)")
    p.add_argument("--layer", help="layer for Grad-CAM (default: last spatial layer)")
    p.add_argument("--method", default="gradcam", choices=[*common.methods(), "all"])
    p.add_argument("--out", default="gradcam-out", help="output folder (default: gradcam-out)")
    p.add_argument("--alpha", type=common.unit_float, default=0.5,
                   help="overlay opacity in [0, 1]")
    p.add_argument("--cmap", type=common.colormap, default="jet", help="matplotlib colormap")
    common.add_size(p)
    p.set_defaults(func=run)
    return p


def parse_targets(values):
    """--target values (repeatable, comma lists) -> list of ints / names, or None (top-1)."""
    if not values:
        return None
    out = []
    for v in values:
        for tok in v.split(","):
            tok = tok.strip()
            if not tok:
                raise common.CLIError(f"empty class in --target {v!r}")
            t = int(tok) if re.fullmatch(r"[+-]?\d+", tok) else tok
            if t not in out:
                out.append(t)
    return out


def explain_one(method, model, x, c, layer):
    """``method`` (a registry entry) for class ``c``: ``gradcam.explain``'s GradCAMResult.
    ``--layer`` is Grad-CAM's layer; the methods that live at the input ignore it."""
    from ..core import explain

    at = None if method.layer_rule in ("input", "network") else layer
    return explain(model, x, [c], method=method.name, layer=at)


def method_arrays(method, model, x, c, layer):
    """One method for one class: (arrays for the .npz, the map to draw)."""
    r = explain_one(method, model, x, c, layer)
    if method.kind == "pixel":
        return {"map": r.pixels[0]}, r.pixels[0]
    alpha = {} if r.weights is None else {"alpha": r.weights[0]}  # "network" (FullGrad): none
    return ({"coarse": r.coarse[0], "heatmap": r.heatmap[0], **alpha,
             "linear_map": r.linear_map[0], "layer": np.array(r.layer)}, r.heatmap[0])


def chosen_methods(model, method, layer):
    """The methods ``--method`` asks for; "all" has CAM only where it is defined (a GAP head,
    at the layer feeding the GAP)."""
    table = common.methods()
    if method != "all":
        return [table[method]]
    cam_at = common.cam_layer(model)
    with_cam = cam_at is not None and layer in (None, cam_at)
    return [m for m in table.values() if m.name != "cam" or with_cam]


def run(args):
    """Explain every image for every class and method; compute everything, then write."""
    from PIL import Image

    from minicnn.backend import to_numpy

    from .. import viz
    from ..core import check_layer
    from ..images import model_input, shrink
    from ..targets import resolve_target

    model = common.resolve_model(args.model)
    H, W = common.input_size(model, args.size)
    if args.layer is not None:
        check_layer(model, args.layer)
    methods = chosen_methods(model, args.method, args.layer)
    tokens = parse_targets(args.target)
    mode = common.image_mode(model)
    loaded = [(p, *model_input(model, p, (H, W), mode)) for p in args.images]  # fail early
    out, jobs, stems, report = os.path.abspath(args.out), [], {}, []
    for path, x, rgb in loaded:
        stem = common.safe(os.path.splitext(os.path.basename(path))[0])
        stems[stem] = stems.get(stem, 0) + 1
        stem = stem if stems[stem] == 1 else f"{stem}-{stems[stem]}"  # same name, other folder
        logits = common.logits(model, x)
        if tokens is None:
            classes = [int(np.argmax(logits[0]))]
        else:
            classes = [int(resolve_target(t, logits, model.class_names)[0]) for t in tokens]
        report.append(f"{path} (model input {H}x{W}):")
        report += common.top(viz.softmax(logits)[0], model)
        show = shrink(rgb, common.DISPLAY_MAX_SIDE)
        for c in classes:
            label = common.safe(common.class_label(model, c))
            for m in methods:
                arrays, drawn = method_arrays(m, model, x, c, args.layer)
                if m.kind == "pixel":
                    g = Image.fromarray(viz.to_uint8_gradient(to_numpy(drawn)))
                    img = np.asarray(g.resize(show.shape[1::-1], Image.Resampling.BILINEAR))
                else:
                    img = viz.overlay(show, to_numpy(drawn), args.alpha, args.cmap)
                arrays = {k: to_numpy(v) for k, v in arrays.items()}
                arrays.update(logits=logits[0], target=np.array(c), method=np.array(m.name),
                              x=np.asarray(x[0]), blend_alpha=np.array(args.alpha))
                base = os.path.join(out, f"{stem}_{m.name}_{label}")
                jobs.append((base + ".png", lambda p, a=img: viz.save_png(a, p)))
                jobs.append((base + ".npz", lambda p, a=arrays: common.save_npz(p, a)))
    print("\n".join(report))
    common.print_written(common.write_all(jobs))
    return 0
