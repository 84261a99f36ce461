"""``gradcam explain``: explanations for image files, one PNG and one .npz per image, method
and class.

    gradcam explain IMAGE... --model NAME_OR_PATH [--target CLASS ...] [--layer NAME]
                    [--method NAME|all] [--option KEY=VALUE ...] [--variant NAME] [--details]
                    [--out DIR] [--alpha 0.5] [--cmap jet] [--size H W]
    gradcam explain IMAGE --model NAME --method scorecam --option batch_size=64
    gradcam explain IMAGE --model NAME --method all        # every registered method

Files: ``STEM_METHOD_CLASS.png`` and ``.npz`` per image, method and class, and with
``--method all`` also ``STEM_all_CLASS.png``, every method in one picture. The .npz holds the
raw maps (for a CAM-family method: coarse, heatmap, linear_map, layer and, where it has
weights, alpha; for a pixel-space method: map; with ``--details`` the method's other
intermediates as detail_NAME), the logits, the target, the method, the model input x and the
overlay's blend_alpha. One line per method is printed as it finishes (with its time). With
``--method all`` a method that cannot explain this model (a ValueError, e.g. Grad-CAM++'s
exp(y^c) overflowing float32) is reported on its line, as "n/a" in the overview, and skipped.
``--option KEY=VALUE`` (repeatable) passes a method's options (``Method.options``).
"""

from __future__ import annotations

import os
import re
import time

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
    p.add_argument("--layer", help="layer of the CAM methods (default: each method's own, for "
                   "Grad-CAM the last spatial layer); the pixel-space and whole-network "
                   "methods ignore it")
    p.add_argument("--method", default="gradcam", choices=[*common.methods(), "all"],
                   metavar="NAME", help=f"a registered method, or all (default: gradcam): "
                   f"{', '.join(common.methods())}")
    common.add_options(p)
    p.add_argument("--variant", help="a peer library's formula instead of the paper's "
                   "(gradcam.registry.variants(METHOD)); one --method only")
    p.add_argument("--details", action="store_true",
                   help="also save each method's other intermediates (masks, noise, ...) in "
                   "the .npz as detail_NAME (can be large)")
    p.add_argument("--out", default="gradcam-out", help="output folder (default: gradcam-out)")
    p.add_argument("--alpha", type=common.unit_float, default=0.5,
                   help="overlay opacity in [0, 1] (default 0.5)")
    p.add_argument("--cmap", type=common.colormap, default="jet",
                   help="matplotlib colormap (default jet)")
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


def explain_one(method, model, x, c, layer, options=None, variant=None):
    """``method`` (a registry entry) for class ``c``: ``gradcam.explain``'s GradCAMResult.
    ``--layer`` is the CAM methods' layer; the pixel-space and whole-network methods, defined
    at the input, ignore it (``catalog.layer_for``)."""
    from ..catalog import layer_for
    from ..core import explain

    return explain(model, x, [c], method=method.name, layer=layer_for(method, layer),
                   variant=variant, **(options or {}))


def method_arrays(method, r, details=False):
    """One result as (arrays for the .npz, the map to draw): "map" for a pixel-space method;
    else coarse, heatmap, linear_map, layer and (where the method has weights) alpha; with
    ``details``, the method's other intermediates as detail_NAME (Score-CAM's masks, ...)."""
    if method.kind == "pixel":
        arrays, drawn = {"map": r.pixels[0]}, r.pixels[0]
    else:
        arrays = {"coarse": r.coarse[0], "heatmap": r.heatmap[0], "linear_map": r.linear_map[0],
                  "layer": np.array(r.layer)}
        if r.weights is not None:
            arrays["alpha"] = r.weights[0]
        drawn = r.heatmap[0]
    if details:
        arrays.update({f"detail_{k}": v for k, v in r.details.items()})
    return arrays, drawn


def chosen_methods(model, method, layer):
    """The methods ``--method`` asks for; "all" has CAM only where it is defined (a GAP head,
    at the layer feeding the GAP)."""
    return common.chosen("all" if method == "all" else [method], model, layer)


def picture(method, drawn, show, alpha, cmap):
    """The PNG of one map over the shown image: a pixel-space map as a grey gradient image,
    every other kind as a coloured overlay."""
    from PIL import Image

    from minicnn.backend import to_numpy

    from .. import viz

    if method.kind == "pixel":
        g = Image.fromarray(viz.to_uint8_gradient(to_numpy(drawn)))
        return np.asarray(g.resize(show.shape[1::-1], Image.Resampling.BILINEAR))
    return viz.overlay(show, to_numpy(drawn), alpha, cmap)


def run(args):
    """Explain every image for every class and method, a line per method as it finishes;
    compute everything, then write."""
    from minicnn.backend import to_numpy

    from .. import viz
    from ..core import check_layer
    from ..gallery import Panel, gallery_figure
    from ..images import model_input, shrink
    from ..targets import resolve_target

    model = common.resolve_model(args.model)
    H, W = common.input_size(model, args.size)
    if args.layer is not None:
        check_layer(model, args.layer)
    methods = chosen_methods(model, args.method, args.layer)
    if args.variant is not None and len(methods) > 1:
        raise common.CLIError("--variant names one method's variant: give one --method")
    options = common.options_for(methods, common.parse_options(args.option))
    tokens = parse_targets(args.target)
    mode = common.image_mode(model)
    loaded = [(p, *model_input(model, p, (H, W), mode)) for p in args.images]  # fail early
    out, jobs, stems = os.path.abspath(args.out), [], {}
    for path, x, rgb in loaded:
        stem = common.safe(os.path.splitext(os.path.basename(path))[0])
        stems[stem] = stems.get(stem, 0) + 1
        stem = stem if stems[stem] == 1 else f"{stem}-{stems[stem]}"  # same name, other folder
        logits = common.logits(model, x)
        if tokens is None:
            classes = [int(np.argmax(logits[0]))]
        else:
            classes = [int(resolve_target(t, logits, model.class_names)[0]) for t in tokens]
        print(f"{path} (model input {H}x{W}):")
        print("\n".join(common.top(viz.softmax(logits)[0], model)), flush=True)
        show = shrink(rgb, common.DISPLAY_MAX_SIDE)
        for c in classes:
            label = common.safe(common.class_label(model, c))
            panels = []
            for m in methods:
                start = time.perf_counter()
                try:
                    r = explain_one(m, model, x, c, args.layer, options[m.name], args.variant)
                except ValueError as e:  # --method all: the others still run (one: an error)
                    if len(methods) == 1:
                        raise
                    print(common.failed_line(m, common.class_label(model, c), e), flush=True)
                    panels.append(Panel(m, None, note=common.one_line(e)))
                    continue
                arrays, drawn = method_arrays(m, r, args.details)
                print(common.method_line(m, r, common.class_label(model, c),
                                         time.perf_counter() - start), flush=True)
                arrays = {k: to_numpy(v) for k, v in arrays.items()}
                arrays.update(logits=logits[0], target=np.array(c), method=np.array(m.name),
                              x=np.asarray(x[0]), blend_alpha=np.array(args.alpha))
                img = picture(m, drawn, show, args.alpha, args.cmap)
                panels.append(Panel(m, to_numpy(drawn)))
                base = os.path.join(out, f"{stem}_{m.name}_{label}")
                jobs.append((base + ".png", lambda p, a=img: viz.save_png(a, p)))
                jobs.append((base + ".npz", lambda p, a=arrays: common.save_npz(p, a)))
            if len(methods) > 1:  # --method all: every method in one picture as well
                fig = gallery_figure(show, [(common.class_label(model, c), panels)],
                                     title=f"{args.model}: every method, {stem}",
                                     alpha=args.alpha, cmap=args.cmap)
                jobs.append((os.path.join(out, f"{stem}_all_{label}.png"),
                             lambda p, f=fig: viz.save_png(f, p)))
    common.print_written(common.write_all(jobs))
    return 0
