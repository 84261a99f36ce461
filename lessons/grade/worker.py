"""The student's process: import the file under an import allow-list, record each part's calls.

    python -m lessons.grade.worker KEY STUDENT_FILE OUTDIR SEED FIRST_PART

Spawned by ``isolate.py``, never by hand. It writes into OUTDIR, each file complete before it
is renamed into place (the grading process polls for them):

    ready          before the student's file is imported (the import's clock starts here)
    import.json    {"error": null} once the file is imported, or the one-line reason it failed
    partI.json     part I's log: the student's calls, each with its result or error, and
    partI.npz      the results' arrays (a plain .npz, read back with allow_pickle=False)

Nothing here decides a score: checks are off in this process (``harness.CHECKS = False``). The
import guard makes a forbidden import fail where it happens (``import``, ``__import__``,
``importlib.import_module``), whatever spelling builds the name; it is a guard against shortcuts
to the solution key, not a sandbox against hostile code (the process boundary and the grading
process's own checks are what make the score trustworthy).
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np

from . import harness

ROOT = Path(__file__).resolve().parents[2]


class ForbiddenImport(ImportError):
    """An import the assignment does not allow (``forbidden`` marks it for the report)."""

    forbidden = True


def _trusted_dirs():
    """Folders whose code may import anything: Python's own, site-packages, the project's."""
    dirs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {str(ROOT / d) for d in ("minicnn", "gradcam", "lessons/grade")}
    return tuple(str(Path(d).resolve()) + os.sep for d in dirs)


def install_guard(student_path, allowed):
    """Make every import made by code outside the trusted folders pass the allow-list."""
    student = str(Path(student_path).resolve())
    trusted = _trusted_dirs()
    allowed = tuple(allowed)
    extra = [a for a in allowed if a not in harness.BASE_ALLOWED]
    shown = ", ".join(["numpy"] + extra) + " and the standard library's math, itertools, copy ..."
    real_import, real_import_module = builtins.__import__, importlib.import_module

    verdicts = {}  # file name -> untrusted? (imports are frequent: resolve each file once)

    def untrusted(frame):
        name = frame.f_code.co_filename
        if name not in verdicts:
            path = os.path.realpath(name) if os.path.isabs(name) else name
            verdicts[name] = not name.startswith("<frozen") and (
                path == student or not path.startswith(trusted))
        return verdicts[name]

    def check(name, level):
        if level:
            raise ForbiddenImport(f"a relative import ({'.' * level}{name}) is not allowed here")
        top = name.split(".")[0]
        if top not in allowed:
            raise ForbiddenImport(
                f"import of {name!r} is not allowed in this assignment: you may import "
                f"{shown} (the library is the solution key)")

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if untrusted(sys._getframe(1)):
            check(name, level)
        return real_import(name, globals, locals, fromlist, level)

    def guarded_import_module(name, package=None):
        if untrusted(sys._getframe(1)):
            check(name, 1 if name.startswith(".") else 0)
        return real_import_module(name, package)

    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module


def load_student(path):
    """Import a student's file by path as module ``student`` (not ``__main__``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("student", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["student"] = module
    spec.loader.exec_module(module)
    return module


def _write(outdir, name, payload, arrays=None):
    """Write ``name``.json (and ``name``.npz) atomically: the .json appears last."""
    if arrays is not None:
        tmp = outdir / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, outdir / f"{name}.npz")
    tmp = outdir / f"{name}.json.tmp"
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, outdir / f"{name}.json")


def main(argv):
    from . import ASSIGNMENTS

    key, path, outdir, seed, first = argv
    assignment, outdir, seed = ASSIGNMENTS[key], Path(outdir), int(seed)
    harness.CHECKS = False
    np.seterr(all="ignore")
    path = str(Path(path).resolve())
    (outdir / "ready").write_text("")
    install_guard(path, harness.BASE_ALLOWED + assignment.allowed)
    try:
        module = load_student(path)
    except BaseException as e:  # noqa: BLE001  SystemExit, KeyboardInterrupt, SyntaxError ...
        msg = harness.describe(e, path)
        if isinstance(e, SystemExit):
            msg = (f"your file called sys.exit({e.code!r}) while being imported"
                   f"{harness.where(e, path)}")
        _write(outdir, "import", {"error": f"could not import your file: {msg}"})
        return
    _write(outdir, "import", {"error": None})
    for i in range(int(first), len(assignment.parts)):
        ctx = harness.Context(seed, "record", path)
        try:
            assignment.parts[i].run(harness.Student(module, ctx), ctx)
        except harness.Stopped:
            pass
        except BaseException as e:  # noqa: BLE001  the log ends here; the grader says why
            ctx.end = harness.describe(e, path)
        _write(outdir, f"part{i}", {"log": ctx.log, "end": ctx.end}, ctx.arrays)


if __name__ == "__main__":
    status = 0
    try:
        main(sys.argv[1:])
    except BaseException:  # noqa: BLE001  the grader's own failure: its traceback, for a bug report
        import traceback

        traceback.print_exc()
        status = 3
    sys.stderr.flush()
    os._exit(status)  # no atexit handler or thread of the student's runs after this
