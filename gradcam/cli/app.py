"""The ``gradcam`` parser and entry point: every subcommand registered the same way (its
module's ``add_parser(subparsers)`` sets ``func``), and one error policy for all of them."""

from __future__ import annotations

import os
import sys

from . import common, compare, demo, evaluate, explain, layers, sanity

SUBCOMMANDS = (demo, explain, layers, evaluate, compare, sanity)  # modules, in ``--help`` order


def build_parser():
    """The argparse parser of ``gradcam``: one subparser per module in ``SUBCOMMANDS``."""
    parser = common.Parser(prog="gradcam", description="Grad-CAM (arXiv:1610.02391v4) "
                           "explanations of minicnn models: pictures like the paper's Figure 1.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=common.Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _silence_stdout():
    """Point stdout at the null device, so that Python's exit-time flush of what is still
    buffered cannot fail on the closed pipe again (the recipe in Python's ``signal`` docs)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no real file behind sys.stdout (tests)
        pass


def main(argv=None):
    """Run ``gradcam ARGV``; return the exit status: the subcommand's (0 ok), 1 for a runtime
    error (or the subcommand's ``error_status``), 2 for a usage error, 130 when interrupted,
    141 when the reader of its output went away.

    NOTE: only our own errors and ValueError / KeyError / OSError become the one line
    ``gradcam: error: ...``; a genuine bug (TypeError, ...) still shows its traceback.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = None
    try:
        args = build_parser().parse_args(argv)
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit-time flush
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("gradcam: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`gradcam demo | head -3`): stop quietly
        _silence_stdout()
        return 141  # 128 + SIGPIPE: what a shell reports for a writer whose pipe closed
    except (ValueError, KeyError, OSError) as e:  # ours are ValueErrors; bugs still raise
        print(f"gradcam: error: {common.one_line(e)}", file=sys.stderr)
        return getattr(args, "error_status", common.ERROR_STATUS)
    return 0 if rc is None else int(rc)
