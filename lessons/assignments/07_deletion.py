"""Assignment A7: the deletion curve and its area (Petsiuk et al.).

Petsiuk et al., "RISE", BMVC 2018, arXiv:1806.07421, the deletion metric: if a map is faithful,
deleting the pixels it calls most important first should make the class probability fall
fast. A LOW area under the deletion curve is good. Fill in the two functions marked
``TODO(student)``. Then

    python lessons/assignments/07_deletion.py                               # your own check
    python -m lessons.grade A7 lessons/assignments/07_deletion.py           # the grader

Your ``check()`` compares with numbers written into this file (exit status 1 until they
match). The grader runs your file in a process of its own, on a random network and on the
shipped model ``zoo.shapes_cnn`` with Grad-CAM's heatmaps.

Rules: import only NumPy (and the standard library's math, itertools ...): the grader refuses
any other import, however it is spelled.

    order  = np.argsort(-saliency[n].ravel(), kind="stable")        (most salient first)
    step t = 0..steps: the first (t * H * W) // steps pixels of the order set to 0 in every
             channel (the "zeros" baseline); curve[n, t] = softmax(logits)[n, c[n]]
    AUC    = the trapezoid rule on t / steps in [0, 1]

Written questions (answer them in a few sentences each):
1. Is a low or a high deletion AUC good, and why?
2. Why follow the class probability rather than the logit?
3. Which artefacts can the zeros baseline introduce?
"""

import numpy as np


def deletion_curve(model, x, saliency, c, steps=20):
    """The class probability as the most salient pixels are deleted, (N, steps + 1).

    Parameters
    ----------
    model : minicnn.Sequential in eval mode (logits = model.forward(x))
    x : (N, C, H, W) inputs;  saliency : (N, H, W) maps;  c : (N,) classes
    steps : int, the number of deletion steps (the curve has steps + 1 points)
    """
    # TODO(student): for each image: the order; a batch of steps + 1 copies of x[n], copy t
    #   with its first (t*H*W)//steps pixels zeroed in every channel; ONE forward of the batch;
    #   the softmax probability of class c[n]
    raise NotImplementedError("A7: write deletion_curve")


def auc(curve):
    """The area under each curve (N,), points at t / steps on [0, 1], trapezoid rule."""
    # TODO(student)
    raise NotImplementedError("A7: write auc")


# --------------------------------------------------------------------------- your check
# see check(): a linear model on 2 x 2 images
correct_curve = np.array([[9.1105119440e-04, 1.2339457599e-04, 2.4726231566e-03,
                           8.8079707798e-01, 5.0000000000e-01]])
correct_auc = np.array([0.2834621553])


class _Linear2x2:
    """A tiny stand-in model: logits = M @ x.ravel() for x (N, 1, 2, 2), 2 classes."""

    M = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 1.0, 1.0]])

    def forward(self, x):
        return x.reshape(len(x), -1) @ self.M.T


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = np.array([[[0.1, 0.9], [0.4, 0.3]]])  # delete (0, 1), then (1, 0), (1, 1), (0, 0)
    try:
        curve = np.asarray(deletion_curve(_Linear2x2(), x, saliency, np.array([0]), steps=4),
                           dtype=float)
        area = np.asarray(auc(correct_curve), dtype=float)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok1 = curve.shape == correct_curve.shape and bool(np.allclose(curve, correct_curve))
    ok2 = area.shape == correct_auc.shape and bool(np.allclose(area, correct_auc))
    print(f"curve {'ok' if ok1 else 'WRONG: got ' + str(curve.round(8).tolist())}")
    print(f"auc   {'ok' if ok2 else 'WRONG: got ' + str(area.round(8).tolist())}")
    if area.shape == correct_auc.shape and np.allclose(area, correct_curve.mean(axis=1)):
        print("hint: that is the mean of the points; the trapezoid rule counts the ends half")
    ok = ok1 and ok2
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
