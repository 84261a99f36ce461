"""``gradcam evaluate``: localisation and class-discrimination metrics on generated shapes,
one table per model (the library: ``gradcam.evaluate``).

    gradcam evaluate [--models NAME_OR_PATH ...] [--n 200] [--seed 4000] [--markdown]
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
    p.add_argument("--seed", type=int, default=4000, help="data seed (default 4000)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.set_defaults(func=run)
    return p


def run(args):
    """Evaluate ``args.models`` (every model resolved before the first long run); print the
    tables. The rows: the command line's methods that the evaluation scores."""
    from .. import evaluate as E

    if args.n < 1:
        raise common.CLIError(f"--n must be >= 1, got {args.n}")
    models = [common.resolve_model(spec) for spec in args.models]  # fail before any long run
    rows = [name for name in common.methods() if name in E.SCORED]
    results = [E.evaluate(m, args.n, args.n, args.seed, methods=rows, name=spec)
               for spec, m in zip(args.models, models)]
    print(E.format_table(results, markdown=args.markdown))
    return 0
