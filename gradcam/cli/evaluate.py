"""``gradcam evaluate``: localisation and class-discrimination metrics on generated shapes,
one table per model, a row per registered method (the library: ``gradcam.evaluate``).

    gradcam evaluate [--models NAME_OR_PATH ...] [--methods NAME ...] [--option KEY=VALUE ...]
                     [--n 200] [--seed 4000] [--markdown]

The methods that run one forward per channel (Score-CAM and its kin) take most of the time;
``--methods`` picks rows, ``--option batch_size=N`` sets their batch.
"""

from __future__ import annotations

from minicnn.zoo import SHIPPED

from . import common


def add_parser(subparsers):
    """Register ``gradcam evaluate``."""
    p = subparsers.add_parser(
        "evaluate", help="evaluation metrics (gradcam.evaluate)",
        description="Evaluate explanation maps where the truth is known: generated shapes with "
        "masks and boxes.")
    p.add_argument("--models", nargs="+", default=list(SHIPPED), metavar="MODEL",
                   help=f"zoo names or model files (default: {' '.join(SHIPPED)})")
    p.add_argument("--n", type=int, default=200,
                   help="single-object images, and scenes (default 200 each)")
    p.add_argument("--seed", type=common.seed_int, default=4000,
                   help="data seed, an integer >= 0 (default 4000)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="registered methods to score (default: all)")
    common.add_options(p)
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.set_defaults(func=run)
    return p


def run(args):
    """Evaluate ``args.models`` (every model resolved before the first long run); print the
    tables. The rows: the registered methods (or ``--methods``), in the registry's order."""
    from .. import evaluate as E

    if args.n < 1:
        raise common.CLIError(f"--n must be >= 1, got {args.n}")
    chosen = common.chosen(args.methods or "all")
    options = common.options_for(chosen, common.parse_options(args.option))
    models = [common.resolve_model(spec) for spec in args.models]  # fail before any long run
    rows = [m.name for m in chosen]
    results = [E.evaluate(m, args.n, args.n, args.seed, methods=rows, name=spec,
                          options=options) for spec, m in zip(args.models, models)]
    print(E.format_table(results, markdown=args.markdown))
    return 0
