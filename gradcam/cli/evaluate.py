"""``gradcam evaluate``: localisation and class-discrimination metrics on generated shapes,
one table per model, a row per registered method (the library: ``gradcam.evaluate``).

    gradcam evaluate [--models NAME_OR_PATH ...] [--methods NAME ...] [--option KEY=VALUE ...]
                     [--n 200] [--seed 4000] [--protocol fast|full] [--faithfulness] [--road]
                     [--photos [FOLDER]] [--curves PNG] [--markdown]

The methods that run one forward per channel (Score-CAM and its kin), the sampling methods and
Occlusion take most of the time: the "fast" protocol (the default) scores them on fewer images
(the table's "n" column, each method's ``Method.fast_n`` in the registry); ``--protocol full``
on --n.
``--faithfulness`` adds deletion/insertion AUC, Average Drop, Increase in Confidence and the
occlusion rank correlation (``--road``: ROAD's two columns too); ``--photos`` adds a table of
those on a folder of photos with EfficientNet-Lite0 (default: matplotlib's sample photos).
"""

from __future__ import annotations

from minicnn.zoo import SHIPPED

from . import common


def add_parser(subparsers):
    """Register ``gradcam evaluate``."""
    from ..evaluate_family import PROTOCOLS

    p = subparsers.add_parser(
        "evaluate", help="evaluation metrics (gradcam.evaluate)",
        description="Evaluate explanation maps where the truth is known: generated shapes with "
        "masks and boxes; with --faithfulness or --photos also how faithful each map is to the "
        "model (no ground truth needed).")
    p.add_argument("--models", nargs="*", default=list(SHIPPED), metavar="MODEL",
                   help=f"zoo names or model files (default: {' '.join(SHIPPED)}; none: only "
                   "--photos)")
    p.add_argument("--n", type=int, default=200,
                   help="single-object images, and scenes (default 200 each)")
    p.add_argument("--seed", type=common.seed_int, default=4000,
                   help="data seed, an integer >= 0 (default 4000)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="registered methods to score (default: all)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="fast",
                   help="fast: fewer images for the costly methods (the 'n' column); full: "
                   "--n for every method (default fast)")
    p.add_argument("--faithfulness", action="store_true",
                   help="add the faithfulness metrics (deletion, insertion, Average Drop, "
                   "Increase in Confidence, occlusion rho)")
    p.add_argument("--road", action="store_true",
                   help="with --faithfulness or --photos: ROAD MoRF and LeRF too (slow)")
    p.add_argument("--photos", nargs="?", const="", default=None, metavar="FOLDER",
                   help="also the faithfulness metrics on a folder of photos with "
                   "efficientnet_lite0 (default folder: matplotlib's sample data)")
    p.add_argument("--curves", metavar="PNG",
                   help="also draw the deletion/insertion curves of the first model's methods "
                   "on 8 single shapes (one panel per method) to this PNG")
    common.add_options(p)
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.set_defaults(func=run)
    return p


def run(args):
    """Evaluate ``args.models`` (every model resolved before the first long run); print the
    tables. The rows: the registered methods (or ``--methods``), in the registry's order."""
    from .. import evaluate as E
    from .. import evaluate_family as F

    if args.n < 1:
        raise common.CLIError(f"--n must be >= 1, got {args.n}")
    if not args.models and args.photos is None:
        raise common.CLIError("nothing to evaluate: give --models or --photos")
    if args.road and not (args.faithfulness or args.photos is not None):
        raise common.CLIError("--road needs --faithfulness or --photos")
    chosen = common.chosen(args.methods or "all")
    options = common.options_for(chosen, common.parse_options(args.option))
    models = [common.resolve_model(spec) for spec in args.models]  # fail before any long run
    photos = None
    if args.photos is not None:
        try:
            photos = F.photo_paths(args.photos or F.photo_folder())
        except ValueError as e:
            raise common.CLIError(f"--photos: {e}") from None
    rows = [m.name for m in chosen]
    results = [F.evaluate_protocol(m, args.n, args.seed, methods=rows, protocol=args.protocol,
                                   name=spec, options=options, faithfulness=args.faithfulness,
                                   road=args.road) for spec, m in zip(args.models, models)]
    if photos:
        net = common.resolve_model("efficientnet_lite0")
        results.append(F.evaluate_photos(net, photos, methods=rows, options=options,
                                         road=args.road, protocol=args.protocol))
    print(E.format_table(results, markdown=args.markdown))
    if args.curves and models:
        F.curves_figure(models[0], args.curves, seed=args.seed, methods=rows, options=options,
                        name=args.models[0])
        common.print_written([args.curves])
    return 0
