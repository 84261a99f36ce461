"""``gradcam sanity``: Adebayo et al.'s sanity checks (arXiv:1810.03292v3) from the command line:
the cascade figure (a row per method, a column per randomisation step) and the table of
similarities to the trained model's maps (``gradcam.sanity``).

    gradcam sanity --model NAME_OR_PATH [--method NAME ...] [--mode cascading|independent|data]
                   [--image PATH ...] [--n 2] [--seed 0] [--data-seed 5000] [--option KEY=VALUE]
                   [--out DIR] [--markdown] [--epochs E] [--train-images N]

Inputs: the ``--image`` files; else, for a shapes model, ``--n`` generated shapes explained for
their true class; else matplotlib's grace_hopper.jpg, explained for the top-1 class.
``--mode data`` compares the model with the same zoo architecture trained on permuted labels
until it has memorised them (``gradcam.permuted.RECIPES``, under a minute on 2 cores the
first time, then cached in the user's cache folder) and prints how much it memorised. Files:
``sanity_MODE_I.png`` per image and ``sanity_MODE.npz`` (the measures, the maps, the steps and
the methods; with --mode data also the permuted-label model's accuracies).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from . import common

DEFAULT_METHODS = ("gradcam", "guided-backprop", "saliency")


def add_parser(subparsers):
    """Register ``gradcam sanity``."""
    from ..sanity import MODES

    p = subparsers.add_parser(
        "sanity", help="model and data randomisation checks (gradcam.sanity)",
        description="Sanity checks (Adebayo et al., arXiv:1810.03292v3): re-initialise the "
        "model's layers (or retrain it on permuted labels) and measure how much each method's "
        "map changes.")
    common.add_model(p)
    p.add_argument("--method", nargs="+", default=list(DEFAULT_METHODS), metavar="NAME",
                   help=f"registered methods (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--mode", choices=[*MODES, "data"], default="cascading",
                   help="cascading (top layer down, one more each step; default), independent "
                   "(one layer at a time) or data (a model trained on permuted labels)")
    p.add_argument("--image", nargs="+", metavar="PATH", help="image files (default: shapes "
                   "for a shapes model, else grace_hopper.jpg)")
    p.add_argument("--n", type=common.positive_int, default=2,
                   help="generated shapes images (shapes models; default 2)")
    p.add_argument("--data-seed", type=int, default=5000, help="shapes seed (default 5000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the re-initialised weights / the label permutation (default 0)")
    p.add_argument("--epochs", type=common.positive_int,
                   help="--mode data: training epochs (default: gradcam.permuted.RECIPES's)")
    p.add_argument("--train-images", type=common.positive_int,
                   help="--mode data: training images (default: gradcam.permuted.RECIPES's)")
    common.add_options(p)
    p.add_argument("--out", default="gradcam-out", help="output folder (default: gradcam-out)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)
    return p


def _inputs(args, model):
    """(x, pictures, target): the images to explain, what to draw, the classes."""
    from minicnn.data import make_shapes
    from minicnn.zoo import SHAPES_CLASSES

    from ..images import model_input

    if args.image is None and list(model.class_names or ()) == list(SHAPES_CLASSES):
        d = make_shapes(args.n, seed=args.data_seed, size=common.input_size(model)[0])
        return d.images, [im.transpose(1, 2, 0) for im in d.images], d.labels
    paths = args.image or [_sample_photo()]
    pairs = [model_input(model, p, common.input_size(model)) for p in paths]
    return np.concatenate([x for x, _ in pairs]), [shown for _, shown in pairs], None


def _sample_photo():
    from .demo import _sample_photo as photo

    return photo()


def _permuted_model(permuted, args):
    """The permuted-label model of ``args.model`` (trained now, with a note, if not cached)."""
    n, e, lr = permuted.recipe(args.model, args.train_images, args.epochs)
    path = permuted.cache_path(args.model, args.seed, n, e)
    if not path.exists():
        print(f"training {args.model} on permuted labels ({n} images, {e} epochs, lr {lr:g}); "
              f"cached in {path}", file=sys.stderr)
    return permuted.permuted_label_model(args.model, args.seed, n, e, lr)


def run(args):
    """Run the checks; print the table; write the figures and the .npz."""
    from .. import permuted, sanity

    chosen = common.chosen(args.method)
    options = common.options_for(chosen, common.parse_options(args.option))
    if args.mode != "data" and (args.epochs or args.train_images):
        raise common.CLIError("--epochs and --train-images go with --mode data")
    if args.mode == "data" and args.model not in permuted.RECIPES:
        raise common.CLIError(f"--mode data retrains the model on permuted labels: use one of "
                              f"{', '.join(permuted.RECIPES)}, not {args.model!r}")
    model = common.resolve_model(args.model)
    x, pictures, target = _inputs(args, model)
    names = [m.name for m in chosen]
    facts = None
    if args.mode == "data":
        other = _permuted_model(permuted, args)
        facts = other.permuted
        res = sanity.data_randomisation(model, other, x, target, names, options)
    else:
        res = sanity.randomisation(model, x, target, names, args.mode, args.seed, options)
    print(f"sanity checks ({args.mode}) of {args.model} on {len(x)} image(s), seed {args.seed}: "
          f"similarity to the trained model's map, mean over images")
    if facts is not None:
        print(permuted.describe(facts))
    print(sanity.format_table(res, markdown=args.markdown))
    out = os.path.abspath(args.out)
    labels = [common.class_label(model, int(c)) for c in res.target]
    jobs = [(os.path.join(out, f"sanity_{args.mode}_{n}.png"),
             lambda p, n=n: sanity.cascade_figure(
                 res, pictures[n], n, p, title=f"{args.mode} randomisation of {args.model}, "
                 f"image {n}, class {labels[n]}")) for n in range(len(x))]
    arrays = {"spearman": res.spearman, "spearman_abs": res.spearman_abs, "ssim": res.ssim,
              "hog": res.hog, "maps": res.maps, "target": res.target, "steps": np.array(res.steps),
              "methods": np.array(res.methods)}
    if facts is not None:
        arrays.update({k: np.array(facts[k]) for k in ("train_accuracy_permuted",
                                                        "test_accuracy_true")})
    jobs.append((os.path.join(out, f"sanity_{args.mode}.npz"),
                 lambda p: common.save_npz(p, arrays)))
    common.print_written(common.write_all(jobs))
    return 0
