"""Set the BLAS/OpenMP thread count from ``--threads N`` (default 2) before NumPy or torch load.

Import this first in a benchmark: thread counts set after NumPy's BLAS has loaded have no effect.
It imports nothing heavy, so it can run before them.
"""

import os
import sys


def threads_from_argv(argv):
    """The value of ``--threads N`` / ``--threads=N`` in argv, else "2"."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "2"


THREADS = threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)
