"""Grade an assignment of ``lessons/assignments/`` against the library (the solution key).

    python -m lessons.grade A1 path/to/01_conv.py     # grade a student's file
    python -m lessons.grade A1                         # grade lessons/assignments/01_conv.py
    python -m lessons.grade --solutions               # teachers: the reference must pass everything
    python -m lessons.grade --solutions A3            # ... for one assignment
    python -m lessons.grade --list                    # the assignments and their parts

Run it from the repository root (``lessons`` is a package there). Each part runs in its own
``try``: a stub (``NotImplementedError``), a crash or a wrong answer becomes one FAIL line with
what differed and a hint, never a traceback. A part that runs longer than
``harness.PART_TIME_LIMIT`` seconds fails as well (where the OS has SIGALRM). The checks use a
visible case (seed 0, the one in the student's own ``check()``), hidden random cases (seeded
from ``HIDDEN_SEED``, or ``--seed``), and gradient checks with ``minicnn.gradcheck``. The exit
status is 0 only when every part passes (1 otherwise, 2 for a usage error).

``--solutions`` grades the reference: the library functions themselves where an assignment
asks for the library's own signature (A1: ``minicnn.naive.conv2d_*``, A2:
``minicnn.naive.maxpool2d_*``), otherwise thin compositions of library calls (A3, A4; see
``reference`` in ``a3_gradcam.py`` and ``a4_guided_cam.py``).

The package:
    harness.py        what every assignment uses: Part, Assignment, the checks (close,
                      grad_close), loading a student's file, the forbidden-import check,
                      running the parts under a time limit, the score and the report (grade)
    a1_conv.py        A1 (assignments/01_conv.py): convolution forward and backward
    a2_maxpool.py     A2 (assignments/02_maxpool.py): max pooling and the tie rule
    a3_gradcam.py     A3 (assignments/03_gradcam.py): Grad-CAM's weights and map, counterfactual
    a4_guided_cam.py  A4 (assignments/04_guided_cam.py): the ReLU rules, the CAM identity
    __init__.py       this face: the table ASSIGNMENTS, find, and the command line (main)
Each assignment module's docstring says what it asks, its parts and points, and how its hidden
cases are drawn. To add an assignment, write its module and add it to ASSIGNMENTS below.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .a1_conv import A1
from .a2_maxpool import A2
from .a3_gradcam import A3
from .a4_guided_cam import A4
from .harness import (HIDDEN_SEED, Assignment, Context, Fail, Part, close, forbidden_uses,
                      grad_close, grade, load_student, run_part)

# The settings read at run time (PART_TIME_LIMIT, GRAD_TOL) stay in harness: set them there.
__all__ = ["A1", "A2", "A3", "A4", "ASSIGNMENTS", "ASSIGNMENTS_DIR", "HIDDEN_SEED", "Assignment",
           "Context", "Fail", "Part", "close", "find", "forbidden_uses", "grad_close", "grade",
           "load_student", "main", "run_part"]

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"
ASSIGNMENTS = {a.key: a for a in (A1, A2, A3, A4)}


def find(name):
    """An assignment by key ("A1", "a1", "1", "01"), file name ("01_conv", "01_conv.py") or slug."""
    key = str(name).strip().lower().removesuffix(".py")
    for a in ASSIGNMENTS.values():
        stem = a.file.removesuffix(".py")
        if key in (a.key.lower(), a.key[1:], a.key[1:].zfill(2), stem, stem.split("_", 1)[1]):
            return a
    raise KeyError(f"unknown assignment {name!r}; choose one of "
                   + ", ".join(f"{a.key} ({a.file})" for a in ASSIGNMENTS.values()))


def _list(out=sys.stdout):
    """``--list``: every assignment with its file, title and points, and its parts."""
    for a in ASSIGNMENTS.values():
        total = sum(p.points for p in a.parts)
        print(f"{a.key}  lessons/assignments/{a.file}: {a.title} ({total} points)", file=out)
        for i, p in enumerate(a.parts, start=1):
            print(f"      {i}. {p.title} ({p.points})", file=out)


def main(argv=None):
    """The command line; returns the exit status (0 all pass, 1 some fail, 2 usage error)."""
    parser = argparse.ArgumentParser(prog="python -m lessons.grade",
                                     description="Grade an assignment of lessons/assignments/.")
    parser.add_argument("assignment", nargs="?", help="A1..A4 (or 01, conv, 01_conv.py); "
                        "with --solutions, 'all' or nothing grades every assignment")
    parser.add_argument("file", nargs="?", help="the student's file (default: the file in "
                        "lessons/assignments/)")
    parser.add_argument("--solutions", action="store_true",
                        help="grade the reference implementation (teachers: must score 100%%)")
    parser.add_argument("--seed", type=int, default=HIDDEN_SEED,
                        help="seed of the hidden cases (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the assignments and parts")
    args = parser.parse_intermixed_args(argv)  # flags may sit between the two names
    if args.list:
        _list()
        return 0
    try:
        if args.solutions and args.assignment in (None, "all"):
            chosen = list(ASSIGNMENTS.values())
        elif args.assignment is None:
            parser.print_usage(sys.stderr)
            print("grade: error: name an assignment (A1..A4), or use --solutions or --list",
                  file=sys.stderr)
            return 2
        else:
            chosen = [find(args.assignment)]
    except KeyError as e:
        print(f"grade: error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.file and args.solutions:
        print("grade: error: --solutions grades the reference; give no file", file=sys.stderr)
        return 2
    all_pass = True
    for a in chosen:
        path = Path(args.file) if args.file else ASSIGNMENTS_DIR / a.file
        if not args.solutions and not path.is_file():
            print(f"grade: error: no such file: {path}", file=sys.stderr)
            return 2
        points, total = grade(a, path, args.solutions, args.seed)
        all_pass &= points == total
    return 0 if all_pass else 1
