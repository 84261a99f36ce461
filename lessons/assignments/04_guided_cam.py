"""Assignment A4: the ReLU rules of pixel-space maps, and the CAM identity (lessons 04-06).

Fill in the four functions marked ``TODO(student)``. Then

    python lessons/assignments/04_guided_cam.py                             # your own quick check
    python -m lessons.grade A4 lessons/assignments/04_guided_cam.py         # the grader

The grader compares your ReLU rules with the reference on hidden arrays, checks your GAP +
linear gradient against central differences, and checks your predicted Grad-CAM weights
against a real Grad-CAM run on random GAP networks of hidden sizes.

Rules: NumPy only. Do not import ``gradcam`` or ``minicnn.functional``.

ReLU backward rules, f = the ReLU's forward input, R = the signal from above (lesson 06):
    gradient         R_in = R * [f > 0]                                 (6.1)
    deconvnet        R_in = max(R, 0)                                   (6.2)
    guided backprop  R_in = R * [f > 0] * [R > 0]                       (6.3)
CAM head (lesson 04): A (K, u, v) -> F_k = (1/Z) sum_ij A^k_ij -> y = W F + b, Z = u*v   (4.1)
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


def check():
    """Your own quick check: the rules on a tiny example, and a gradient check."""
    from minicnn.gradcheck import numerical_vjp, rel_error

    f = np.array([-1.0, 2.0, -3.0, 4.0])
    R = np.array([1.0, -1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 5))
    A = rng.standard_normal((5, 4, 6))
    try:
        print("guided   ", guided_relu_backward(R, f) + 0.0, "(expected [0. 0. 0. 1.])")
        print("deconvnet", deconvnet_relu_backward(R, f) + 0.0, "(expected [1. 0. 1. 1.])")
        dA = gap_linear_gradient(W, 2, 4, 6)
        alpha = cam_alpha(W, 2, 4, 6)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        return
    num = numerical_vjp(lambda a: np.array((W[2] * a.mean(axis=(1, 2))).sum()), A.copy(), 1.0)
    print(f"dy^c/dA relative error {rel_error(dA, num):.1e}  (should be about 1e-10)")
    print("alpha * Z / W[c] =", np.round(alpha * 24 / W[2], 6), "(expected all ones)")


if __name__ == "__main__":
    check()
