"""Vision app: idx reader, patches, the ViT, training/evaluate/predict and `viz image` on tiny data.

Fixtures are written in the test (tiny idx files shaped like Fashion-MNIST); nothing here needs
the real data set."""

from __future__ import annotations

import argparse
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention.apps.vision import data as vdata
from selfattention.apps.vision import train as vtrain
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


def test_fashion_fetch_says_what_to_run(monkeypatch, tmp_path):
    from selfattention.apps.datasets import DataUnavailable, fashion_mnist

    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setattr(fashion_mnist.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(fashion_mnist.shutil, "which", lambda name: "/usr/bin/apt-get")
    with pytest.raises(DataUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist.fetch_fashion_mnist()


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


def _args(checkpoint: Path, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    vtrain.add_arguments(parser)
    args = parser.parse_args([])
    defaults = dict(checkpoint=checkpoint, seed=0, progress=False, resume=False, threads=1)
    for k, v in {**defaults, **kw}.items():
        setattr(args, k, v)
    return args


@pytest.fixture(scope="module")
def trained(fashion_dir, tmp_path_factory) -> tuple[Path, dict]:
    ckpt = tmp_path_factory.mktemp("ckpt") / "images"
    args = _args(ckpt, data_dir=fashion_dir, patch_size=7, dim=16, depth=2, heads=2, epochs=3,
                 batch_size=32, lr=3e-3, dev_size=20)  # fmt: skip
    return ckpt, vtrain.train(args)


def test_train_writes_checkpoint_metrics_and_baseline(trained):
    ckpt, metrics = trained
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "mlp" / "model.safetensors").is_file()
    assert json.loads((ckpt / "metrics.json").read_text())["vit"]["parameters"] > 0
    assert metrics["train_images"] == 100 and metrics["dev_images"] == 20
    assert metrics["vit"]["epochs_run"] == 3
    assert 0.0 <= metrics["vit"]["test_accuracy"] <= 1.0
    rel = (
        abs(metrics["mlp"]["parameters"] - metrics["vit"]["parameters"])
        / metrics["vit"]["parameters"]
    )
    assert rel < 0.05


def test_evaluate_and_predict(trained, fashion_dir, tmp_path, capsys):
    ckpt, metrics = trained
    ev = vtrain.evaluate(_args(ckpt, data_dir=fashion_dir))
    assert ev["test_accuracy"] == pytest.approx(metrics["vit"]["test_accuracy"])
    assert set(ev["per_class_accuracy"]) <= set(vdata.FASHION_CLASSES)
    img = tmp_path / "one.npy"
    np.save(img, np.zeros((28, 28), np.float32))
    capsys.readouterr()
    assert vtrain.predict(_args(ckpt, data_dir=fashion_dir, inputs=["3", str(img)], file=None)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "(true: Dress)" in lines[0]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="must have 1 channel"):
        vtrain.predict(_args(ckpt, data_dir=fashion_dir, inputs=[str(bad)], file=None))
    with pytest.raises(ValueError, match="does not exist"):
        vtrain.predict(_args(ckpt, data_dir=fashion_dir, inputs=["nope.png"], file=None))
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((28, 28), np.int64))
    with pytest.raises(ValueError, match=r"expected uint8 \(0\.\.255\) or floats"):
        vtrain.predict(_args(ckpt, data_dir=fashion_dir, inputs=[str(ints)], file=None))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image file"):
        vtrain.predict(_args(ckpt, data_dir=fashion_dir, inputs=[str(junk)], file=None))


def test_load_model_rejects_other_checkpoints(tmp_path):
    from selfattention.apps.training import CheckpointError, save_checkpoint

    with pytest.raises(CheckpointError):
        vtrain.load_model(tmp_path / "none")
    save_checkpoint(tmp_path / "pos", {"w": torch.zeros(1)}, {"task": "pos"})
    with pytest.raises(ValueError, match="not a checkpoint of `selfattention train images`"):
        vtrain.load_model(tmp_path / "pos")


def test_viz_image_cli(trained, fashion_dir, tmp_path, capsys):
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
    argv[argv.index("1,2")] = "9,9"
    capsys.readouterr()
    assert main(argv) == 1
    assert "ROW,COL within the 4×4 grid" in capsys.readouterr().err
    assert main(["viz", "image", "-c", str(tmp_path / "absent"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_parse_patch():
    from selfattention.apps.vision.viz_cli import parse_patch

    assert parse_patch(None, (7, 7)) == 24
    assert parse_patch("2,3", (7, 7)) == 17 and parse_patch("5", (7, 7)) == 5
    with pytest.raises(ValueError, match=r"must be in 0\.\.48"):
        parse_patch("49", (7, 7))
