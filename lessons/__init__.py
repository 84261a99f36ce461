"""Lessons and assignments: learn Grad-CAM from the first convolution to cross-checking.

The numbered lessons ``lessons/NN_slug.py`` are scripts in jupytext's percent format: run one
with ``python lessons/01_convolution.py`` (``SMOKE=1`` for a few-second reduced run) or open
it as a notebook through jupytext. The assignments live in ``lessons/assignments/`` and are
graded by ``python -m lessons.grade ASSIGNMENT path/to/student_file.py`` (see ``grade/``).
This ``__init__`` only makes ``python -m lessons.grade`` work from the repository root.
"""
