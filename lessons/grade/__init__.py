"""Grade an assignment of ``lessons/assignments/`` against the library (the solution key).

    python -m lessons.grade A1 path/to/01_conv.py     # grade a student's file
    python -m lessons.grade A1                         # grade lessons/assignments/01_conv.py
    python -m lessons.grade --solutions               # teachers: the reference must pass everything
    python -m lessons.grade --solutions A3            # ... for one assignment
    python -m lessons.grade --list                    # the assignments and their parts
    python path/to/lessons/grade A1 file.py           # the same, from any folder

A student's file runs in a process of its own (``isolate.py`` -> ``worker.py``) under a
wall-clock limit that covers its import: exiting (``sys.exit``, ``os._exit``), looping forever,
swallowing exceptions or raising KeyboardInterrupt there costs that part (or, at import, every
part) and prints one FAIL line, never a traceback, never a hang. Imports there pass an
allow-list (NumPy and a few standard modules) where they happen, however the name is spelled.
The checks run in THIS process, on the arrays the student's code returned, against references
computed here, so nothing the student's code patches can pass them. The exit status is 0 only
when every part passes (1 otherwise, 2 for a usage error).

``--solutions`` grades the reference in this process: the library's functions in the
assignment's signatures, or (A6, A7) a reference written out in the assignment's module.

The package:
    harness.py        Part, Assignment, Context (direct / record / replay), the Student proxy,
                      the checks (close, diagnose, grad_close), the one-line messages
    worker.py         the student's process: the import allow-list, recording each part
    isolate.py        this process: spawn and watch the worker, replay and check, the report
    a1_conv.py        A1 (assignments/01_conv.py): col2im and the convolution's backward
    a2_maxpool.py     A2 (assignments/02_maxpool.py): max pooling and the tie rule
    a3_gradcam.py     A3 (assignments/03_gradcam.py): Grad-CAM from a model, counterfactual map
    a4_guided_cam.py  A4 (assignments/04_guided_cam.py): the ReLU rules, the CAM identity
    a5_gradcam_pp.py  A5 (assignments/05_gradcam_pp.py): Grad-CAM++ from the closed form
    a6_sanity.py      A6 (assignments/06_sanity.py): the cascading randomisation test
    a7_deletion.py    A7 (assignments/07_deletion.py): the deletion curve and its AUC
    __init__.py       this face: the table ASSIGNMENTS, find, and the command line (main)
Each assignment module's docstring says what it asks, its parts and points, and how its hidden
cases are drawn. To add an assignment, write its module and add it to ASSIGNMENTS below. The
written questions of each assignment and their model answers are in
``lessons/teachers/assignments.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .a1_conv import A1
from .a2_maxpool import A2
from .a3_gradcam import A3
from .a4_guided_cam import A4
from .a5_gradcam_pp import A5
from .a6_sanity import A6
from .a7_deletion import A7
from .harness import HIDDEN_SEED, Assignment, Context, Fail, Part, close, grad_close, run_part
from .isolate import grade, run_student

# The settings read at run time (PART_TIME_LIMIT, IMPORT_TIME_LIMIT, GRAD_TOL) stay in harness:
# set them there.
__all__ = ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "ASSIGNMENTS", "ASSIGNMENTS_DIR",
           "HIDDEN_SEED", "Assignment", "Context", "Fail", "Part", "close", "find", "grad_close",
           "grade", "main", "run_part", "run_student"]

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"
ASSIGNMENTS = {a.key: a for a in (A1, A2, A3, A4, A5, A6, A7)}


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
    parser.add_argument("assignment", nargs="?", help="A1..A7 (or 01, conv, 01_conv.py); "
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
            print("grade: error: name an assignment (A1..A7), or use --solutions or --list",
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
        try:
            points, total = grade(a, path, args.solutions, args.seed)
        except KeyboardInterrupt:  # the user's Ctrl-C (a student's code cannot raise it here)
            print("grade: interrupted", file=sys.stderr)
            return 130
        all_pass &= points == total
    return 0 if all_pass else 1
