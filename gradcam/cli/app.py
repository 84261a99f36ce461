"""The ``gradcam`` parser and entry point: every subcommand registered the same way (its
module's ``add_parser(subparsers)`` sets ``func``), and one error policy for all of them."""

from __future__ import annotations

import os
import sys
import traceback

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


def _statuses(argv):
    """(runtime error status, usage error status) of the subcommand ``argv`` names: its
    module's ``ERROR_STATUS`` / ``USAGE_STATUS`` (``compare``: 3 for both, its verdicts being
    0-2), else ``common.ERROR_STATUS`` (1) and ``common.USAGE_STATUS`` (2)."""
    name = next((a for a in argv if not a.startswith("-")), None)
    module = next((m for m in SUBCOMMANDS if m.__name__.rsplit(".", 1)[-1] == name), None)
    return (getattr(module, "ERROR_STATUS", common.ERROR_STATUS),
            getattr(module, "USAGE_STATUS", common.USAGE_STATUS))


def main(argv=None):
    """Run ``gradcam ARGV``; return the exit status: the subcommand's (0 ok), 1 for a runtime
    error, 2 for a usage error (``compare``: 3 for both, see its module), 130 when
    interrupted, 141 when the reader of its output went away.

    NOTE: only our own errors and ValueError / KeyError / OSError become the one line
    ``gradcam: error: ...``; a genuine bug (TypeError, ...) still shows its traceback (under
    ``compare``, followed by an error line and its ERROR_STATUS, never a verdict's status).
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    error_status, usage_status = _statuses(argv)
    try:
        args = build_parser().parse_args(argv)
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit-time flush
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return usage_status if code == 2 else code
    except KeyboardInterrupt:
        print("gradcam: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`gradcam demo | head -3`): stop quietly
        _silence_stdout()
        return 141  # 128 + SIGPIPE: what a shell reports for a writer whose pipe closed
    except (ValueError, KeyError, OSError) as e:  # ours are ValueErrors; bugs still raise
        print(f"gradcam: error: {common.one_line(e)}", file=sys.stderr)
        return error_status
    except Exception:
        if error_status == common.ERROR_STATUS:
            raise  # a genuine bug: its traceback, and Python's exit status 1
        # NOTE: compare's 1 is a verdict, so even a bug must not end with Python's 1; its
        # traceback is still shown, since it is a bug to report, not bad input
        traceback.print_exc()
        print("gradcam: error: internal error (a bug: the traceback above; please report it)",
              file=sys.stderr)
        return error_status
    return 0 if rc is None else int(rc)
