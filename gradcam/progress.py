"""Progress bars for runs longer than a few seconds (faithfulness metrics, sanity checks, evaluate).

One place decides how progress looks: tqdm on stderr, and nothing at all when stderr is not a
terminal (a CI log, a pipe, a test), so captured output stays clean.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, total=None, desc=None, enabled=None):
    """Wrap ``iterable`` (or count to ``total`` with ``.update``) in a tqdm bar on stderr.

    ``enabled=None`` shows the bar only when stderr is a terminal; True/False force it.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False,
                file=sys.stderr, dynamic_ncols=True)
