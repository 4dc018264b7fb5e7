"""Vision app: idx reader, patches, the ViT, training/evaluate/predict and `viz image` on tiny data,
through the library (apps.vision) and through the command line (bad input -> one line, exit 1).

Fixtures are written in the test (tiny idx files shaped like Fashion-MNIST); nothing here needs
the real data set."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention.apps.vision import data as vdata
from selfattention.apps.vision import train as vtrain
from selfattention.apps.vision.classifier import Prediction, evaluate, load_classifier, predict
from selfattention.apps.vision.config import DATASET_DEFAULTS, ImageTaskConfig
from selfattention.apps.vision.inspect import parse_patch
from selfattention.apps.vision.model import (
    MLP,
    VisionTransformer,
    ViTConfig,
    count_parameters,
    patchify,
)
from selfattention.functional.neighborhood import neighborhood_mask


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """An idx file: 00 00 08 ndim, big-endian uint32 sizes, uint8 data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    """A Fashion-MNIST-shaped folder: 120 train and 40 test 28×28 images, labels 0..9.

    Each class is a bright bar at its own row, so that a tiny model can learn something."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for k, y in enumerate(labels):
            images[k, 2 + 2 * y : 4 + 2 * y, 4:24] = 250
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def test_read_idx_plain_and_gzip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        path = write_idx(tmp_path / f"a{int(gz)}", a, gz=gz)
        np.testing.assert_array_equal(vdata.read_idx(path), a)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(ValueError, match="not an idx file"):
        vdata.read_idx(bad)
    short = write_idx(tmp_path / "short", np.zeros((2, 3), np.uint8), gz=False)
    short.write_bytes(short.read_bytes()[:-1])
    with pytest.raises(ValueError, match="header says shape"):
        vdata.read_idx(short)
    with pytest.raises(ValueError, match="cannot read idx file"):
        vdata.read_idx(tmp_path / "missing")


def test_load_fashion_mnist_from_folder(fashion_dir):
    s = vdata.load_fashion_mnist(fashion_dir)
    assert s.x_train.shape == (120, 1, 28, 28) and s.x_test.shape == (40, 1, 28, 28)
    assert s.x_train.dtype == torch.float32 and 0.0 <= float(s.x_train.min())
    assert float(s.x_train.max()) == pytest.approx(250 / 255)
    assert s.y_test.tolist()[:12] == [*range(10), 0, 1]
    assert s.classes[0] == "T-shirt/top" and len(s.classes) == 10
    with pytest.raises(ValueError, match="Fashion-MNIST idx files"):
        vdata.load_fashion_mnist(fashion_dir / "nowhere")


def test_digits_split_is_stratified_and_disjoint():
    s = vdata.load_digits(test_fraction=0.2, seed=0)
    assert s.x_train.shape[1:] == (1, 8, 8) and len(s.y_train) + len(s.y_test) == 1797
    counts = torch.bincount(s.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    assert float(s.x_train.max()) == 1.0  # 16 -> 1


def test_fashion_mnist_missing_names_the_fetch_command_and_installs_nothing(monkeypatch, tmp_path):
    """Issue 9: load_fashion_mnist() used to run apt-get when the data was missing."""
    from selfattention.apps.datasets import DataUnavailable, fashion_mnist

    def no_install(*args, **kwargs):
        raise AssertionError(f"tried to run {args[0] if args else kwargs}")

    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, no_install)
    monkeypatch.setattr("os.system", no_install)
    with pytest.raises(DataUnavailable, match="selfattention data fetch fashion-mnist"):
        vdata.load_fashion_mnist()
    with pytest.raises(DataUnavailable, match="selfattention data fetch fashion-mnist"):
        vdata.load_dataset("fashion-mnist", limit=5)


def test_patchify_row_major_patches():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    p = patchify(x, 2)  # (1, 4 patches, 4 pixels)
    assert p.shape == (1, 4, 4)
    assert p[0, 0].tolist() == [0, 1, 4, 5]  # top-left
    assert p[0, 1].tolist() == [2, 3, 6, 7]  # top-right
    assert p[0, 3].tolist() == [10, 11, 14, 15]  # bottom-right


def test_vit_weights_and_neighbourhood():
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=(8, 8), patch_size=2, dim=16, depth=2, heads=2, neighborhood=3)
    model = VisionTransformer(cfg).eval()
    x = torch.rand(3, 1, 8, 8)
    logits, weights = model(x, return_weights=True)
    assert logits.shape == (3, 10) and len(weights) == 2
    assert weights[0].shape == (3, 2, 16, 16)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(3, 2, 16))
    outside = ~neighborhood_mask(4, 4, 3)
    assert float(weights[0].detach()[..., outside].abs().max()) == 0.0
    # Same logits with and without asking for the weights (math vs the tiled kernel).
    torch.testing.assert_close(model(x), logits, rtol=1e-5, atol=1e-5)
    model.train()
    model(x).logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_vit_without_positions_is_permutation_invariant_over_patches():
    """Mean-pooled attention is permutation invariant, so the 2-D positions are what tells
    the model where a patch is: with them, swapping two patches changes the logits."""
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(image_size=(4, 4), patch_size=2, dim=16, depth=1, heads=2))
    model.eval()
    x = torch.rand(1, 1, 4, 4)
    swapped = x.clone()
    swapped[..., :2, :2], swapped[..., :2, 2:] = x[..., :2, 2:], x[..., :2, :2]
    assert not torch.allclose(model(x), model(swapped))
    model.positions = torch.nn.Identity()
    torch.testing.assert_close(model(x), model(swapped), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.rand(2, 1, 27, 28), ValueError, "must be 28×28 pixels, got 27×28"),
        (torch.rand(2, 3, 28, 28), ValueError, "must have 1 channel"),
        (torch.rand(28), ValueError, "must have shape"),
        (torch.zeros(1, 1, 28, 28, dtype=torch.uint8), TypeError, "floating point"),
        ([[0.0]], TypeError, "torch.Tensor or numpy array"),
    ],
)
def test_bad_images_get_clear_errors(x, error, match):
    model = VisionTransformer(ViTConfig(dim=16, depth=1, heads=2))
    with pytest.raises(error, match=match):
        model(x)


def test_config_validation():
    with pytest.raises(ValueError, match="patch_size must be a positive int dividing 28×28"):
        ViTConfig(patch_size=5)
    with pytest.raises(ValueError, match="neighborhood must be None or an odd"):
        ViTConfig(neighborhood=2)
    with pytest.raises(ValueError, match=r"odd int in 1\.\.4 \(the patch grid is 4×4\)"):
        ViTConfig(patch_size=7, neighborhood=5)
    with pytest.raises(ValueError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({"width": 3})
    cfg = ViTConfig(patch_size=7, neighborhood=3)
    assert ViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_augment_shift_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 6, 6)
    torch.testing.assert_close(vtrain.augment(x, 0, False, g), x)
    y = vtrain.augment(x, 1, False, g)
    assert y.shape == x.shape
    for k in range(5):  # each image is x shifted by at most one pixel, with zeros coming in
        shifted = [
            torch.roll(x[k], (dy, dx), (1, 2))[:, 1:-1, 1:-1]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert any(torch.equal(y[k, :, 1:-1, 1:-1], s) for s in shifted)
    flipped = vtrain.augment(x, 0, True, torch.Generator().manual_seed(1))
    for k in range(5):
        assert torch.equal(flipped[k], x[k]) or torch.equal(flipped[k], x[k].flip(-1))


def test_mlp_baseline_matches_parameter_count():
    vit = VisionTransformer(ViTConfig())
    params = count_parameters(vit)
    mlp = MLP((28, 28), 1, MLP.hidden_for(params, (28, 28), 1, 10), 10)
    assert abs(count_parameters(mlp) - params) / params < 0.01


def test_image_task_config_defaults_and_validation():
    digits = ImageTaskConfig.for_dataset("digits", epochs=3, dim=None)
    assert digits.epochs == 3 and digits.dim == DATASET_DEFAULTS["digits"]["dim"]
    assert ImageTaskConfig.for_dataset("fashion-mnist") == ImageTaskConfig()
    with pytest.raises(ValueError, match="dataset must be one of digits, fashion-mnist"):
        ImageTaskConfig.for_dataset("mnist")
    with pytest.raises(ValueError, match=r"unknown ImageTaskConfig option\(s\) \['width'\]"):
        ImageTaskConfig.for_dataset("digits", width=3)
    with pytest.raises(ValueError, match="dim must be divisible by heads, got dim=30 and heads=4"):
        ImageTaskConfig(dim=30)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        ImageTaskConfig(epochs=0)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        ImageTaskConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="neighborhood must be an odd number"):
        ImageTaskConfig(neighborhood=2)


TINY = dict(patch_size=7, dim=16, depth=2, heads=2, epochs=3, batch_size=32, lr=3e-3, dev_size=20)


@pytest.fixture(scope="module")
def trained(fashion_dir, tmp_path_factory) -> tuple[Path, dict]:
    ckpt = tmp_path_factory.mktemp("ckpt") / "images"
    config = ImageTaskConfig.for_dataset("fashion-mnist", **TINY)
    return ckpt, vtrain.train(config, vdata.load_fashion_mnist(fashion_dir), ckpt)


def test_train_writes_checkpoint_metrics_and_baseline(trained):
    ckpt, metrics = trained
    assert load_classifier(ckpt).dataset == "fashion-mnist"
    assert (ckpt / "mlp" / "config.json").is_file()
    assert json.loads((ckpt / "metrics.json").read_text())["vit"]["parameters"] > 0
    assert metrics["train_images"] == 100 and metrics["dev_images"] == 20
    assert metrics["vit"]["epochs_run"] == 3
    assert 0.0 <= metrics["vit"]["test_accuracy"] <= 1.0
    rel = (
        abs(metrics["mlp"]["parameters"] - metrics["vit"]["parameters"])
        / metrics["vit"]["parameters"]
    )
    assert rel < 0.05


def test_train_checks_the_patch_size_against_the_images(tmp_path):
    splits = vdata.load_digits()
    config = ImageTaskConfig.for_dataset("digits", patch_size=3, epochs=1)
    with pytest.raises(ValueError, match="patch_size must be a positive int dividing 8×8"):
        vtrain.train(config, splits, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_evaluate_and_predict(trained, fashion_dir):
    ckpt, metrics = trained
    clf = load_classifier(ckpt)
    splits = vdata.load_fashion_mnist(fashion_dir)
    ev = evaluate(clf, splits)
    assert ev["test_accuracy"] == pytest.approx(metrics["vit"]["test_accuracy"])
    assert set(ev["per_class_accuracy"]) <= set(vdata.FASHION_CLASSES)
    assert evaluate(ckpt, splits) == ev  # a path works as well as a loaded classifier
    preds = predict(clf, splits.x_test[:3])
    assert len(preds) == 3 and all(isinstance(p, Prediction) for p in preds)
    assert all(p.label == vdata.FASHION_CLASSES[p.index] and 0 < p.probability <= 1 for p in preds)
    (one,) = predict(clf, splits.x_test[0, 0])  # a grey (H, W) image
    assert one.label == preds[0].label and one.probability == pytest.approx(preds[0].probability)
    with pytest.raises(ValueError, match="trained on 'fashion-mnist', not on 'digits'"):
        evaluate(clf, vdata.load_digits())


def test_predict_refuses_non_finite_images(trained):
    """Issue 9: an all-NaN image was classified (probability nan) instead of refused."""
    clf = load_classifier(trained[0])
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, :2, :2] = float("nan")
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"images: 5 of 1568 values are not finite \(NaN or inf\)"):
        predict(clf, x)


def test_read_image_errors_name_the_file(tmp_path):
    def saved(name: str, array: np.ndarray) -> Path:
        np.save(tmp_path / name, array)
        return tmp_path / name

    ok = vdata.read_image(saved("ok.npy", np.full((28, 28), 255, np.uint8)), 1, (28, 28))
    assert ok.shape == (1, 1, 28, 28) and float(ok.max()) == 1.0
    cases = [
        (
            saved("nan.npy", np.full((28, 28), np.nan, np.float32)),
            "784 of 784 values are not finite",
        ),
        (saved("rgb.npy", np.zeros((3, 28, 28), np.float32)), "must have 1 channel"),
        (saved("small.npy", np.zeros((27, 28), np.float32)), "must be 28×28 pixels, got 27×28"),
        (saved("ints.npy", np.zeros((28, 28), np.int64)), r"expected uint8 \(0\.\.255\) or floats"),
        (saved("big.npy", np.full((28, 28), 200.0)), r"must be in \[0, 1\], got 200\.\.200"),
        (saved("obj.npy", np.array([None, 1], dtype=object)), "cannot read image file"),
        (tmp_path / "nope.png", "does not exist"),
    ]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    cases.append((junk, "cannot read image file"))
    (tmp_path / "image.jpg").write_bytes(b"")
    cases.append((tmp_path / "image.jpg", r"expected \.npy or \.png, got '\.jpg'"))
    for path, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            vdata.read_image(path, 1, (28, 28))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_classifier_rejects_other_checkpoints(tmp_path):
    from selfattention.apps.training import CheckpointError, save_checkpoint

    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "none")
    save_checkpoint(tmp_path / "pos", {"w": torch.zeros(1)}, {"task": "pos"})
    with pytest.raises(ValueError, match="not a checkpoint of `selfattention train images`"):
        load_classifier(tmp_path / "pos")


def test_parse_patch():
    assert parse_patch(None, (7, 7)) == 24
    assert parse_patch("2,3", (7, 7)) == 17 and parse_patch("5", (7, 7)) == 5
    with pytest.raises(ValueError, match=r"must be in 0\.\.48"):
        parse_patch("49", (7, 7))
    with pytest.raises(ValueError, match="ROW,COL within the 7×7 grid"):
        parse_patch("7,0", (7, 7))


# The command line: what a user sees. Every failure is one line on stderr and a non-zero exit.


def _fails(capsys, argv: list[str], *needles: str, code: int = 1) -> str:
    from selfattention.cli import main

    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_predict_images(trained, fashion_dir, tmp_path, capsys):
    from selfattention.cli import main

    ckpt, _ = trained
    img = tmp_path / "one.npy"
    np.save(img, np.zeros((28, 28), np.float32))
    listed = tmp_path / "inputs.txt"
    listed.write_text(f"3\n\n{img}\n")
    base = ["predict", "images", "-c", str(ckpt), "--data-dir", str(fashion_dir)]
    capsys.readouterr()
    assert main([*base, "3", str(img)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "(true: Dress)" in lines[0] and lines[1].startswith(str(img))
    assert main([*base, "--file", str(listed)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines


def test_cli_predict_images_refuses_nan_input(trained, tmp_path, capsys):
    """Issue 9: `predict images` on an all-NaN array printed `nan` and exited 0."""
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((28, 28), np.nan, np.float32))
    ok = tmp_path / "ok.npy"
    np.save(ok, np.zeros((28, 28), np.float32))
    # Nothing is printed for the good input either: every input is checked first.
    _fails(capsys, ["predict", "images", "-c", str(trained[0]), str(ok), str(nan)],
           str(nan), "784 of 784 values are not finite")  # fmt: skip


def test_cli_predict_images_bad_inputs_are_one_line(trained, fashion_dir, tmp_path, capsys):
    ckpt = str(trained[0])
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.zeros((3, 28, 28), np.float32))
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((28, 28), np.int64))
    text = tmp_path / "notes.png"
    text.write_text("hello")
    base = ["predict", "images", "-c", ckpt, "--data-dir", str(fashion_dir)]
    _fails(capsys, [*base, str(rgb)], str(rgb), "must have 1 channel")
    _fails(capsys, [*base, str(ints)], str(ints), "expected uint8")
    _fails(capsys, [*base, str(text)], str(text), "cannot read image file")
    _fails(capsys, [*base, "40"], "test image index must be in 0..39, got 40")
    _fails(capsys, [*base, "-1"], "got -1")
    _fails(capsys, [*base, "missing.npy"], "missing.npy does not exist")
    _fails(capsys, [*base, "--file", str(tmp_path / "absent.txt")], "absent.txt does not exist")
    _fails(capsys, base, "nothing to predict")
    _fails(capsys, ["predict", "images", "-c", str(tmp_path / "absent"), "3"],
           "checkpoint", "absent")  # fmt: skip
    _fails(capsys, ["evaluate", "images", "-c", str(tmp_path / "absent")], "absent")


def test_cli_train_images_bad_options_fail_before_loading(tmp_path, capsys, monkeypatch):
    from selfattention.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(vdata, "load_dataset", no_data)
    base = ["train", "images", "--dataset", "digits", "-c", str(tmp_path / "c"), "--no-progress"]
    _fails(capsys, [*base, "--dim", "30"], "dim must be divisible by heads")
    with pytest.raises(SystemExit) as info:  # an argparse usage error names the option
        main([*base, "--epochs", "0"])
    assert info.value.code == 2 and "argument --epochs" in capsys.readouterr().err
    _fails(capsys, [*base, "--neighborhood", "2"], "neighborhood must be an odd number")
    _fails(capsys, [*base, "--data-dir", str(tmp_path)], "--data-dir is for fashion-mnist")


def test_cli_viz_image(trained, fashion_dir, tmp_path, capsys):
    from selfattention.cli import main

    ckpt, _ = trained
    out = tmp_path / "viz"
    argv = ["viz", "image", "-c", str(ckpt), "--index", "0", "7", "--patch", "1,2",
            "--data-dir", str(fashion_dir), "--out", str(out), "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    for name in ("image_0.png", "image_0_grid.png", "image_7.png", "report.html"):
        assert (out / name).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "test 7: Sneaker" in html
    bad_patch = list(argv)
    bad_patch[argv.index("1,2")] = "9,9"
    _fails(capsys, bad_patch, "ROW,COL within the 4×4 grid")
    bad_index = list(argv)
    bad_index[argv.index("7")] = "40"
    _fails(capsys, bad_index, "test image index must be in 0..39, got 40")
    _fails(capsys, ["viz", "image", "-c", str(tmp_path / "absent"), "--out", str(out)],
           "does not exist")  # fmt: skip
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out_at_file = list(argv)
    out_at_file[argv.index(str(out))] = str(a_file)
    _fails(capsys, out_at_file, f"--out {a_file} is a file")
    _fails(capsys, [*argv, "--layers", "7"], "layers: index 7 is out of range")
    _fails(capsys, [*argv[:-1], "0"], "--threads must be at least 1, got 0")


def test_cli_train_images_checkpoint_at_a_file(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = ["train", "images", "--dataset", "digits", "-c", str(a_file), "--no-progress"]
    _fails(capsys, argv, f"--checkpoint {a_file} is a file")
    assert a_file.read_text() == "x"
