"""Stale temporaries of ``minicnn.io.atomic_write``: mark the live ones, remove the dead ones.

``atomic_write(path, ...)`` writes to ``.NAME.XXXXXXXX.tmp`` beside ``path`` (NAME its base
name, XXXXXXXX ``tempfile``'s 8 random characters) and renames it over ``path``. A process
killed in between leaves that file behind, and nothing else would ever remove it (15 kills
during checkpointing once left 17.5 MB). So each write first removes the stale temporaries of
the SAME target, and only those:

- a writer holds an exclusive ``flock`` on its temporary until the rename is done; the kernel
  drops the lock when the process dies, however it dies. A temporary that can be locked is
  therefore dead, unless it is younger than ``GRACE_SECONDS`` (a writer may not have locked
  it yet: the lock follows the file's creation);
- where there is no ``fcntl`` (Windows), a temporary counts as dead after ``STALE_SECONDS``.

Other files, temporaries of other targets, and temporaries a live writer holds are left alone.
"""

from __future__ import annotations

import os
import re
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

GRACE_SECONDS = 10.0  # a temporary younger than this is never removed (its writer may be locking)
STALE_SECONDS = 3600.0  # without fcntl: a temporary older than this is taken as dead


def pattern(path):
    """The regular expression of ``atomic_write``'s temporaries for ``path`` (base names)."""
    base = os.path.basename(os.fspath(path))
    return re.compile(re.escape("." + base + ".") + r"[a-z0-9_]{8}\.tmp")


def hold(name):
    """Lock the temporary ``name`` as live; returns a handle for ``release`` (None where
    there is no fcntl)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(name, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def release(handle):
    """Drop the lock taken by ``hold`` (closing the descriptor releases it)."""
    if handle is not None:
        os.close(handle)


def _dead(full, now):
    """True if no live writer holds the temporary ``full`` (see the module docstring)."""
    try:
        age = now - os.stat(full).st_mtime
    except OSError:
        return False
    if age < GRACE_SECONDS:
        return False
    if fcntl is None:  # pragma: no cover - Windows
        return age > STALE_SECONDS
    try:
        fd = os.open(full, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live writer holds it
        return False
    finally:
        os.close(fd)
    return True


def remove_stale(path):
    """Remove the dead temporaries of ``path`` (see the module docstring); best effort.
    Returns the base names removed."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    match, now, removed = pattern(path).fullmatch, time.time(), []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        full = os.path.join(directory, entry)
        if match(entry) and _dead(full, now):
            try:
                os.unlink(full)
                removed.append(entry)
            except OSError:
                pass
    return removed
