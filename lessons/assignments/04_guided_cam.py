"""Assignment A4: the ReLU rules of pixel-space maps, and the CAM identity (lessons 04-06).

Fill in the four functions marked ``TODO(student)``. Then

    python lessons/assignments/04_guided_cam.py                             # your own quick check
    python -m lessons.grade A4 lessons/assignments/04_guided_cam.py         # the grader

The grader runs your file in a process of its own, compares your ReLU rules with the
reference on hidden arrays, checks your GAP + linear gradient against central differences of
the library's forward, and checks your predicted Grad-CAM weights
against a real Grad-CAM run on random GAP networks of hidden sizes.

Your ``check()`` compares with numbers written into this file (exit status 1 until they match).

Rules: import only NumPy (and the standard library's math, itertools ...): the grader refuses
any other import, however it is spelled (the library is the solution key). Lesson 06 states
the rules and prints no code for them.

ReLU backward rules, f = the ReLU's forward input, R = the signal from above (lesson 06):
    gradient         R_in = R * [f > 0]                                 (6.1)
    deconvnet        R_in = max(R, 0)                                   (6.2)
    guided backprop  R_in = R * [f > 0] * [R > 0]                       (6.3)
CAM head (lesson 04): A (K, u, v) -> F_k = (1/Z) sum_ij A^k_ij -> y = W F + b, Z = u*v   (4.1)

Written questions (answer them in a few sentences each):
1. Which of the three ReLU rules computes a derivative? Why are the other two used?
2. On a GAP + linear head, why is alpha_k = w_k^c / Z, and when does the factor 1/Z matter?
3. Why take ReLU'(0) = 0, and why does the grader test inputs that are exactly 0?
"""

import numpy as np


def guided_relu_backward(dout, x):
    """Guided backprop's rule (6.3). dout: the signal from above; x: the ReLU's forward input."""
    # TODO(student): pass dout only where the forward input was positive AND dout is positive
    raise NotImplementedError("A4: write guided_relu_backward (lesson 06, Eq. 6.3)")


def deconvnet_relu_backward(dout, x):
    """Deconvnet's rule (6.2); x is unused (the rule ignores the forward pass)."""
    # TODO(student)
    raise NotImplementedError("A4: write deconvnet_relu_backward (lesson 06, Eq. 6.2)")


def gap_linear_gradient(W, c, u, v):
    """dy^c/dA for the head A -> global average pooling -> Linear(W, b).

    Parameters
    ----------
    W : (classes, K) the linear layer's weight (PyTorch layout: (out, in))
    c : int, the class
    u, v : the height and width of A
    Returns
    -------
    dA : (K, u, v), the gradient of y^c with respect to every entry of A
    """
    # TODO(student): differentiate (4.1): which entries of W does y^c use, and how much does
    #   one position (i, j) of channel k contribute to F_k?
    raise NotImplementedError("A4: write gap_linear_gradient (lesson 04, Eq. 4.1)")


def cam_alpha(W, c, u, v):
    """The Grad-CAM weights alpha^c (K,) that Eq. (1) gives on this head: the CAM identity.

    (On a GAP + linear head, Grad-CAM needs no backward pass at all: lesson 05, section 5.)
    """
    # TODO(student): average your gap_linear_gradient over the positions, or do the algebra
    raise NotImplementedError("A4: write cam_alpha (lesson 05, the CAM identity)")


# Small cases with exact numbers (the rules on four entries; a head with W (3, 2), Z = 2 x 2):
F_IN = np.array([-1.0, 2.0, -3.0, 4.0, 0.0])  # the ReLU's forward input (0 counts as inactive)
R = np.array([1.0, -1.0, 1.0, 1.0, 1.0])  # the signal from above
correct_guided = np.array([0.0, 0.0, 0.0, 1.0, 0.0])
correct_deconvnet = np.array([1.0, 0.0, 1.0, 1.0, 1.0])
W_HEAD = np.array([[1.0, -2.0], [4.0, 8.0], [-0.5, 2.0]])
correct_dA = np.array([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]])  # class 1, u = v = 2
correct_alpha = np.array([1.0, 2.0])


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    try:
        got = {"guided": guided_relu_backward(R, F_IN),
               "deconvnet": deconvnet_relu_backward(R, F_IN),
               "dy^c/dA": gap_linear_gradient(W_HEAD, 1, 2, 2), "alpha": cam_alpha(W_HEAD, 1, 2, 2)}
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok = True
    for name, want in (("guided", correct_guided), ("deconvnet", correct_deconvnet),
                       ("dy^c/dA", correct_dA), ("alpha", correct_alpha)):
        g = np.asarray(got[name], dtype=float) + 0.0
        good = g.shape == want.shape and bool(np.allclose(g, want))
        ok &= good
        print(f"{name:10s} {'ok' if good else 'WRONG: got ' + str(g.tolist())}")
    if np.allclose(np.asarray(got["dy^c/dA"], dtype=float), 4 * correct_dA):
        print("hint: dy^c/dA is exactly Z = u*v = 4 times too large: the average passes 1/Z to "
              "each position")
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
