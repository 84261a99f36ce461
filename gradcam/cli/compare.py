"""``gradcam compare``: which convention does your Grad-CAM heatmap follow? (the library:
``gradcam.compare``; reading the user's files: ``gradcam.userfiles``)

    gradcam compare HEATMAP INPUT --model NAME_OR_PATH [--weights FILE] [--target CLASS]
                    [--layer NAME] [--alphas FILE] [--tol T] [--size H W] [--method NAME]

``--method`` other than gradcam: which formula (the paper's or a peer library's variant) and
which rendering made the map (``gradcam.compare_family``).

Exit status (for a user's CI): 0 the map is ours, 1 it follows another (named) convention,
2 nothing matches, 3 error: no verdict (bad input or option, unreadable file, non-finite map
or alphas, ...; one ``gradcam: error:`` line, no traceback); 130 interrupted; 141 the reader
of its output went away. An error never ends with a verdict's status, so a CI job cannot
mistake a crash for "another convention".
"""

from __future__ import annotations

from . import common

VERDICTS = {0: "the map is ours", 1: "it follows another (named) convention",
            2: "nothing matches"}
ERROR_STATUS = USAGE_STATUS = 3  # any error, usage included: distinct from every verdict
EPILOG = ("exit status: " + ", ".join(f"{k} {v}" for k, v in VERDICTS.items())
          + f", {ERROR_STATUS} error (no verdict: bad input, unreadable file, bad option), "
          "130 interrupted, 141 the reader of its output went away")


def add_parser(subparsers):
    """Register ``gradcam compare``."""
    from ..userfiles import DEFAULT_TOL

    p = subparsers.add_parser(
        "compare", help="which convention does your heatmap follow? (gradcam.compare)",
        description="Compare a user's Grad-CAM heatmap with ours and say which convention it "
        "follows.", epilog=EPILOG)
    p.add_argument("heatmap", metavar="HEATMAP", help="your map: .npy, .npz or grayscale .png")
    p.add_argument("input", metavar="INPUT",
                   help="the image file, or the preprocessed input as .npy/.npz (C,H,W)")
    common.add_model(p)
    p.add_argument("--weights", help="your torch state dict (.npz or .pth) for the zoo --model")
    p.add_argument("--target", help="class name or index (default: top-1)")
    p.add_argument("--layer", help="layer of A (default: the last spatial layer)")
    p.add_argument("--alphas", help="your channel weights alpha (K,), .npy/.npz")
    p.add_argument("--tol", type=common.tolerance, default=None,
                   help=f"relative tolerance, a finite number > 0 (default {DEFAULT_TOL:g}; "
                   "2/255 for 8-bit PNGs)")
    p.add_argument("--method", default="gradcam",
                   help="the method your map explains (default gradcam; see gradcam.methods())")
    common.add_size(p, "model input size for an image INPUT (default: the model's own, else 64 64)")
    p.set_defaults(func=run)
    return p


def run(args):
    """Run the comparison, print the table and the diagnosis; return its verdict 0 / 1 / 2
    (errors raise, and ``gradcam.cli.app.main`` turns them into ERROR_STATUS)."""
    from ..compare import compare
    from ..userfiles import check_weights, load_alphas, load_input, load_map

    user_map, tol = load_map(args.heatmap)
    alphas = load_alphas(args.alphas) if args.alphas else None  # user files before the model
    if args.weights is not None:
        check_weights(args.weights)
    model = common.resolve_model(args.model, args.weights)
    x = load_input(args.input, model, common.input_size(model, args.size),
                   common.image_mode(model))
    target = None
    if args.target is not None:
        t = args.target.strip()
        target = int(t) if t.lstrip("+-").isdigit() else t
    if args.method != "gradcam":
        from ..compare_family import compare_method

        if args.alphas:
            raise ValueError("--alphas applies to --method gradcam only")
        result = compare_method(user_map, model, x, args.method, target, args.layer,
                                tol if args.tol is None else args.tol)
        print(result.format())
        return result.status
    result = compare(user_map, model, x, target, args.layer, alphas,
                     tol if args.tol is None else args.tol)
    print(result.format())
    return result.status
