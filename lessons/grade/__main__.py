"""``python -m lessons.grade ...``: the command line (see ``lessons/grade/__init__.py``)."""

import sys

from . import main

sys.exit(main())
