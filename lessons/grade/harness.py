"""What every assignment's grading uses: the checks, loading a student's file, running parts.

An assignment module (``a1_conv.py`` ...) describes itself as an ``Assignment``: its student
file, the functions the student writes, the modules the file must not use (the solution key),
a ``reference()`` namespace for ``--solutions``, and its ``Part``s. A part is
``run(module, ctx)``: it calls the student's functions on a visible case (seed 0, the case of
the student's own ``check()``) and on hidden cases drawn from ``ctx.rng(k)``, and raises
``Fail`` with what differed (``close``, ``grad_close``) on a wrong answer.

``grade`` runs the parts one by one and prints the report: one PASS/FAIL line per part, for a
FAIL the message and the part's hint, then the score. Each part runs in its own ``try``: a stub
(``NotImplementedError``), a crash or a wrong answer becomes one FAIL line, never a traceback.
A part that runs longer than ``PART_TIME_LIMIT`` seconds fails as well (where the OS has
SIGALRM). This module imports no assignment; the package face ``lessons/grade/__init__.py``
collects them.
"""

from __future__ import annotations

import ast
import importlib.util
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HIDDEN_SEED = 24601  # hidden cases: a seed that appears in no student file
PART_TIME_LIMIT = 60  # seconds per part
GRAD_TOL = 1e-6  # gradient checks: relative error bound (a correct backward gives ~1e-9)


class Fail(Exception):
    """A wrong answer; the message says what differed."""


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so a student's ``except Exception`` cannot eat it."""


@dataclass
class Part:
    """One graded part: its title, its points, the hint shown on a FAIL, and its check."""

    title: str
    points: int
    hint: str
    run: object  # run(mod, ctx) -> None; raises Fail (or anything) on a wrong answer


@dataclass
class Assignment:
    """One assignment: its student file in lessons/assignments/, what it asks, and its parts."""

    key: str
    file: str
    title: str
    functions: tuple
    forbidden: tuple  # dotted module names the student's file must not use
    reference: object  # () -> namespace with the reference functions
    reference_name: str
    parts: list = field(default_factory=list)


@dataclass
class Context:
    """What a part may draw on besides the student's module: the seed of the hidden cases."""

    seed: int

    def rng(self, k):
        """Generator for hidden case k (visible cases use default_rng(0) directly)."""
        return np.random.default_rng([self.seed, k])


# --------------------------------------------------------------------------- comparisons
def as_array(value, what):
    """The student's result as an array, or Fail (None, or not array-like)."""
    if value is None:
        raise Fail(f"{what} is None, expected an array")
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise Fail(f"{what} is a {type(value).__name__}, expected an array") from None


def close(got, expected, what, rtol=1e-6, atol=1e-8, case=""):
    """Fail unless ``got`` has the expected shape and values (max error and where it is)."""
    got = as_array(got, what)
    expected = np.asarray(expected)
    where = f" ({case})" if case else ""
    if got.shape != expected.shape:
        raise Fail(f"{what} has shape {got.shape}, expected {expected.shape}{where}")
    if not np.all(np.isfinite(got)):
        raise Fail(f"{what} contains NaN or inf{where}")
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if not np.all(err <= atol + rtol * np.abs(expected)):
        idx = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
        raise Fail(f"{what} is wrong{where}: max |got - expected| = {err.max():.3g} at index "
                   f"{tuple(int(i) for i in idx)} (got {float(got[idx]):.6g}, expected "
                   f"{float(expected[idx]):.6g})")


def grad_close(analytic, numeric, what, case=""):
    """Fail unless an analytic gradient matches central differences (lesson 01, Eq. 1.7)."""
    from minicnn.gradcheck import rel_error

    analytic = as_array(analytic, what)
    if analytic.shape != numeric.shape:
        raise Fail(f"{what} has shape {analytic.shape}, expected {numeric.shape}"
                   + (f" ({case})" if case else ""))
    err = rel_error(analytic, numeric)
    if not err < GRAD_TOL:
        raise Fail(f"gradient check of {what} failed" + (f" ({case})" if case else "")
                   + f": relative error {err:.2e} against central differences (a correct "
                   f"backward gives about 1e-9)")


def expect_pair(result, what):
    """The student's forward result, or Fail unless it is a pair (out, cache)."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise Fail(f"{what} must return a pair (out, cache), got {type(result).__name__}")
    return result


def expect_triple(result, what):
    """The student's backward result, or Fail unless it is a triple (dx, dw, db)."""
    if not isinstance(result, tuple) or len(result) != 3:
        raise Fail(f"{what} must return (dx, dw, db), got {type(result).__name__}")
    return result


# --------------------------------------------------------------------------- running
def load_student(path):
    """Import a student's file by path (a fresh module each time). Raises with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"student_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forbidden_uses(path, forbidden):
    """(dotted name, line) for every use of a forbidden module in the file (imports and text)."""
    source = Path(path).read_text()
    hits = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return hits  # the import will report it
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            parts, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                names = [".".join([cur.id] + parts[::-1])]
        for name in names:
            for bad in forbidden:
                if name == bad or name.startswith(bad + "."):
                    hits.append((bad, node.lineno))
    return sorted(set(hits), key=lambda t: t[1])


def _where(exc, path):
    """' (your file, line N: code)' for the deepest frame of the traceback in the student's file."""
    if path is None:
        return ""
    target = str(Path(path).resolve())
    tb, found = exc.__traceback__, None
    while tb is not None:
        if str(Path(tb.tb_frame.f_code.co_filename).resolve()) == target:
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    line = found.tb_lineno
    try:
        code = Path(path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        code = ""
    return f" (your file, line {line}: {code})"


def _alarm(seconds):
    if hasattr(signal, "SIGALRM"):
        def handler(signum, frame):
            raise _Timeout()

        signal.signal(signal.SIGALRM, handler)
        signal.alarm(seconds)


def run_part(part, module, ctx, path):
    """(passed, message) for one part; never raises (except KeyboardInterrupt)."""
    try:
        np.seterr(all="ignore")
        _alarm(PART_TIME_LIMIT)
        try:
            part.run(module, ctx)
        finally:
            if hasattr(signal, "SIGALRM"):
                signal.alarm(0)
        return True, ""
    except KeyboardInterrupt:
        raise
    except _Timeout:
        return False, f"took longer than {PART_TIME_LIMIT} s (an endless loop?)"
    except NotImplementedError as e:
        return False, f"not implemented yet (NotImplementedError: {e})"
    except Fail as e:
        return False, str(e)
    except AttributeError as e:
        if module is not None and "has no attribute" in str(e) and "student_" in str(e):
            return False, f"your file does not define {str(e).split('attribute ')[-1]}"
        return False, f"raised AttributeError: {e}{_where(e, path)}"
    except Exception as e:  # noqa: BLE001  a crash in the student's code: a FAIL line
        return False, f"raised {type(e).__name__}: {e}{_where(e, path)}"


def grade(assignment, path=None, solutions=False, seed=HIDDEN_SEED, out=sys.stdout):
    """Grade one assignment; print per-part lines and a score. Returns (points, total)."""
    ctx = Context(seed)
    total = sum(p.points for p in assignment.parts)
    if solutions:
        print(f"Grading {assignment.key} ({assignment.title}) -- reference implementation: "
              f"{assignment.reference_name}", file=out)
    else:
        print(f"Grading {assignment.key} ({assignment.title}) -- {path}", file=out)
    module, blocked = None, None
    if solutions:
        module = assignment.reference()
    else:
        try:
            hits = forbidden_uses(path, assignment.forbidden)
            if hits:
                blocked = ("your file uses the solution key: "
                           + ", ".join(f"{name} (line {line})" for name, line in hits)
                           + "; write the code yourself")
            else:
                module = load_student(path)
        except Exception as e:  # noqa: BLE001  (an import error of any kind)
            blocked = f"could not load {path}: {type(e).__name__}: {e}{_where(e, path)}"
    points = 0
    for i, part in enumerate(assignment.parts, start=1):
        if blocked:
            ok, msg = False, blocked
        else:
            ok, msg = run_part(part, module, ctx, None if solutions else path)
        points += part.points if ok else 0
        print(f"  {'PASS' if ok else 'FAIL'}  {i}. {part.title:78s} "
              f"{part.points if ok else 0}/{part.points}", file=out)
        if not ok:
            print(f"        {msg}", file=out)
            print(f"        hint: {part.hint}", file=out)
    verdict = "all parts pass" if points == total else "some parts fail"
    print(f"Score: {points}/{total} ({100 * points / total:.0f}%) -- {verdict}", file=out)
    return points, total
