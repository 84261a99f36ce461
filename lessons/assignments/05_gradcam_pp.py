"""Assignment A5: Grad-CAM++'s weights from the closed form (Chattopadhay et al.).

Chattopadhay et al., "Grad-CAM++", WACV 2018, arXiv:1710.11063v3, Sec. 3. Fill in the three
functions marked ``TODO(student)``. Then

    python lessons/assignments/05_gradcam_pp.py                             # your own check
    python -m lessons.grade A5 lessons/assignments/05_gradcam_pp.py         # the grader

Your ``check()`` compares with numbers written into this file (exit status 1 until they
match). The grader runs your file in a process of its own, on hidden arrays and on the
gradients of the shipped model ``zoo.shapes_cnn``, against the library.

Rules: import only NumPy (and the standard library's math, itertools ...): the grader refuses
any other import, however it is spelled (``gradcam`` is the solution key).

The paper takes Y^c = exp(S^c) (Eq. 12), S^c the class score. For a network of linear pieces
(ReLU, linear layers) the second and third derivatives of Y^c are powers of the first, and the
factor exp(S^c) cancels in alpha (Eqs. 13-19). With dA = dS^c/dA, (N, K, u, v):

    alpha^kc_ij = dA_ij^2 / (2 dA_ij^2 + (sum_ab A^k_ab) dA_ij^3)   (0 where the denominator is 0)
                                                                                   Eq. (19)
    w_k^c = sum_ij alpha^kc_ij relu(dA_ij)                    (the paper's w / exp(S^c))  Eq. (5)
    L^c_ij = relu(sum_k w_k^c A^k_ij)                                              Eq. (20)

Leave the common per-image factor exp(S^c) out of w (it changes neither alpha nor the map's
shape, and overflows float32 for a score above 88.7).

Written questions (answer them in a few sentences each):
1. Why do the second and third derivatives reduce to powers of the first (Eqs. 13-19)?
2. When do Grad-CAM and Grad-CAM++ weight a channel differently (several objects of the
   same class in one image)?
3. Why can the factor exp(S^c) be left out of w?
"""

import numpy as np


def gradcam_pp_alpha(A, dA):
    """Eq. (19): the per-position coefficients alpha (N, K, u, v); 0 where the denominator is 0."""
    # TODO(student): the sum over (a, b) is one number per image and channel (keepdims=True);
    #   never evaluate a division by zero (np.where around the denominator)
    raise NotImplementedError("A5: write gradcam_pp_alpha (Eq. 19)")


def gradcam_pp_weights(A, dA):
    """Eq. (5): w (N, K) = sum over positions of alpha * relu(dA)."""
    # TODO(student)
    raise NotImplementedError("A5: write gradcam_pp_weights (Eq. 5)")


def gradcam_pp_map(A, dA):
    """Eq. (20): relu(sum_k w_k A^k) -> (N, u, v)."""
    # TODO(student)
    raise NotImplementedError("A5: write gradcam_pp_map (Eq. 20)")


# --------------------------------------------------------------------------- your check
# One image, two channels of 2 x 2, with a zero gradient (0/0 -> 0) and a negative one:
A = np.array([[[[1.0, 0.0], [2.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]]])
DA = np.array([[[[1.0, 0.0], [-1.0, 2.0]], [[0.5, 1.0], [0.0, -2.0]]]])
correct_alpha = np.array([[[[ 0.1666666667,  0.          ],
       [-0.5         ,  0.1         ]],
    
      [[ 0.25        ,  0.1666666667],
       [ 0.          , -0.1666666667]]]])
correct_w = np.array([[0.3666666667, 0.2916666667]])
correct_map = np.array([[[0.3666666667, 0.875       ],
      [1.025       , 0.3666666667]]])


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    def rel_error(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))

    try:
        got = {"alpha": gradcam_pp_alpha(A, DA), "w": gradcam_pp_weights(A, DA),
               "map": gradcam_pp_map(A, DA)}
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok = True
    for name, want in (("alpha", correct_alpha), ("w", correct_w), ("map", correct_map)):
        g = np.asarray(got[name], dtype=float)
        good = g.shape == want.shape and bool(np.all(np.isfinite(g))) and rel_error(g, want) < 1e-9
        ok &= good
        print(f"{name:6s} {'ok' if good else 'WRONG: got ' + str(g.tolist())}")
    w = np.asarray(got["w"], dtype=float)
    if w.shape == correct_w.shape and rel_error(w, DA.mean(axis=(2, 3))) < 1e-9:
        print("hint: these are Grad-CAM's weights (the mean of dA); Eq. (5) weights relu(dA) by "
              "alpha and sums")
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
