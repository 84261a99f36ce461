"""Assignment A6: a model-randomisation sanity check (Adebayo et al.).

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, arXiv:1810.03292. If a map
barely changes when the model's weights are randomised, it cannot be explaining those weights.
The cascading test randomises the layers from the top down, one more each step, recomputes the
map and measures how similar it stays: Spearman's rank correlation rho with the trained map.
Fill in the three functions marked ``TODO(student)``. Then

    python lessons/assignments/06_sanity.py                                 # your own check
    python -m lessons.grade A6 lessons/assignments/06_sanity.py             # the grader

Your ``check()`` compares with numbers written into this file (exit status 1 until they
match). The grader runs your file in a process of its own, with Grad-CAM as the explanation.

Rules: import only NumPy and the standard library's math, copy, itertools ...: the grader
refuses any other import, however it is spelled.

    rank(a): the ranks 0..n-1 of a's entries (flattened); tied entries share the AVERAGE rank
    rho(a, b) = Pearson's correlation of rank(a) and rank(b); 0.0 when either map is constant

Written questions (answer them in a few sentences each):
1. What does it mean that a method 'passes' the cascading randomisation test?
2. Why must tied values share the average of their ranks, for Grad-CAM maps especially?
3. In check(), randomising fc leaves rho = 1. What does that say about the 'map' used there?
"""

import numpy as np


def spearman(a, b):
    """Spearman's rank correlation of two maps of the same shape (a float)."""
    # TODO(student): 1. rank each map's values (np.argsort), 2. average the ranks of tied
    #   values (np.unique(..., return_inverse=True) and np.bincount help), 3. Pearson's
    #   correlation of the two rank vectors
    raise NotImplementedError("A6: write spearman")


def randomise_layer(model, name, rng):
    """Re-initialise layer ``name`` of ``model`` IN PLACE (returns nothing).

    For every key of model[name].params in sorted order, p = params[key]:
        params[key] = (rng.standard_normal(p.shape) * p.std()).astype(p.dtype)
    (random weights of the trained weights' scale; the order of the draws is part of the spec).
    """
    # TODO(student)
    raise NotImplementedError("A6: write randomise_layer")


def cascading_randomisation(model, layers, explain, x, c, rng):
    """rho between the trained model's maps and the maps after randomising layers[:s+1].

    Parameters
    ----------
    model : minicnn.Sequential (trained; must be left unchanged: work on a copy)
    layers : layer names, top layer first, e.g. ["fc", "conv2", "conv1"]
    explain : explain(model, x, c) -> maps (N, H, W)
    x : (N, C, H, W) inputs;  c : (N,) classes
    rng : numpy Generator, passed to randomise_layer
    Returns
    -------
    rho : (len(layers), N); row s: after randomising layers[0], ..., layers[s]
    """
    # TODO(student): explain the trained model once; copy.deepcopy(model) ONCE; then for each
    #   name: randomise_layer(copy, name, rng), explain the copy, one rho per image
    raise NotImplementedError("A6: write cascading_randomisation")


# --------------------------------------------------------------------------- your check
correct_rho = 0.210818510678  # spearman([[0, 1], [2, 2]], [[3, 1], [2, 5]]) (ties share 2.5)
correct_cascade = np.array([[ 1.          ,  1.          ],
     [-0.4138438881, -0.2323529412]])  # see check(): a map that ignores fc


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    from minicnn import Sequential
    from minicnn import layers as L

    r = np.random.default_rng(0)
    model = Sequential([("conv1", L.Conv2d(2, 4, 3, padding=1, dtype="float64")),
                        ("relu1", L.ReLU()), ("pool", L.MaxPool2d(2)), ("flat", L.Flatten()),
                        ("fc", L.Linear(16, 3, dtype="float64"))]).eval()
    for name in ("conv1", "fc"):
        for k in sorted(model[name].params):
            model[name].params[k] = r.standard_normal(model[name].params[k].shape)
    x, c = r.standard_normal((2, 2, 4, 4)), np.array([2, 0])

    def activation_map(m, x, c):
        """Not a class map at all: the channel sum of relu1 (it never looks at fc)."""
        m.forward(x, keep=["relu1"])
        return m.activations["relu1"].sum(axis=1)

    before = model["fc"].params["weight"].copy()
    try:
        rho = spearman(np.array([[0.0, 1.0], [2.0, 2.0]]), np.array([[3.0, 1.0], [2.0, 5.0]]))
        cascade = cascading_randomisation(model, ["fc", "conv1"], activation_map, x, c,
                                          np.random.default_rng(1))
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    cascade = np.asarray(cascade, dtype=float)
    ok1 = abs(float(rho) - correct_rho) < 1e-9
    ok2 = cascade.shape == correct_cascade.shape and bool(np.allclose(cascade, correct_cascade))
    ok3 = bool(np.array_equal(model["fc"].params["weight"], before))
    print(f"spearman   {'ok' if ok1 else f'WRONG: got {float(rho):.6f}'}")
    print(f"cascade    {'ok' if ok2 else 'WRONG: got ' + str(cascade.round(6).tolist())}")
    print(f"model kept {'ok' if ok3 else 'WRONG: your cascade randomised the model it was given'}")
    print("(row 0: randomising fc leaves a map that ignores fc unchanged, rho = 1: such a map "
          "fails the sanity check)")
    ok = ok1 and ok2 and ok3
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
