"""A shapes network trained on permuted labels, for the data randomisation test.

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292v3, Sec. 3.2:
the same architecture is trained on a copy of the data whose labels are permuted at random, so
it can only memorise; a map that still looks the same does not depend on what the model learned
from the labels. (The anchors' ImageNet models cannot be retrained here; the shapes networks
train in minutes on 2 cores with ``minicnn.zoo.train_shapes``'s recipe.)

    model = permuted_label_model("shapes_cnn")                 # the recipe: 8000 images, 5 epochs
    model = permuted_label_model("shapes_cnn", n_train=256, epochs=1)   # seconds (tests)

The weights are cached in the user's cache folder, never in the package: ``$GRADCAM_CACHE`` if
set, else ``$XDG_CACHE_HOME/gradcam``, else ``~/.cache/gradcam``; one file per (model, seed,
images, epochs), written atomically, so a second call loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minicnn import io
from minicnn.data import make_shapes
from minicnn.optim import Adam
from minicnn.train import fit, model_accuracy, update_bn
from minicnn.zoo import MODELS, SHAPES_CLASSES
from minicnn.zoo.train_shapes import RECIPES, TRAIN_SEED

__all__ = ["cache_folder", "permuted_label_model"]


def cache_folder():
    """Where cached files go: $GRADCAM_CACHE, else $XDG_CACHE_HOME/gradcam, else ~/.cache/gradcam."""
    if os.environ.get("GRADCAM_CACHE"):
        return Path(os.environ["GRADCAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradcam"


def permuted_label_model(name="shapes_cnn", seed=0, n_train=None, epochs=None, cache=True,
                         progress=False, device="numpy"):
    """``name`` trained with the recipe of ``minicnn.zoo.train_shapes`` on permuted labels.

    y_perm = y[default_rng(seed).permutation(n_train)]   (the images stay; the labels move)

    Parameters
    ----------
    name : a shapes model of ``train_shapes.RECIPES`` ("shapes_cnn", "shapes_gap")
    seed : seeds the permutation, the initial weights and the batch order
    n_train, epochs : None: the recipe's (8000 images, 5 epochs); fewer for a quick run
    cache : load from / save to ``cache_folder()``
    progress : print the training progress
    device : where to train and return the model ("numpy" or "cupy"); the cached file is the
        same for both (the weights are drawn on the host, the data stay host arrays that
        ``fit`` moves batch by batch)
    Returns
    -------
    minicnn.Sequential in eval mode on ``device``; ``model.permuted`` holds the run's facts
    (train accuracy on the permuted labels: how much it memorised)
    """
    if name not in RECIPES:
        raise ValueError(f"no training recipe for {name!r}; use one of {', '.join(RECIPES)}")
    n_recipe, e_recipe, lr = RECIPES[name]
    n_train = n_recipe if n_train is None else int(n_train)
    epochs = e_recipe if epochs is None else int(epochs)
    path = cache_folder() / f"{name}-permuted-seed{seed}-n{n_train}-e{epochs}.npz"
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
    fit(model, Adam(model, lr=lr), data.images, labels, epochs=epochs, batch_size=64, seed=seed,
        progress=progress)
    update_bn(model, data.images)
    model.eval()
    model.permuted = {"seed": seed, "train_images": n_train, "epochs": epochs, "lr": lr,
                      "train_seed": TRAIN_SEED,
                      "train_accuracy_permuted": model_accuracy(model, data.images, labels)}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.save_arrays(path, model.state_dict(), dict(model.file_meta(), permuted=model.permuted))
    return model
