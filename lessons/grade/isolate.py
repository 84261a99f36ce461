"""The grading process: run a student's file in a process of its own, then grade its record.

``grade(assignment, path)`` spawns ``python -m lessons.grade.worker`` (see ``worker.py``) and
watches its files under a wall-clock limit: ``IMPORT_TIME_LIMIT`` seconds for the import (the
file's top-level code), ``PART_TIME_LIMIT`` per part. Whatever the student's code does there
(exit with status 0 through ``sys.exit`` or ``os._exit``, loop forever at top level or in a
graded function, swallow every exception with a bare ``except:``, raise KeyboardInterrupt),
this process sees only files, and a missing record, an exit or a kill is a FAIL of that part:

- the import did not finish: every part fails with the reason (no part can run);
- a part's record is missing (the process exited, or was killed at the limit): that part fails,
  and a fresh process re-imports the file and goes on with the next part.

Each part's checks then run HERE, on the recorded arrays (``harness``'s replay mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import harness

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIME_LIMIT = 120  # seconds for the worker's own start (Python, NumPy): not the student's
POLL = 0.02  # seconds between looks at the worker's folder


def _spawn(assignment, path, outdir, seed, first):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                       env.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    env.setdefault("OMP_NUM_THREADS", "1")
    err = open(outdir / "stderr.txt", "ab")  # the worker's own traceback, if it ever breaks
    cwd = outdir / "cwd"  # the student's code starts in an empty folder, not beside the records
    cwd.mkdir()
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "lessons.grade.worker", assignment.key, str(path), str(outdir),
             str(seed), str(first)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err)
    finally:
        err.close()


def _wait(proc, marker, limit):
    """'ok' when ``marker`` appears within ``limit`` s, 'exit' if the process ends first, else
    'timeout' (the process is then killed)."""
    deadline = time.monotonic() + limit
    while True:
        if marker.exists():
            return "ok"
        if proc.poll() is not None:
            return "ok" if marker.exists() else "exit"
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return "timeout"
        time.sleep(POLL)


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_student(assignment, path, seed):
    """Each part's record (log, arrays, end) or the one-line reason it has none."""
    n = len(assignment.parts)
    records = [None] * n
    with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as tmp:
        first, attempt = 0, 0
        while first < n:
            outdir = Path(tmp) / f"run{attempt}"
            outdir.mkdir()
            attempt += 1
            proc = _spawn(assignment, path, outdir, seed, first)
            try:
                if _wait(proc, outdir / "ready", STARTUP_TIME_LIMIT) != "ok":
                    tail = (outdir / "stderr.txt").read_text(errors="replace").strip()[-300:]
                    reason = f"the grader's worker did not start ({tail or 'no message'})"
                    return records[:first] + [reason] * (n - first)
                state = _wait(proc, outdir / "import.json", harness.IMPORT_TIME_LIMIT)
                if state != "ok":
                    reason = (f"importing your file took longer than {harness.IMPORT_TIME_LIMIT}"
                              " s (an endless loop at top level?)" if state == "timeout" else
                              f"your file ended the process while being imported (exit status "
                              f"{proc.returncode}: sys.exit or os._exit at top level?)")
                    return records[:first] + [reason] * (n - first)
                error = json.loads((outdir / "import.json").read_text())["error"]
                if error:
                    return records[:first] + [error] * (n - first)
                for i in range(first, n):
                    state = _wait(proc, outdir / f"part{i}.json", harness.PART_TIME_LIMIT)
                    if state == "ok":
                        records[i] = _read(outdir, i)
                        first = i + 1
                        continue
                    records[i] = (f"took longer than {harness.PART_TIME_LIMIT} s (an endless "
                                  "loop?)" if state == "timeout" else
                                  f"your code ended the process during this part (exit status "
                                  f"{proc.returncode}: sys.exit or os._exit?)")
                    first = i + 1
                    break
            finally:
                _stop(proc)
    return records


def _read(outdir, i):
    record = json.loads((outdir / f"part{i}.json").read_text())
    npz = outdir / f"part{i}.npz"
    arrays = {}
    if npz.exists():
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    return record["log"], arrays, record["end"]


def grade(assignment, path=None, solutions=False, seed=harness.HIDDEN_SEED, out=sys.stdout,
          module=None):
    """Grade one assignment; print per-part lines and a score. Returns (points, total).

    ``solutions`` grades the reference in this process; ``module`` (a trusted namespace, as
    the tests' table of typical mistakes passes) likewise; otherwise the file at ``path`` runs
    in a process of its own (``run_student``).
    """
    total = sum(p.points for p in assignment.parts)
    if solutions:
        module = assignment.reference()
        print(f"Grading {assignment.key} ({assignment.title}) -- reference implementation: "
              f"{assignment.reference_name}", file=out)
    else:
        print(f"Grading {assignment.key} ({assignment.title}) -- {path or 'a module'}", file=out)
    if module is None:
        records = run_student(assignment, Path(path).resolve(), seed)
    points = 0
    for i, part in enumerate(assignment.parts, start=1):
        if module is not None:
            ctx = harness.Context(seed, "direct", path)
            ok, msg = harness.run_part(part, harness.Student(module, ctx), ctx)
        elif isinstance(records[i - 1], str):
            ok, msg = False, records[i - 1]
        else:
            log, arrays, end = records[i - 1]
            ctx = harness.Context(seed, "replay", path, log, arrays, end)
            ok, msg = harness.run_part(part, harness.Student(None, ctx), ctx)
        points += part.points if ok else 0
        print(f"  {'PASS' if ok else 'FAIL'}  {i}. {part.title:78s} "
              f"{part.points if ok else 0}/{part.points}", file=out)
        if not ok:
            print(f"        {msg}", file=out)
            print(f"        hint: {part.hint}", file=out)
    verdict = "all parts pass" if points == total else "some parts fail"
    print(f"Score: {points}/{total} ({100 * points / total:.0f}%) -- {verdict}", file=out)
    return points, total
