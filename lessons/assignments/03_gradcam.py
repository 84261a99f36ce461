"""Assignment A3: Grad-CAM from a model (Eqs. 1-2), and the counterfactual MAP (lessons 05, 07).

Fill in the four functions marked ``TODO(student)``. Then

    python lessons/assignments/03_gradcam.py                                # your own check
    python -m lessons.grade A3 lessons/assignments/03_gradcam.py            # the grader

Your ``check()`` runs your functions on a small float64 network and compares with numbers
written into this file (exit status 1 until they match). The grader runs your file in a
process of its own, on hidden random arrays, on a random network and on the shipped model
``zoo.shapes_cnn`` at two layers, and compares with the library there.

Rules: import only NumPy (and the standard library's math, itertools ...). Use the model you
are given through its own methods: ``model.forward(x, keep=[layer])``,
``model.activations[layer]``, ``model.backward(dy, stop_at=layer, need_dw=False)``. The
grader refuses any other import, however it is spelled: ``gradcam`` is the solution key.

Selvaraju et al., arXiv:1610.02391v4 (A: (N, K, u, v) activations, Z = u*v, y^c the class
score BEFORE the softmax):
    alpha_k^c = (1/Z) sum_{i,j} dy^c/dA^k_ij                              Eq. (1)
    L^c = ReLU( sum_k alpha_k^c A^k )                                     Eq. (2)
    counterfactual: Eq. (1) with -dy^c/dA, then Eq. (2)                  (lesson 07, Eq. 7.1)

Written questions (answer them in a few sentences each):
1. Why seed the backward with the one-hot e_c rather than the gradient of the softmax?
2. Your weights come out exactly 49 times too large on a 7 x 7 layer. What did you do, and
   does it change the normalised heatmap?
3. Why is ReLU(-sum_k alpha_k A^k) the counterfactual map, and not -ReLU(sum_k alpha_k A^k)?
"""

import numpy as np


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
    #                2. the seed dy = dy^c/dlogits (row n: the derivative of y^{c[n]}, the
    #                   score before the softmax, with respect to every logit)
    #                3. dA = model.backward(dy, stop_at=layer, need_dw=False)
    raise NotImplementedError("A3: write class_score_gradient (lesson 05, section 1)")


def grad_cam_weights(A, dA):
    """Eq. (1): alpha (N, K) from the gradient dA = dy^c/dA, (N, K, u, v). A is unused."""
    # TODO(student)
    raise NotImplementedError("A3: write grad_cam_weights (Eq. 1)")


def grad_cam_map(A, alpha):
    """Eq. (2): ReLU(sum_k alpha[n, k] * A[n, k]) -> (N, u, v)."""
    # TODO(student)
    raise NotImplementedError("A3: write grad_cam_map (Eq. 2)")


def counterfactual_map(model, x, c, layer):
    """The counterfactual explanation's map (N, u, v): where evidence AGAINST class c lies.

    Lesson 07, Eq. 7.1: Eq. (1)'s weights from the negated gradient -dy^c/dA, then Eq. (2).
    """
    # TODO(student): compose your three functions above
    raise NotImplementedError("A3: write counterfactual_map (lesson 07, Eq. 7.1)")


# --------------------------------------------------------------------------- your check
def tiny_model():
    """conv1 (2 -> 4, 3 x 3) relu1 pool (2 x 2) flat fc (16 -> 3), float64, from seed 0."""
    from minicnn import Sequential
    from minicnn import layers as L

    r = np.random.default_rng(0)
    net = Sequential([("conv1", L.Conv2d(2, 4, 3, padding=1, dtype="float64")),
                      ("relu1", L.ReLU()), ("pool", L.MaxPool2d(2)), ("flat", L.Flatten()),
                      ("fc", L.Linear(16, 3, dtype="float64"))]).eval()
    for name in ("conv1", "fc"):
        for k in sorted(net[name].params):
            net[name].params[k] = r.standard_normal(net[name].params[k].shape)
    return net, r.standard_normal((2, 2, 4, 4)), np.array([2, 0])  # model, x, classes


# Expected results on tiny_model() at layer "relu1" (A: (2, 4, 4, 4), Z = 16):
correct_alpha = np.array([[ 0.0581165314,  0.1395274202,  0.1795077809, -0.23462971  ],
     [ 0.0737596363, -0.0723280613,  0.1213545483,  0.0409952819]])
correct_map = np.array([[[0.          , 1.1750986647, 1.4598658559, 0.1520228412],
      [0.3369453643, 0.          , 0.          , 0.1260120659],
      [1.0838068871, 0.8082144528, 0.4901023813, 0.3767554095],
      [0.3805705123, 1.0753085815, 0.          , 0.          ]],
    
     [[0.5107003664, 0.1842351773, 0.8001646122, 0.          ],
      [0.251841331 , 0.6681680602, 0.8279065252, 0.7774299657],
      [0.4722541751, 0.9124501509, 0.1109305888, 0.1317183609],
      [0.2982277892, 0.6382314403, 0.5161790273, 0.1914330397]]])
# (two typical mistakes: the weights of the seeds dp_c/dlogits and dlog p_c/dlogits)
alpha_softmax_seed = np.array(
    [[-4.6329023058e-06, 6.2743666140e-05, 1.7222811441e-05, -8.1629808927e-05],
     [8.6365927442e-05, -1.1696587921e-03, -3.2106528133e-04, 1.5217316676e-03]])
alpha_log_softmax_seed = np.array(
    [[-4.6342752114e-06, 6.2762259481e-05, 1.7227915217e-05, -8.1653998952e-05],
     [8.6848094608e-05, -1.1761888101e-03, -3.2285773747e-04, 1.5302272523e-03]])
correct_counterfactual = np.array([[[0.420177039 , 0.          , 0.          , 0.          ],
      [0.          , 0.2544035401, 0.4782596785, 0.          ],
      [0.          , 0.          , 0.          , 0.          ],
      [0.          , 0.          , 0.          , 0.          ]],
    
     [[0.          , 0.          , 0.          , 0.030733009 ],
      [0.          , 0.          , 0.          , 0.          ],
      [0.          , 0.          , 0.          , 0.          ],
      [0.          , 0.          , 0.          , 0.          ]]])


def check():
    """Compare with the numbers above; exit status 0 only when all match."""
    import sys

    def rel_error(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-300))

    model, x, c = tiny_model()
    try:
        A, dA = class_score_gradient(model, x, c, "relu1")
        alpha = np.asarray(grad_cam_weights(A, dA), dtype=float)
        cam = np.asarray(grad_cam_map(A, correct_alpha), dtype=float)
        cf = np.asarray(counterfactual_map(model, x, c, "relu1"), dtype=float)
    except NotImplementedError as e:
        print("not implemented yet:", e)
        sys.exit(1)
    ok = True
    for name, got, want in (("alpha", alpha, correct_alpha), ("map", cam, correct_map),
                            ("counterfactual", cf, correct_counterfactual)):
        good = got.shape == want.shape and rel_error(got, want) < 1e-6
        ok &= good
        print(f"{name:15s} {'ok' if good else 'WRONG'}"
              + (f"  relative error {rel_error(got, want):.1e}" if got.shape == want.shape
                 else f"  shape {got.shape}, expected {want.shape}"))
    if alpha.shape == correct_alpha.shape and rel_error(alpha, 16 * correct_alpha) < 1e-6:
        print("hint: your weights are exactly Z = u*v = 16 times too large: Eq. (1) AVERAGES "
              "over the positions")
    if cam.shape == correct_map.shape and rel_error(cam * 4, correct_map) < 1e-6:
        print("hint: your map is exactly K = 4 times too small: Eq. (2) SUMS over k")
    for wrong in (alpha_softmax_seed, alpha_log_softmax_seed):
        if alpha.shape == wrong.shape and rel_error(alpha, wrong) < 1e-6:
            print("hint: these are the weights of a softmax seed: Grad-CAM differentiates the "
                  "class SCORE y^c before the softmax, so dy^c/dlogits is the one-hot e_c")
    print("all checks pass: now run the grader" if ok else "some checks fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    check()
