"""What every assignment's grading uses: parts, the checks, and the record/replay of a student.

An assignment module (``a1_conv.py`` ...) describes itself as an ``Assignment``: its student
file, the functions the student writes, the modules the student may import (an allow-list), a
``reference()`` namespace for ``--solutions``, and its ``Part``s. A part is
``run(student, ctx)``: it calls the student's functions through ``student`` (a ``Student``
proxy) on a visible case and on hidden cases drawn from ``ctx.rng(k)``, and raises ``Fail``
with what differed (``close``, ``grad_close``) on a wrong answer.

The same part code runs in two processes (``isolate.py`` spawns the first, ``worker.py`` is it):

- in the student's process (``ctx.mode == "record"``) every call through the proxy runs the
  student's code and its result is RECORDED (arrays copied, anything else named by its type);
  the checks are switched off there (``CHECKS = False``), so a student who patches ``np.all``
  or ``minicnn.gradcheck.rel_error`` patches nothing that decides a score;
- in the grading process (``ctx.mode == "replay"``) the part runs again and every call through
  the proxy returns the recorded result instead of running anything; the checks run here, on
  plain arrays, against references computed here.

A part's inputs must therefore depend only on ``ctx.rng`` and on earlier results of the
student (never on a generator the student's code consumed). ``ctx.mode == "direct"`` runs a
trusted module in-process (``--solutions``, and the tests' table of typical mistakes).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HIDDEN_SEED = 24601  # hidden cases: a seed that appears in no student file
PART_TIME_LIMIT = 60  # seconds per part, in the student's process
IMPORT_TIME_LIMIT = 60  # seconds to import the student's file (its top-level code)
GRAD_TOL = 1e-6  # gradient checks: relative error bound (a correct backward gives ~1e-9)
CHECKS = True  # False in the student's process: checks are made only in the grading process
BASE_ALLOWED = ("numpy", "math", "cmath", "itertools", "functools", "operator", "collections",
                "dataclasses", "typing", "__future__", "numbers", "fractions", "copy", "heapq",
                "bisect", "warnings", "abc", "enum")


class Fail(Exception):
    """A wrong answer; the message says what differed."""


class Stopped(BaseException):
    """Record mode: the student's call raised; the part stops (its log says why)."""


@dataclass
class Part:
    """One graded part: its title, its points, the hint shown on a FAIL, and its check."""

    title: str
    points: int
    hint: str
    run: object  # run(student, ctx) -> None; raises Fail (or anything) on a wrong answer


@dataclass
class Assignment:
    """One assignment: its student file in lessons/assignments/, what it asks, and its parts."""

    key: str
    file: str
    title: str
    functions: tuple
    allowed: tuple  # top-level modules the student's file may import, besides BASE_ALLOWED
    reference: object  # () -> namespace with the reference functions
    reference_name: str
    parts: list = field(default_factory=list)


@dataclass
class Opaque:
    """A recorded result that is not an array (a cache, a model): only its type name travels."""

    type_name: str


@dataclass
class Context:
    """The seed of the hidden cases, and how calls to the student's code are made (``mode``)."""

    seed: int
    mode: str = "direct"  # "direct" | "record" | "replay"
    path: object = None  # the student's file (for "your file, line N")
    log: list = field(default_factory=list)  # record: appended; replay: consumed
    arrays: dict = field(default_factory=dict)  # the log's arrays, by key
    end: str = ""  # replay: why the student's process stopped after the log

    def rng(self, k):
        """Generator for hidden case k (visible cases use default_rng(0) directly)."""
        return np.random.default_rng([self.seed, k])

    def call(self, name, thunk):
        """Run ``thunk`` (student code) here, or record it, or return what it returned there."""
        if self.mode == "direct":
            return thunk()
        if self.mode == "record":
            try:
                value = thunk()
            except BaseException as e:  # noqa: BLE001  SystemExit, KeyboardInterrupt included
                self.log.append({"name": name, "error": describe(e, self.path)})
                raise Stopped() from None
            self.log.append({"name": name, "value": _encode(value, self.arrays)})
            return value
        if not self.log:
            raise Fail(self.end or "your code stopped before returning (no result recorded)")
        entry = self.log.pop(0)
        if entry["name"] != name:  # the same part code made other calls: cannot happen
            raise Fail(f"grader out of step: expected a call to {name}, recorded {entry['name']}")
        if "error" in entry:
            raise Fail(entry["error"])
        return _decode(entry["value"], self.arrays)


class Student:
    """The student's functions as a part sees them: ``student.f(...)`` goes through ctx.call."""

    def __init__(self, module, ctx):
        self._module, self._ctx = module, ctx

    def raw(self, name):
        """The student's function itself, for use inside a ``ctx.call`` thunk only."""
        fn = getattr(self._module, name, None)
        if not callable(fn):
            raise Fail(f"your file does not define {name}()")
        return fn

    def __getattr__(self, name):
        def call(*args, **kwargs):
            return self._ctx.call(name, lambda: self.raw(name)(*args, **kwargs))

        return call


def _encode(value, arrays):
    """A JSON-able description of a result; arrays are copied into ``arrays``."""
    if value is None:
        return ["none"]
    if isinstance(value, tuple):
        return ["tuple", [_encode(v, arrays) for v in value]]
    if isinstance(value, (np.ndarray, np.generic, list, float, int, bool)):
        try:
            a = np.array(value, subok=False)  # a copy, a plain ndarray
        except (TypeError, ValueError):
            a = None
        if a is not None and a.dtype.kind in "biuf":
            key = f"a{len(arrays)}"
            arrays[key] = a
            return ["array", key]
    return ["opaque", type(value).__name__]


def _decode(spec, arrays):
    kind = spec[0]
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(_decode(s, arrays) for s in spec[1])
    if kind == "array":
        return arrays[spec[1]]
    return Opaque(spec[1])


# --------------------------------------------------------------------------- comparisons
def as_array(value, what):
    """The student's result as an array, or Fail (None, or not array-like)."""
    if value is None:
        raise Fail(f"{what} is None, expected an array")
    if isinstance(value, Opaque):
        raise Fail(f"{what} is a {value.type_name}, expected an array")
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise Fail(f"{what} is a {type(value).__name__}, expected an array") from None


def close(got, expected, what, rtol=1e-6, atol=1e-8, case=""):
    """Fail unless ``got`` has the expected shape and values (max error and where it is).

    ``expected`` may be a function of no arguments: the reference is then computed only where
    checks are made (the grading process), never in the student's.
    """
    if not CHECKS:
        return
    got = as_array(got, what)
    expected = np.asarray(expected() if callable(expected) else expected)
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


def matches(got, expected, rtol=1e-6, atol=1e-8):
    """True when ``got`` equals ``expected`` (a known mistake's result) in shape and values."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    expected = np.asarray(expected, dtype=np.float64)
    return (got.shape == expected.shape and bool(np.all(np.isfinite(got)))
            and bool(np.all(np.abs(got - expected) <= atol + rtol * np.abs(expected))))


def diagnose(got, mistakes, correct=None):
    """Fail with the message of the first known mistake whose result ``got`` equals.

    ``mistakes``: (message, function of no arguments giving that mistake's result) pairs;
    a mistake whose result equals ``correct`` (a function of no arguments) on this case is
    skipped (e.g. a flipped 1 x 1 kernel is no mistake). Checked only in the grading process,
    before the plain comparison with the reference.
    """
    if not CHECKS:
        return
    right = None if correct is None else correct()
    for message, wrong in mistakes:
        bad = wrong()
        if matches(got, bad) and (right is None or not matches(right, bad)):
            raise Fail(message)


def grad_close(analytic, numeric, what, case=""):
    """Fail unless an analytic gradient matches central differences (lesson 01, Eq. 1.7).

    rel_error = max|a - n| / max(|a| + |n|), written here (not imported) so that nothing the
    student's process could patch decides it.
    """
    if not CHECKS:
        return
    analytic = as_array(analytic, what)
    numeric = np.asarray(numeric() if callable(numeric) else numeric)
    if analytic.shape != numeric.shape:
        raise Fail(f"{what} has shape {analytic.shape}, expected {numeric.shape}"
                   + (f" ({case})" if case else ""))
    a, n = analytic.astype(np.float64), numeric.astype(np.float64)
    err = float(np.max(np.abs(a - n)) / max(float(np.max(np.abs(a) + np.abs(n))), 1e-300))
    if not err < GRAD_TOL:
        raise Fail(f"gradient check of {what} failed" + (f" ({case})" if case else "")
                   + f": relative error {err:.2e} against central differences (a correct "
                   f"backward gives about 1e-9)")


def expect_tuple(result, n, what, names):
    """The student's result, or Fail unless it is a tuple of ``n`` (e.g. (out, cache))."""
    if not isinstance(result, tuple) or len(result) != n:
        raise Fail(f"{what} must return a tuple {names}, got {type(result).__name__}")
    return result


# --------------------------------------------------------------------------- messages
def where(exc, path):
    """' (your file, line N: code)' for the deepest frame of the traceback in the student's file."""
    if path is None:
        return ""
    target = str(Path(path).resolve())
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == target:
            line = frame.lineno
    if line is None:
        return ""
    try:
        code = Path(path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        code = ""
    return f" (your file, line {line}: {code})"


def describe(exc, path):
    """One line for an exception raised by (or through) the student's code."""
    at = where(exc, path)
    if isinstance(exc, Fail):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        return f"not implemented yet (NotImplementedError: {exc})"
    if isinstance(exc, SystemExit):
        return (f"your code called sys.exit({exc.code!r}){at}: a graded function must return "
                "its result, and the file must not exit when imported")
    if isinstance(exc, KeyboardInterrupt):
        return f"your code raised KeyboardInterrupt{at}"
    if isinstance(exc, ImportError) and getattr(exc, "forbidden", False):
        return f"{exc}{at}"
    return f"raised {type(exc).__name__}: {exc}{at}"


def run_part(part, student, ctx):
    """(passed, message) for one part; never raises."""
    try:
        with np.errstate(all="ignore"):
            part.run(student, ctx)
        return True, ""
    except KeyboardInterrupt:
        if ctx.mode == "direct":  # trusted code runs here: a Ctrl-C is the user's
            raise
        return False, "your code raised KeyboardInterrupt"
    except BaseException as e:  # noqa: BLE001  a crash becomes a FAIL line, never a traceback
        return False, describe(e, ctx.path)
