"""Assignment A3: Grad-CAM's weights and map (Eqs. 1-2), the counterfactual, and the
gradient that feeds them (lessons 05 and 07).

Fill in the four functions marked ``TODO(student)``. Then

    python lessons/assignments/03_gradcam.py                                # your own quick check
    python -m lessons.grade A3 lessons/assignments/03_gradcam.py            # the grader

The grader checks each function on hidden random arrays, checks your dy^c/dA against
central differences on a small float64 network, and finally composes your four functions
into Grad-CAM on the shipped model ``zoo.shapes_cnn`` and compares the map with the
reference, at two layers.

Rules: use NumPy and the model's own methods (``model.forward``, ``model.activations``,
``model.backward``). Do not import ``gradcam``: it is the solution key.

Selvaraju et al., arXiv:1610.02391v4 (A: (N, K, u, v) activations, Z = u*v):
    alpha_k^c = (1/Z) sum_{i,j} dy^c/dA^k_ij                              Eq. (1)
    L^c = ReLU( sum_k alpha_k^c A^k )                                     Eq. (2)
    counterfactual: alpha_k^c = (1/Z) sum_{i,j} -dy^c/dA^k_ij             (lesson 07, Eq. 7.1)
"""

import numpy as np  # noqa: F401  (you will need it)


def grad_cam_weights(A, dA):
    """Eq. (1): alpha (N, K) from the gradient dA = dy^c/dA, (N, K, u, v). A is unused."""
    # TODO(student): the spatial average of dA, one number per image and channel
    raise NotImplementedError("A3: write grad_cam_weights (Eq. 1)")


def grad_cam_map(A, alpha):
    """Eq. (2): ReLU(sum_k alpha[n, k] * A[n, k]) -> (N, u, v)."""
    # TODO(student): weight every channel, SUM over k (not mean), then the ReLU
    raise NotImplementedError("A3: write grad_cam_map (Eq. 2)")


def counterfactual_weights(A, dA):
    """Lesson 07, Eq. 7.1: weights from the NEGATED gradient, (N, K)."""
    # TODO(student)
    raise NotImplementedError("A3: write counterfactual_weights (Eq. 7.1)")


def class_score_gradient(model, x, c, layer):
    """A and dA = dy^c/dA at the output of ``layer``, for one class per image.

    Parameters
    ----------
    model : minicnn.Sequential, already in eval mode
    x : (N, C, H, W) input
    c : (N,) int array, the class to explain for each image
    layer : name of a layer, e.g. "relu4"
    Returns
    -------
    A : (N, K, u, v) the layer's output;  dA : (N, K, u, v) the gradient of y^c there
    """
    # TODO(student): 1. logits = model.forward(x, keep=[layer]);  A = model.activations[layer]
    #                2. the seed dy = dy^c/dlogits: one-hot, row n has its 1 in column c[n]
    #                3. dA = model.backward(dy, stop_at=layer, need_dw=False)
    raise NotImplementedError("A3: write class_score_gradient (lesson 05, section 1)")


def check():
    """Your own quick check on the shipped model (compare with lesson 05's figures)."""
    from minicnn import zoo
    from minicnn.data import make_scenes

    model = zoo.shapes_cnn(pretrained=True)
    scenes = make_scenes(2, seed=7)
    try:
        A, dA = class_score_gradient(model, scenes.images, scenes.labels[:, 0], "relu4")
        alpha = grad_cam_weights(A, dA)
        cam = grad_cam_map(A, alpha)
        cf = grad_cam_map(A, counterfactual_weights(A, dA))
    except NotImplementedError as e:
        print("not implemented yet:", e)
        return
    print("A", A.shape, "alpha", alpha.shape, "map", cam.shape, "(expected (2, 16, 16))")
    print("map >= 0:", bool((cam >= 0).all()), "  Grad-CAM and counterfactual never overlap:",
          bool((cam * cf).max() == 0))


if __name__ == "__main__":
    check()
