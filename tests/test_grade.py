"""The assignments and their grader (lessons/assignments/, lessons/grade/).

- the grader passes the reference (``--solutions``, run from another folder), and a model
  solution written as a student would, in the student's own process, for every assignment;
- it fails every untouched stub (a FAIL line per part, no traceback), and each stub's own
  ``check()`` exits non-zero;
- it catches every mistake of the table MISTAKES below, with the message for that mistake;
- it is hardened (issue 15): exits, endless loops, a bare ``except:``, KeyboardInterrupt,
  forbidden imports however spelled, and a patched ``np.all`` all end as FAIL lines.
"""

import io
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `lessons` is a package of the checkout, not an installed one
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grade_solutions as S  # noqa: E402  (tests/grade_solutions.py)
from lessons import grade  # noqa: E402
from lessons.grade import harness  # noqa: E402

KEYS = tuple(grade.ASSIGNMENTS)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _grade_file(key, source, tmp_path):
    path = tmp_path / "student.py"
    path.write_text(source)
    out = io.StringIO()
    points, total = grade.grade(grade.ASSIGNMENTS[key], path, out=out)
    return points, total, out.getvalue()


def test_grade_has_seven_assignments_and_their_files():
    assert KEYS == ("A1", "A2", "A3", "A4", "A5", "A6", "A7")
    for a in grade.ASSIGNMENTS.values():
        assert (grade.ASSIGNMENTS_DIR / a.file).is_file()


def test_grade_passes_the_reference_from_any_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lessons.grade", "--solutions"], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert r.stdout.count("-- all parts pass") == len(KEYS)


def test_grade_runs_as_a_folder_from_anywhere(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, str(ROOT / "lessons" / "grade"), "--list"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert all(f"{k}  lessons/assignments/" in r.stdout for k in KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_grade_model_solution_scores_100_in_its_own_process(key, tmp_path):
    points, total, text = _grade_file(key, S.solution_source(key), tmp_path)
    assert points == total, text
    assert "Traceback" not in text


@pytest.mark.parametrize("key", KEYS)
def test_grade_fails_each_untouched_stub(key, tmp_path):
    """A1's stub through the student's process (the path every file takes, and that the model
    solutions take for all seven); the others in-process, to keep the suite fast."""
    a = grade.ASSIGNMENTS[key]
    path = grade.ASSIGNMENTS_DIR / a.file
    if key == "A1":
        points, total, text = _grade_file(key, path.read_text(), tmp_path)
    else:
        out = io.StringIO()
        points, total = grade.grade(a, module=_stub(key), out=out)
        text = out.getvalue()
    assert points == 0 and f"Score: 0/{total} (0%)" in text
    assert text.count("  FAIL  ") == len(a.parts) == text.count("not implemented yet")
    assert text.count("hint: ") == len(a.parts) and "Traceback" not in text


def test_grade_each_stubs_check_exits_nonzero_and_each_solutions_check_zero(tmp_path):
    """check() compares with numbers written into the file: 1 on the stub, 0 once solved, 1
    with a typical mistake, and then it names the mistake."""
    runner = ("import runpy, sys\ncodes = []\nfor p in sys.argv[1:]:\n    try:\n"
              "        runpy.run_path(p, run_name='__main__')\n        codes.append(None)\n"
              "    except SystemExit as e:\n        codes.append(e.code)\nprint(codes)\n")
    paths = [str(grade.ASSIGNMENTS_DIR / a.file) for a in grade.ASSIGNMENTS.values()]
    for key in KEYS:
        (tmp_path / f"{key}.py").write_text(S.solution_source(key))
        paths.append(str(tmp_path / f"{key}.py"))
    for name, (key, body) in CHECK_MISTAKES.items():  # a solved file with one mistake
        (tmp_path / f"{name}.py").write_text(S.solution_source(key).replace(
            'if __name__ == "__main__":', body + '\nif __name__ == "__main__":'))
        paths.append(str(tmp_path / f"{name}.py"))
    r = subprocess.run([sys.executable, "-c", runner, *paths], env=ENV, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    codes = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307  (our own printed list)
    assert codes == [1] * len(KEYS) + [0] * len(KEYS) + [1] * len(CHECK_MISTAKES), r.stdout
    assert r.stdout.count("not implemented yet") == len(KEYS)
    for phrase in ("A convolution layer computes a cross-correlation",
                   "your weights are exactly Z = u*v = 16 times too large",
                   "weights of a softmax seed", "exactly K = 4 times too small"):
        assert r.stdout.count(phrase) == 1, (phrase, r.stdout)


# check()'s own hints: a solved file with one typical mistake appended (a later def wins)
CHECK_MISTAKES = {
    "flipped": ("A1", "_right = conv2d_backward\n"
                "def conv2d_backward(dout, cache):\n    x, w, b, s, p, cols = cache\n"
                "    dx = _right(dout, (x, w[:, :, ::-1, ::-1], b, s, p, cols))[0]\n"
                "    return (dx,) + _right(dout, cache)[1:]\n"),
    "summed": ("A3", "def grad_cam_weights(A, dA):\n    return dA.sum(axis=(2, 3))\n"),
    "softmax": ("A3", "def class_score_gradient(model, x, c, layer):\n"
                "    z = model.forward(x, keep=[layer])\n    A = model.activations[layer]\n"
                "    e = np.exp(z - z.max(1, keepdims=True))\n"
                "    dy = np.eye(z.shape[1])[c] - e / e.sum(1, keepdims=True)\n"
                "    return A, model.backward(dy, stop_at=layer, need_dw=False)\n"),
    "mean_k": ("A3", "def grad_cam_map(A, alpha):\n"
               "    return np.maximum(np.einsum('nk,nkij->nij', alpha, A), 0) / A.shape[1]\n"),
}


@pytest.mark.parametrize("key", KEYS)
def test_grade_stub_functions_raise(key):
    a = grade.ASSIGNMENTS[key]
    path = grade.ASSIGNMENTS_DIR / a.file
    ns = {"__name__": "stub"}
    exec(compile(path.read_text(), str(path), "exec"), ns)  # noqa: S102
    assert path.read_text().count("# TODO(student)") >= len(a.functions)
    for name in a.functions:
        fn = ns[name]
        nargs = fn.__code__.co_argcount - len(fn.__defaults__ or ())
        with pytest.raises(NotImplementedError):
            fn(*([np.zeros((1, 1, 2, 2))] * nargs))


# --------------------------------------------------------------------------- typical mistakes
def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _seed_gradient(prob):
    def class_score_gradient(model, x, c, layer):
        logits = model.forward(x, keep=[layer])
        A = model.activations[layer]
        p = _softmax(logits)
        dy = np.eye(logits.shape[1])[c] - p
        if prob:
            dy = p[np.arange(len(c)), c][:, None] * dy
        return A, model.backward(dy, stop_at=layer, need_dw=False)

    return class_score_gradient


def _flipped_backward(dout, cache):
    x, w, b, s, p, _ = cache
    F = w.shape[0]
    dx, dw, db = S.conv2d_backward(dout, cache)
    wf = w[:, :, ::-1, ::-1]
    d = dout.transpose(1, 0, 2, 3).reshape(F, -1)
    return S.col2im(wf.reshape(F, -1).T @ d, x.shape, w.shape[2], w.shape[3], s, p), dw, db


def _dw_first_image(dout, cache):
    x, w, b, s, p, cols = cache
    dx, _, db = S.conv2d_backward(dout, cache)
    P = dout.shape[2] * dout.shape[3]  # the first image's columns come first: (n, oh, ow)
    dw = (dout[:1].transpose(1, 0, 2, 3).reshape(w.shape[0], -1) @ cols[:, :P].T)
    return dx, dw.reshape(w.shape), db


def _assigning_col2im(dcols, x_shape, KH, KW, stride=1, padding=0):
    N, C, H, W = x_shape
    OH, OW = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    d = dcols.reshape(C, KH, KW, N, OH, OW)
    dx = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
    for oh in range(OH):
        for ow in range(OW):  # = where it must be +=
            dx[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW] = \
                d[:, :, :, :, oh, ow].transpose(3, 0, 1, 2)
    return dx[:, :, padding:padding + H, padding:padding + W]


def _mask_pool():
    """maxpool forward keeping x, backward with a mask x == max (the tie mistake)."""
    def forward(x, kernel_size, stride=None):
        out, cache = S.maxpool2d_forward(x, kernel_size, stride)
        return out, (x, kernel_size, stride or kernel_size)

    def backward(dout, cache):
        x, K, s = cache
        dx = np.zeros_like(x, dtype=float)
        for oh in range(dout.shape[2]):
            for ow in range(dout.shape[3]):
                win = x[:, :, oh * s:oh * s + K, ow * s:ow * s + K]
                hit = win == win.max(axis=(2, 3), keepdims=True)
                dx[:, :, oh * s:oh * s + K, ow * s:ow * s + K] += hit * dout[:, :, oh:oh + 1,
                                                                             ow:ow + 1]
        return dx

    return {"maxpool2d_forward": forward, "maxpool2d_backward": backward}


def _ordinal_spearman(a, b):
    ra = np.argsort(np.argsort(np.ravel(a), kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(np.ravel(b), kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _independent(model, layers, explain, x, c, rng):
    import copy

    trained = explain(model, x, c)
    rows = []
    for name in layers:
        current = copy.deepcopy(model)
        S.randomise_layer(current, name, rng)
        maps = explain(current, x, c)
        rows.append([S.spearman(trained[n], maps[n]) for n in range(len(x))])
    return np.array(rows)


def _in_place(model, layers, explain, x, c, rng):
    trained = explain(model, x, c)
    rows = []
    for name in layers:  # no copy: the caller's model ends up randomised
        S.randomise_layer(model, name, rng)
        maps = explain(model, x, c)
        rows.append([S.spearman(trained[n], maps[n]) for n in range(len(x))])
    return np.array(rows)


def _deletion(order="most", score="prob"):
    def deletion_curve(model, x, saliency, c, steps=20):
        N, C, H, W = x.shape
        curve = np.empty((N, steps + 1))
        for n in range(N):
            s = np.ravel(saliency[n])
            idx = np.argsort(-s if order == "most" else s, kind="stable")
            batch = np.repeat(x[n:n + 1], steps + 1, axis=0)
            for t in range(steps + 1):
                i, j = np.unravel_index(idx[:(t * H * W) // steps], (H, W))
                batch[t][:, i, j] = 0
            z = model.forward(batch)
            curve[n] = (_softmax(z) if score == "prob" else z)[:, c[n]]
        return curve

    return deletion_curve


def _pp_alpha_local(A, dA):
    den = 2 * dA ** 2 + A * dA ** 3
    return np.where(den == 0, 0.0, dA ** 2 / np.where(den == 0, 1.0, den))


def _pp_alpha_normalised(A, dA):
    a = S.gradcam_pp_alpha(A, dA)
    s = a.sum(axis=(2, 3), keepdims=True)
    return np.where(s == 0, 0.0, a / np.where(s == 0, 1.0, s))


# (key, {function: wrong implementation}, the part that must fail, a phrase of its message)
MISTAKES = [
    ("A1", {"conv2d_backward": _flipped_backward}, 2, "computes a cross-correlation"),
    ("A1", {"col2im": lambda d, shp, KH, KW, s=1, p=0: np.pad(
        S.col2im(d, shp, KH, KW, s, p), ((0, 0), (0, 0), (p, p), (p, p)))}, 1, "PADDED shape"),
    ("A1", {"col2im": _assigning_col2im}, 1, "is wrong"),
    ("A1", {"conv2d_backward": lambda dout, cache: (lambda r: (r[0], r[1], None if r[2] is None
                                                               else r[2] / dout[:, 0].size))(
        S.conv2d_backward(dout, cache))}, 4, "is a sum"),
    ("A1", {"conv2d_backward": _dw_first_image}, 3, "first image's share"),
    ("A2", _mask_pool(), 4, "EVERY tied entry"),
    ("A2", {"maxpool2d_backward": lambda dout, cache: S.maxpool2d_backward(dout, cache) * 2}, 2,
     "is wrong"),
    ("A3", {"class_score_gradient": _seed_gradient(prob=True)}, 1, "softmax probability"),
    ("A3", {"class_score_gradient": _seed_gradient(prob=False)}, 1, "softmax log-probability"),
    ("A3", {"grad_cam_weights": lambda A, dA: dA.sum(axis=(2, 3))}, 2,
     "exactly Z = u*v"),
    ("A3", {"grad_cam_map": lambda A, al: np.maximum(np.einsum("nk,nkij->nij", al, A), 0)
            / A.shape[1]}, 3, "exactly K ="),
    ("A3", {"grad_cam_map": lambda A, al: np.einsum("nk,nkij->nij", al, A)}, 3, "ends with a ReLU"),
    ("A3", {"counterfactual_map": lambda m, x, c, layer: S.grad_cam_map(
        *(lambda A, dA: (A, S.grad_cam_weights(A, dA)))(*S.class_score_gradient(m, x, c, layer)))},
     4, "is the Grad-CAM map"),
    ("A3", {"counterfactual_map": lambda m, x, c, layer: -S.grad_cam_map(
        *(lambda A, dA: (A, S.grad_cam_weights(A, dA)))(*S.class_score_gradient(m, x, c, layer)))},
     4, "BEFORE the ReLU"),
    ("A4", {"guided_relu_backward": lambda dout, x: dout * (x > 0)}, 1, "plain gradient"),
    ("A4", {"guided_relu_backward": lambda dout, x: np.maximum(dout, 0)}, 1, "deconvnet rule"),
    ("A4", {"deconvnet_relu_backward": lambda dout, x: np.maximum(dout, 0) * (x > 0)}, 2,
     "is wrong"),
    ("A4", {"gap_linear_gradient": lambda W, c, u, v: np.broadcast_to(
        W[c][:, None, None], (W.shape[1], u, v)).copy()}, 3, "exactly Z = u*v"),
    ("A4", {"cam_alpha": lambda W, c, u, v: W[c]}, 4, "CAM's weight"),
    ("A5", {"gradcam_pp_alpha": _pp_alpha_local}, 1, "A_ij at the position"),
    ("A5", {"gradcam_pp_alpha": _pp_alpha_normalised}, 1, "authors' code"),
    ("A5", {"gradcam_pp_weights": lambda A, dA: dA.mean(axis=(2, 3))}, 2, "Grad-CAM's weights"),
    ("A5", {"gradcam_pp_weights": lambda A, dA: (S.gradcam_pp_alpha(A, dA) * dA).sum(
        axis=(2, 3))}, 2, "POSITIVE gradients"),
    ("A6", {"spearman": lambda a, b: float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])}, 1,
     "Pearson's correlation of the VALUES"),
    ("A6", {"spearman": _ordinal_spearman}, 1, "AVERAGE of their ranks"),
    ("A6", {"cascading_randomisation": _independent}, 3, "INDEPENDENT randomisation"),
    ("A6", {"cascading_randomisation": _in_place}, 3, "changed the model it was given"),
    ("A6", {"randomise_layer": lambda m, name, rng: [m[name].params.__setitem__(
        k, (rng.standard_normal(p.shape) * p.std()).astype(p.dtype))
        for k, p in reversed(sorted(m[name].params.items()))] and None}, 2, "is wrong"),
    ("A7", {"deletion_curve": _deletion(order="least")}, 1, "LEAST salient"),
    ("A7", {"deletion_curve": _deletion(score="logit")}, 1, "PROBABILITY"),
    ("A7", {"auc": lambda curve: curve.mean(axis=1)}, 3, "trapezoid rule"),
]


def _stub(key):
    """The untouched stub of ``key`` as a namespace of its functions."""
    path = grade.ASSIGNMENTS_DIR / grade.ASSIGNMENTS[key].file
    ns = {"__name__": "stub"}
    exec(compile(path.read_text(), str(path), "exec"), ns)  # noqa: S102
    return types.SimpleNamespace(**{k: v for k, v in ns.items()
                                    if isinstance(v, types.FunctionType)})


def _module(key, overrides):
    """The stub's given functions (A1's forward), the model solution's, then the mistake."""
    a = grade.ASSIGNMENTS[key]
    funcs = dict(vars(_stub(key)))
    funcs.update({n: getattr(S, n) for n in a.functions})
    funcs.update(overrides)
    return types.SimpleNamespace(**funcs)


@pytest.mark.parametrize("key,overrides,part,phrase", MISTAKES,
                         ids=[f"{m[0]}-{m[3][:24]}" for m in MISTAKES])
def test_grade_catches_the_typical_mistake(key, overrides, part, phrase):
    a = grade.ASSIGNMENTS[key]
    out = io.StringIO()
    points, total = grade.grade(a, module=_module(key, overrides), out=out)
    text = out.getvalue()
    lines = text.splitlines()
    fail = [i for i, line in enumerate(lines) if line.startswith(f"  FAIL  {part}.")]
    assert points < total and fail, text
    assert phrase in lines[fail[0] + 1], text  # the message of THAT part names the mistake


def test_grade_mistake_table_control_the_unmodified_solutions_pass():
    """The negative control of the table: the same namespaces without a mistake score 100%."""
    for key in KEYS:
        out = io.StringIO()
        points, total = grade.grade(grade.ASSIGNMENTS[key], module=_module(key, {}), out=out)
        assert points == total, out.getvalue()


# --------------------------------------------------------------------------- hardening
EXIT_VIA_OS = ('[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '
               '"_wrap_close"][0].__init__.__globals__["_exit"](0)')  # os._exit without `import`
A4_RIGHT = ("import numpy as np\n"
            "def guided_relu_backward(dout, x):\n    return dout * (x > 0) * (dout > 0)\n"
            "def deconvnet_relu_backward(dout, x):\n    return np.maximum(dout, 0)\n"
            "def gap_linear_gradient(W, c, u, v):\n"
            "    return np.broadcast_to(W[c][:, None, None] / (u * v), (W.shape[1], u, v))\n"
            "def cam_alpha(W, c, u, v):\n    return W[c] / (u * v)\n")


@pytest.mark.parametrize("top,phrase", [
    ("import sys\nsys.exit(0)\n", "not allowed"),
    ("raise SystemExit(0)\n", "called sys.exit(0) while being imported"),
    (EXIT_VIA_OS + "\n", "ended the process while being imported (exit status 0"),
    ("while True:\n    try:\n        pass\n    except:\n        pass\n", "took longer than 1 s"),
    ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt"),
    ("__import__('importlib').import_module('minicnn.' + 'naive')\n", "'importlib' is not allowed"),
    ("from minicnn.conv import conv2d\n", "'minicnn.conv' is not allowed"),
    ("from minicnn.layers import Conv2d\nclass Mine(Conv2d):\n    pass\n",
     "'minicnn.layers' is not allowed"),
    ("def broken(:\n", "SyntaxError"),
], ids=["import-sys", "sys.exit", "os._exit", "bare-except-loop", "KeyboardInterrupt",
        "dynamic-import", "from-minicnn", "wrapper-of-Conv2d", "syntax"])
def test_grade_a_misbehaving_import_fails_every_part(top, phrase, tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "IMPORT_TIME_LIMIT", 1)
    points, total, text = _grade_file("A4", top + A4_RIGHT, tmp_path)
    assert points == 0 and text.count("  FAIL  ") == 4, text
    assert phrase in text and "Traceback" not in text


def test_grade_misbehaving_graded_functions_each_fail_their_own_part(tmp_path, monkeypatch):
    """os._exit, an endless loop under a bare except, KeyboardInterrupt and sys.exit inside
    four graded functions: four FAIL lines, each with its reason, and no hang."""
    monkeypatch.setattr(harness, "PART_TIME_LIMIT", 1)
    source = A4_RIGHT + (
        f"def guided_relu_backward(dout, x):\n    {EXIT_VIA_OS}\n"
        "def deconvnet_relu_backward(dout, x):\n    while True:\n        try:\n            pass\n"
        "        except:\n            pass\n"
        "def gap_linear_gradient(W, c, u, v):\n    raise KeyboardInterrupt\n"
        "def cam_alpha(W, c, u, v):\n    raise SystemExit(0)\n")
    points, total, text = _grade_file("A4", source, tmp_path)
    assert points == 0 and text.count("  FAIL  ") == 4, text
    assert "ended the process during this part (exit status 0" in text
    assert "took longer than 1 s" in text
    assert "raised KeyboardInterrupt" in text and "called sys.exit(0)" in text
    assert "Traceback" not in text


def test_grade_a_failure_in_one_part_leaves_the_others_graded(tmp_path):
    """Control for the test above: one exiting function costs its part only."""
    source = A4_RIGHT + f"def guided_relu_backward(dout, x):\n    {EXIT_VIA_OS}\n"
    points, total, text = _grade_file("A4", source, tmp_path)
    assert (points, total) == (5, 7) and "FAIL  1." in text, text


def test_grade_patching_the_checks_in_the_students_process_does_not_pass(tmp_path):
    """np.all, np.allclose and np.isfinite patched to say yes, an array class that says it
    equals anything; the answers are wrong."""
    source = ("import numpy as np\n"
              "np.all = np.allclose = np.array_equal = lambda *a, **k: True\n"
              "np.isfinite = lambda a: np.ones(np.shape(a), bool)\n"
              "def guided_relu_backward(dout, x):\n    return dout\n"
              "class Liar(np.ndarray):\n    def __eq__(self, other):\n        return True\n"
              "    def __sub__(self, other):\n        return np.zeros(self.shape)\n"
              "def deconvnet_relu_backward(dout, x):\n    return dout.view(Liar)\n"
              "def gap_linear_gradient(W, c, u, v):\n    return np.zeros((W.shape[1], u, v))\n"
              "def cam_alpha(W, c, u, v):\n    return np.zeros(W.shape[1])\n")
    points, total, text = _grade_file("A4", source, tmp_path)
    assert points == 0 and text.count("  FAIL  ") == 4, text


def test_grade_a_forbidden_import_inside_a_function_fails_that_part(tmp_path):
    source = A4_RIGHT + ("def cam_alpha(W, c, u, v):\n"
                         "    from minicnn import naive\n    return W[c] / (u * v)\n")
    points, total, text = _grade_file("A4", source, tmp_path)
    assert (points, total) == (5, 7) and "'minicnn' is not allowed" in text, text


def test_grade_usage_errors():
    r = subprocess.run([sys.executable, "-m", "lessons.grade", "A9"], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "unknown assignment" in r.stderr and "Traceback" not in r.stderr
