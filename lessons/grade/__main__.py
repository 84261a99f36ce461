"""``python -m lessons.grade ...`` (or ``python path/to/lessons/grade ...`` from any folder)."""

import sys

if not __package__:  # run as a folder: put the checkout on the path, then import the package
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from lessons.grade import main
else:
    from . import main

try:
    sys.exit(main())
except BrokenPipeError:  # the reader of the report went away (``... | head``): stop quietly
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no exit-time flush error
    sys.exit(141)  # 128 + SIGPIPE, as the gradcam command line reports it
