"""A shapes network trained on permuted labels, for the data randomisation test.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292v3, Sec. 3.2:
the same architecture is trained on a copy of the data whose labels are permuted at random, so
it can only memorise; a map that still looks the same does not depend on what the model learned
from the labels. (The anchors' ImageNet models cannot be retrained here; the shapes networks
memorise a small permuted set in under a minute on 2 cores.)

    model = permuted_label_model("shapes_cnn")            # RECIPES: 512 images, 30 epochs
    model.permuted["train_accuracy_permuted"]             # 1.0: it memorised the labels
    model.permuted["test_accuracy_true"]                  # ~0.25 = chance: it learned no shape
    model = permuted_label_model("shapes_cnn", n_train=32, epochs=1)    # seconds (tests)

NOTE: the zoo's true-label recipe (``minicnn.zoo.train_shapes``: 8000 images, 5 epochs) on
permuted labels ended at 26% training accuracy (chance 25%): it had too many images and too
few steps to memorise, so its maps differed from the trained model's for a network that had
learned nothing at all, which is not the paper's test. Fewer images and more epochs memorise.

The weights are cached in the user's cache folder, never in the package: ``$GRADCAM_CACHE`` if
set, else ``$XDG_CACHE_HOME/gradcam``, else ``~/.cache/gradcam``; one file per (model, seed,
images, epochs, learning rate), written atomically, so a second call loads it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from minicnn import io
from minicnn.data import make_shapes
from minicnn.optim import Adam
from minicnn.train import fit, model_accuracy, update_bn
from minicnn.zoo import MODELS, SHAPES_CLASSES
from minicnn.zoo.train_shapes import TEST_SEED, TRAIN_SEED

__all__ = ["RECIPES", "cache_folder", "cache_path", "describe", "permuted_label_model", "recipe"]

# name -> (training images, epochs, Adam's learning rate), batch 64, no weight decay. Measured
# (seed 0, 2 cores): shapes_cnn memorised 100.0% of the permuted labels in 33 s (load average
# 2.5; 114 s at load 8), shapes_gap 98.4% in 85 s (load 6; its GAP head memorises slower)
RECIPES = {
    "shapes_cnn": (512, 30, 1e-3),
    "shapes_gap": (256, 60, 3e-3),
}


def cache_folder():
    """The cache folder: $GRADCAM_CACHE, else $XDG_CACHE_HOME/gradcam, else ~/.cache/gradcam."""
    if os.environ.get("GRADCAM_CACHE"):
        return Path(os.environ["GRADCAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradcam"


def recipe(name, n_train=None, epochs=None, lr=None):
    """(training images, epochs, learning rate) of ``name``: ``RECIPES``'s where None."""
    if name not in RECIPES:
        raise ValueError(f"no training recipe for {name!r}; use one of {', '.join(RECIPES)}")
    given = (n_train, epochs, lr)
    return tuple(r if g is None else type(r)(g) for r, g in zip(RECIPES[name], given))


def cache_path(name, seed=0, n_train=None, epochs=None, lr=None):
    """The cache file of ``permuted_label_model(name, seed, n_train, epochs, lr)``."""
    n_train, epochs, lr = recipe(name, n_train, epochs, lr)
    return cache_folder() / f"{name}-permuted-seed{seed}-n{n_train}-e{epochs}-lr{lr:g}.npz"


def permuted_label_model(name="shapes_cnn", seed=0, n_train=None, epochs=None, lr=None,
                         cache=True, progress=False, n_test=500, device="numpy"):
    """``name`` trained on permuted labels until it has memorised them (``RECIPES``).

    y_perm = y[default_rng(seed).permutation(n_train)]   (the images stay; the labels move)

    Parameters
    ----------
    name : a shapes model of ``RECIPES`` ("shapes_cnn", "shapes_gap")
    seed : seeds the permutation, the initial weights and the batch order
    n_train, epochs, lr : None: the recipe's; fewer images or epochs for a quick run
    cache : load from / save to ``cache_path(...)``
    progress : print the training progress
    n_test : fresh shapes (the zoo's test seed) for the accuracy on the true labels
    device : where to train and return the model ("numpy" or "cupy"); the cached file is the
        same for both (the weights are drawn on the host, the data stay host arrays that
        ``fit`` moves batch by batch)
    Returns
    -------
    minicnn.Sequential in eval mode on ``device``; ``model.permuted`` holds the run's facts:
    train_accuracy_permuted (how much it memorised), train_accuracy_true and test_accuracy_true
    (what it learned of the shapes: chance, 1/4, if it learned nothing), train_seconds
    """
    n_train, epochs, lr = recipe(name, n_train, epochs, lr)
    path = cache_path(name, seed, n_train, epochs, lr)
    model = MODELS[name](seed=seed).to(device)
    model.class_names = list(SHAPES_CLASSES)
    if cache and path.exists():
        arrays, meta = io.load_arrays(path)
        model.load_state_dict(arrays)
        model.permuted = meta["permuted"]
        model.eval()
        return model
    data = make_shapes(n_train, seed=TRAIN_SEED)
    labels = data.labels[np.random.default_rng(seed).permutation(n_train)]
    start = time.perf_counter()
    fit(model, Adam(model, lr=lr), data.images, labels, epochs=epochs, batch_size=64, seed=seed,
        progress=progress)
    update_bn(model, data.images)  # "precise BN", as the zoo's recipe (train_shapes.train_one)
    seconds = time.perf_counter() - start
    model.eval()
    test = make_shapes(n_test, seed=TEST_SEED)
    model.permuted = {"seed": seed, "train_images": n_train, "epochs": epochs, "lr": lr,
                      "batch_size": 64, "optimizer": "Adam", "train_seed": TRAIN_SEED,
                      "test_seed": TEST_SEED, "test_images": n_test,
                      "train_accuracy_permuted": model_accuracy(model, data.images, labels),
                      "train_accuracy_true": model_accuracy(model, data.images, data.labels),
                      "test_accuracy_true": model_accuracy(model, test.images, test.labels),
                      "chance": 1 / len(SHAPES_CLASSES), "train_seconds": round(seconds, 1)}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.save_arrays(path, model.state_dict(), dict(model.file_meta(), permuted=model.permuted))
    return model


def describe(facts):
    """One line of a permuted-label run's facts (``model.permuted``)."""
    return (f"permuted-label model: {facts['train_images']} images, {facts['epochs']} epochs, "
            f"lr {facts['lr']:g}; train accuracy on the permuted labels "
            f"{facts['train_accuracy_permuted']:.3f}, test accuracy on the true labels "
            f"{facts['test_accuracy_true']:.3f} (chance {facts['chance']:.2f})")
