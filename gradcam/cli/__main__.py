"""``python -m gradcam.cli ...``: the same as the console script ``gradcam ...``."""

import sys

from .app import main

sys.exit(main())
