"""minicnn against PyTorch autograd on identical weights, float64.

Models (``torch_twins.case``): the small CNN of docs/design.md, ``shapes_cnn`` and ``shapes_gap`` (random
BatchNorm statistics), VGG16's topology at 1/16 width (torchvision's names), EfficientNet-Lite0
(its real weights where the package is installed). The twins are written independently in
torch (tests/torch_twins.py); the weights go torch -> minicnn through
``minicnn.torch_import.load_torch_weights``.

Quantities: the logits; every parameter gradient and the input gradient of sum_n y[n, c_n];
A and dy^c/dA at the explained layer; alpha, the linear map, Grad-CAM's coarse map, the
counterfactual map (of the least likely class: the top-1's is often empty) and the heatmap
(torch: F.interpolate bilinear, align_corners=False, divided by the max); guided backprop and deconvnet (torch: backward hooks on every
ReLU/ReLU6, see ``torch_twins.relu_rule``). Bound: torch_twins.rel_error <= 1e-6.

Run ``python tests/test_torch_crosscheck.py`` for the table of worst errors.

NOTE (max-pool ties): both sides send a window's gradient to its first maximum; ties occur
only in windows of ReLU zeros, whose gradient the ReLU below then blocks on either side.
"""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; the cross-checks need torch (CPU): "
    "pip install torch==2.13.0 (CI installs it, see .ci/run)")

import torch_twins as T


rel_error = T.rel_error

TORCH_RTOL = 1e-6
MODELS = ["small_cnn", "shapes_cnn", "shapes_gap", "vgg16", "efficientnet_lite0"]
QUANTITIES = ("logits", "need_dw", "need_dx", "activations", "gradients", "alpha",
              "linear_map", "coarse", "counterfactual", "heatmap", "guided_backprop",
              "deconvnet")


def torch_heatmap(coarse, size):
    """The reference heatmap in torch: bilinear, half-pixel centres, / per-image max."""
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse)[:, None], size=size,
                                        mode="bilinear", align_corners=False)[:, 0]
    peak = t.amax(dim=(1, 2), keepdim=True)
    return (t / torch.where(peak > 0, peak, torch.ones_like(peak))).numpy()


def errors(name):
    """Worst relative error per quantity for one model (parameter grads: worst key)."""
    ours, theirs = T.quantities(name)
    theirs = dict(theirs, heatmap=torch_heatmap(theirs["coarse"], ours["heatmap"].shape[1:]))
    out = {}
    for q in QUANTITIES:
        if q == "need_dw":
            assert set(ours[q]) == set(theirs[q]), set(ours[q]) ^ set(theirs[q])
            out[q] = max(rel_error(ours[q][k], theirs[q][k]) for k in theirs[q])
        else:
            assert ours[q].shape == theirs[q].shape, (q, ours[q].shape, theirs[q].shape)
            out[q] = rel_error(ours[q], theirs[q])
    return out


@pytest.mark.parametrize("name", MODELS)
def test_every_quantity_matches_torch(name):
    errs = errors(name)
    bad = {q: e for q, e in errs.items() if not e <= TORCH_RTOL}
    assert not bad, f"{name}: relative errors above {TORCH_RTOL}: {bad}"


@pytest.mark.parametrize("name", MODELS)
def test_crosscheck_is_not_vacuous(name):
    """The maps compared are not all zero: Grad-CAM has positive cells, guided backprop and the
    parameter gradients are non-zero (a check of zeros against zeros would prove nothing)."""
    ours, _ = T.quantities(name)
    assert ours["coarse"].max() > 0 and ours["counterfactual"].max() > 0
    assert np.abs(ours["guided_backprop"]).max() > 0 and np.abs(ours["deconvnet"]).max() > 0
    assert all(np.abs(g).max() > 0 for k, g in ours["need_dw"].items() if "running" not in k)


def test_vgg16_torchvision_names_load_key_for_key():
    """The zoo's VGG16 takes the twin's (torchvision-built) state dict strictly, and back."""
    model, twin, *_ = T.case("vgg16")
    assert list(model.state_dict()) == list(twin.state_dict())
    twin2 = T.vgg16_twin(10, 1 / 16).double()
    twin2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    for k, v in twin2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), model.state_dict()[k])


def test_efficientnet_state_dict_keys_match_torch_twin():
    model, twin, *_ = T.case("efficientnet_lite0")
    ours = set(model.state_dict())
    theirs = {k for k in twin.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours == theirs


def test_pth_and_npz_files_import_like_the_state_dict(tmp_path):
    """torch.save'd .pth (read without torch by minicnn.pth) and save_npz give the same model."""
    from minicnn import torch_import

    model, twin, x, *_ = T.case("small_cnn")
    torch.save(twin.state_dict(), tmp_path / "w.pth")
    torch_import.save_npz(twin.state_dict(), tmp_path / "w.npz")
    for path in (tmp_path / "w.pth", tmp_path / "w.npz"):
        m = torch_import.load_torch_weights(T.small_cnn().astype("float64"), path)
        np.testing.assert_array_equal(m.forward(x), model.eval().forward(x))


def test_shapes_batchnorm_buffers_dropped_and_loaded():
    """num_batches_tracked is dropped; running statistics arrive (eval-mode outputs agree)."""
    model, twin, *_ = T.case("shapes_gap")
    assert any(k.endswith("num_batches_tracked") for k in twin.state_dict())
    np.testing.assert_array_equal(model["bn2"].buffers["running_var"],
                                  twin.bn2.running_var.numpy())


# --------------------------------------------------------------------------- the shipped fixture
def fixture_twin(ref):
    from collections import OrderedDict

    nn = torch.nn
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 4, 3, padding=1)), ("relu2", nn.ReLU()),
        ("gap", T.GlobalAvgPool()), ("fc", nn.Linear(4, 3))])).double().eval()
    net.load_state_dict({k: torch.from_numpy(ref[k]) for k in ref if "." in k})
    return net


def test_reference_fixture_matches_torch():
    """Every value in gradcam/fixtures/reference_tiny.npz, recomputed by torch autograd."""
    from gradcam import fixtures

    ref = fixtures.load_reference()
    net, x, c = fixture_twin(ref), ref["input"], np.array([int(ref["target"])])
    th = T.torch_quantities(net, x, c, "relu2")
    # the counterfactual of the TARGET (torch_quantities' is of the least likely class)
    cf_alpha = -th["alpha"]
    cf = np.maximum((cf_alpha[:, :, None, None] * th["activations"]).sum(1), 0)
    xt = torch.tensor(x, requires_grad=True)
    net(xt)[0, int(c[0])].backward()
    heat = torch_heatmap(th["coarse"], (8, 8))
    expected = {
        "logits": th["logits"], "activations": th["activations"], "gradients": th["gradients"],
        "alpha": th["alpha"], "linear_map": th["linear_map"], "gradcam_coarse": th["coarse"],
        "gradcam_heatmap": heat, "counterfactual_alpha": cf_alpha, "counterfactual_coarse": cf,
        "counterfactual_heatmap": torch_heatmap(cf, (8, 8)), "saliency": xt.grad.numpy(),
        "guided_backprop": th["guided_backprop"], "deconvnet": th["deconvnet"],
        "guided_gradcam": th["guided_backprop"] * heat[:, None]}
    # the Grad-CAM paper's values (the other methods' keys are checked by their own tests)
    shipped = set(fixtures.DESCRIPTIONS) - {"input", "target", "seed"}
    assert set(expected) == shipped and shipped <= set(ref)
    for k, v in expected.items():
        assert rel_error(v, ref[k]) <= 1e-12, k


def test_readme_snippet_checks_the_fixture():
    """The documented PyTorch snippet (README, or docs/crosscheck.md) runs and passes."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    blocks = []
    for doc in (root / "README.md", root / "docs" / "crosscheck.md"):
        if doc.exists():
            blocks += [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)
                       if "reference_tiny.npz" in b]
    assert blocks, "the README's reference-fixture snippet is missing"
    code = compile(blocks[0], "readme-snippet", "exec")
    exec(code, {})  # noqa: S102 (the documented snippet, from this repository)


def main():
    """Print the worst error per quantity (rows) and model (columns), float64."""
    names = ["small_cnn", "shapes_cnn", "shapes_gap", "vgg16", "efficientnet_lite0"]
    table = {n: errors(n) for n in names}
    print("| quantity | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for q in QUANTITIES:
        print(f"| {q} | " + " | ".join(f"{table[n][q]:.1e}" for n in names) + " |")


if __name__ == "__main__":
    main()
