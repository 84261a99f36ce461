"""The shipped shapes models' accuracy on fresh shapes: ``python -m minicnn.zoo.accuracy``.

Prints each model's accuracy and confusion matrix on a test set drawn with a seed the
training never saw, plus where the weights came from (recipe and stated accuracy).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .. import io
from ..data import make_shapes
from ..train import model_accuracy
from . import MODELS, WEIGHTS_DIR

FRESH_SEED = 3000


def confusion(model, X, y, n_classes, batch_size=256):
    """counts[i, j] = images of true class i predicted as class j (eval mode)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    model.eval()
    for i in range(0, len(X), batch_size):
        pred = np.asarray(model(X[i:i + batch_size])).argmax(axis=1)
        np.add.at(counts, (y[i:i + batch_size], pred), 1)
    return counts


def main(argv=None):
    """Exit status 0; 2 with one line on stderr for a bad option or unusable shipped weights."""
    parser = argparse.ArgumentParser(prog="python -m minicnn.zoo.accuracy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="fresh test images (default 2000)")
    parser.add_argument("--seed", type=int, default=FRESH_SEED)
    args = parser.parse_args(argv)
    if args.n < 1:
        print(f"{parser.prog}: error: --n must be >= 1, got {args.n}", file=sys.stderr)
        return 2
    test = make_shapes(args.n, seed=args.seed)
    for name in ("shapes_cnn", "shapes_gap"):
        try:
            model = MODELS[name](pretrained=True)
            _, meta = io.load_arrays(WEIGHTS_DIR / f"{name}.npz")
        except io.WeightFileError as e:
            print(f"{parser.prog}: error: {e}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        acc = model_accuracy(model, test.images, test.labels)
        dt = time.perf_counter() - start
        rec = meta.get("trained", {})
        print(f"\n{name}: accuracy {acc:.4f} on {args.n} fresh shapes (seed {args.seed}), "
              f"{args.n / dt:.0f} images/s")
        print(f"  trained: {rec.get('train_images')} images x {rec.get('epochs')} epochs, "
              f"{rec.get('train_seconds')} s; stated test accuracy {rec.get('test_accuracy')}")
        counts = confusion(model, test.images, test.labels, len(model.class_names))
        width = max(len(c) for c in model.class_names)
        print("  " + " " * width + "  " + " ".join(f"{c[:8]:>8}" for c in model.class_names))
        for cname, row in zip(model.class_names, counts):
            print(f"  {cname:>{width}}  " + " ".join(f"{v:8d}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
