"""A4, ``lessons/assignments/04_guided_cam.py``: the ReLU rules of pixel maps, the CAM identity.

The student writes (lessons 04-06) ``guided_relu_backward(dout, x)`` (guided backprop,
Springenberg et al., arXiv:1412.6806, lesson 06 Eq. 6.3), ``deconvnet_relu_backward(dout, x)``
(Eq. 6.2), ``gap_linear_gradient(W, c, u, v) -> dy^c/dA`` (K, u, v) for a GAP + linear head
(lesson 04, Eq. 4.1), and ``cam_alpha(W, c, u, v)``: the Grad-CAM weights (arXiv:1610.02391v4,
Eq. 1) on that head, w^c / Z with Z = u*v (CAM, arXiv:1512.04150). Lesson 06 states the rules
and prints no code for them. The file may import NumPy only; ``--solutions`` grades thin
compositions of library calls (``reference``).

Parts (7 points):
    1. guided_relu_backward on 4 hidden arrays (2), against
       ``minicnn.functional.relu_backward(dout, x > 0, "guided")``; the plain gradient and the
       deconvnet rule get their own messages.
    2. deconvnet_relu_backward on the same arrays (1), against the "deconvnet" rule.
    3. gap_linear_gradient on 3 hidden heads (2): a gradient check against central differences
       of the library's GAP and linear forwards (no bias); w^c at every position (Z times too
       large) gets its own message.
    4. cam_alpha on 3 hidden networks (2): against the weights of a real
       ``gradcam.grad_cam(net, x, c, layer="relu")`` run; alpha == w^c (CAM's weight, the
       factor Z forgotten) gets its own message.

Hidden cases: case k draws from ``ctx.rng(k)``.
    parts 1-2: k = 1000..1003; x and dout standard normal of a 3-D shape, each size in 1..5,
            with about 10% of x set to exactly 0 (ReLU'(0) = 0, as in PyTorch).
    part 3: k = 1100..1102; classes, K, u, v in 2..5; W (classes, K) and A (K, u, v) standard
            normal; c in 0..classes - 1.
    part 4: k = 1200..1202; K, u, v, classes in 2..6; a float64 net conv (2 -> K, 3 x 3,
            padding 1) relu gap fc (K -> classes) initialised from the same generator;
            x (1, 2, u, v) standard normal; c in 0..classes - 1.
"""

from __future__ import annotations

import types

import numpy as np

from .harness import Assignment, Part, close, diagnose, grad_close


def _rule(dout, x, rule):
    from minicnn import functional

    return functional.relu_backward(dout, x > 0, rule)


def a4_rule(student, ctx, rule):
    fn = student.guided_relu_backward if rule == "guided" else student.deconvnet_relu_backward
    for k in range(4):
        r = ctx.rng(1000 + k)
        shape = tuple(int(t) for t in r.integers(1, 6, 3))
        x, dout = r.standard_normal(shape), r.standard_normal(shape)
        x[r.random(shape) < 0.1] = 0.0  # ReLU'(0) = 0, as in PyTorch
        got = fn(dout, x)
        if rule == "guided":
            diagnose(got, [("that is the plain gradient (6.1): guided backprop ALSO zeroes the "
                            "negative signals from above", lambda: _rule(dout, x, "standard")),
                           ("that is the deconvnet rule (6.2): guided backprop ALSO needs the "
                            "unit active in the forward pass", lambda: _rule(dout, x,
                                                                             "deconvnet"))])
        close(got, lambda: _rule(dout, x, rule), "dx",
              case=f"shape {shape}, some forward inputs exactly 0")


def _gap_fc(W, c):
    """y^c(A) for A (K, u, v), from the library's GAP and linear forwards."""
    from minicnn import functional

    def f(A):
        F, _ = functional.global_avg_pool_forward(A[None])
        y, _ = functional.linear_forward(F, W)
        return y[0, c]

    return f


def a4_gap_gradient(student, ctx):
    from minicnn.gradcheck import numerical_vjp

    for k in range(3):
        r = ctx.rng(1100 + k)
        classes, K, u, v = (int(t) for t in r.integers(2, 6, 4))
        W, c = r.standard_normal((classes, K)), int(r.integers(0, classes))
        A = r.standard_normal((K, u, v))
        case = f"W {W.shape}, c = {c}, u x v = {u} x {v}"
        got = student.gap_linear_gradient(W, c, u, v)
        diagnose(got, [(f"dy^c/dA is exactly Z = u*v = {u * v} times too large: the average "
                        "F_k = (1/Z) sum_ij A^k_ij passes 1/Z to each position",
                        lambda: np.broadcast_to(W[c][:, None, None], (K, u, v)))])
        grad_close(got, lambda: numerical_vjp(_gap_fc(W, c), A, 1.0), "dy^c/dA", case)


def a4_cam_alpha(student, ctx):
    import gradcam
    from minicnn import Sequential
    from minicnn import layers as L

    for k in range(3):
        r = ctx.rng(1200 + k)
        K, u, v, classes = (int(t) for t in r.integers(2, 7, 4))
        net = Sequential([("conv", L.Conv2d(2, K, 3, padding=1, rng=r, dtype="float64")),
                          ("relu", L.ReLU()), ("gap", L.GlobalAvgPool2d()),
                          ("fc", L.Linear(K, classes, rng=r, dtype="float64"))]).eval()
        x = r.standard_normal((1, 2, u, v))
        c = int(r.integers(0, classes))
        W = net["fc"].params["weight"]
        got = student.cam_alpha(W, c, u, v)
        diagnose(got, [("alpha equals w^c exactly: that is CAM's weight, not Eq. (1)'s average "
                        f"of the gradient over the {u} x {v} positions", lambda: W[c])])
        close(got, lambda: gradcam.grad_cam(net, x, c, layer="relu").weights[0], "alpha",
              case=f"a random GAP net, K = {K}, u x v = {u} x {v}")


def reference():
    """For ``--solutions``: the four functions as thin compositions of library calls."""
    import gradcam
    from minicnn import functional

    def gap_linear_gradient(W, c, u, v):
        classes, K = W.shape
        _, cache = functional.linear_forward(np.zeros((1, K), dtype=W.dtype), W)
        seed = np.eye(classes, dtype=W.dtype)[[c]]  # (1, classes): dy^c/dy
        dF, _, _ = functional.linear_backward(seed, cache, need_dw=False)
        return functional.global_avg_pool_backward(dF, (1, K, u, v))[0]

    return types.SimpleNamespace(
        guided_relu_backward=lambda dout, x: functional.relu_backward(dout, x > 0, "guided"),
        deconvnet_relu_backward=lambda dout, x: functional.relu_backward(dout, x > 0, "deconvnet"),
        gap_linear_gradient=gap_linear_gradient,
        cam_alpha=lambda W, c, u, v: gradcam.grad_cam_weights(
            None, gap_linear_gradient(W, c, u, v)[None])[0])


A4 = Assignment("A4", "04_guided_cam.py", "guided ReLU rule, deconvnet rule, the CAM identity",
                ("guided_relu_backward", "deconvnet_relu_backward", "gap_linear_gradient",
                 "cam_alpha"),
                (), reference,
                "minicnn.functional.relu_backward, linear/GAP backward, gradcam.grad_cam_weights", [
    Part("guided_relu_backward: Eq. (6.3) on hidden arrays", 2,
         "the signal passes only where BOTH hold: the unit was active in the forward pass (an "
         "input of exactly 0 counts as inactive) and the signal from above is positive",
         lambda m, c: a4_rule(m, c, "guided")),
    Part("deconvnet_relu_backward: Eq. (6.2) on hidden arrays", 1,
         "the deconvnet rule looks only at the signal from above, never at the forward input",
         lambda m, c: a4_rule(m, c, "deconvnet")),
    Part("gap_linear_gradient: gradient check of dy^c/dA on hidden heads", 2,
         "differentiate Eq. (4.1): which row of W does y^c use, and how much does ONE position "
         "(i, j) change the average F_k?",
         a4_gap_gradient),
    Part("cam_alpha: the CAM identity against a real Grad-CAM run", 2,
         "Eq. (1) averages dy^c/dA over the positions, and on this head that gradient is the "
         "same at every position (part 3); mind the factor Z = u*v (lesson 05, section 5)",
         a4_cam_alpha),
])
