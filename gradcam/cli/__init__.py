"""The ``gradcam`` command line (console script ``gradcam = gradcam.cli:main``; also
``python -m gradcam.cli``): one module per subcommand, registered the same way.

    gradcam demo [--model efficientnet_lite0] [--image PHOTO] [--out gradcam-out] ...
    gradcam explain IMAGE... --model NAME_OR_PATH [--target CLASS ...] [--layer NAME]
                    [--method NAME|all] [--out DIR] [--alpha 0.5] [--cmap jet] [--size H W]
    gradcam layers --model NAME_OR_PATH [--size H W]
    gradcam evaluate [--models NAME_OR_PATH ...] [--n 200] [--seed 4000] [--markdown]
    gradcam compare HEATMAP INPUT --model NAME_OR_PATH ...   (exit 0/1/2: its verdict; 3 error)

Modules: ``app`` (the parser and ``main``), ``common`` (what the subcommands share: the
parser class, the error line, ``resolve_model``, ``input_size``, ``methods``, safe writing),
and one per subcommand (``demo``, ``explain``, ``layers``, ``evaluate``, ``compare``), each
with ``add_parser(subparsers)`` and ``run(args)``. The libraries (``gradcam.compare``,
``gradcam.evaluate``, ``gradcam.userfiles``, ...) never import this package.

``NAME_OR_PATH`` is a name in ``minicnn.zoo.MODELS`` (with its shipped weights) or a model file
written by ``model.save``, resolved by ``minicnn.zoo.resolve_model``. The model carries its input
size and preprocessing (saved in its file); ``--size H W`` overrides the size, and a model that
carries none is read at 64 x 64, / 255.

Failure policy: bad input of any kind ends with exactly one line ``gradcam: error: ...`` on
stderr, no traceback, and exit status 2 for usage errors (argparse) or 1 for runtime errors
(missing/corrupt/too-large image, unknown model, class or layer, CAM on a non-GAP model);
``compare`` ends every error, usage included, with 3, since its 0/1/2 are verdicts (its
module's ``ERROR_STATUS`` / ``USAGE_STATUS``, read by ``app.main``). Only our own errors and
ValueError / KeyError / OSError are caught, so a genuine bug (TypeError, ...) still shows its
traceback. Every output is computed before the first file is written, each file is written
atomically (temp file + rename), and if a write fails the files this run already wrote are
removed: no half-written output.
"""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
