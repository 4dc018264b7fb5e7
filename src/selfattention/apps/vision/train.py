"""``selfattention train|evaluate|predict images``: a vision transformer on Fashion-MNIST or digits.

Training holds out part of the training split as dev (for early stopping and picking the best
epoch); the test split is touched once, at the end. With ``--baseline`` (the default) an MLP with
the same number of parameters is trained the same way beside it, for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfattention.apps import training
from selfattention.apps.vision.data import ImageSplits, check_images, load_dataset
from selfattention.apps.vision.model import MLP, VisionTransformer, ViTConfig, count_parameters

__all__ = ["add_arguments", "evaluate", "load_model", "predict", "train"]

# Per data set: defaults chosen so that the Fashion-MNIST run fits in 15 minutes on 2 cores.
DEFAULTS: dict[str, dict] = {
    "fashion-mnist": dict(
        patch_size=7, dim=96, depth=6, heads=4, epochs=10, batch_size=128, lr=1e-3,
        dev_size=5000, shift=0, flip=False, time_limit=14 * 60,
    ),
    "digits": dict(
        patch_size=2, dim=64, depth=4, heads=4, epochs=60, batch_size=64, lr=2e-3,
        dev_size=144, shift=1, flip=False, time_limit=None,
    ),
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, mode: str = "train") -> None:
    """Options of the images task for ``mode`` ("train", "evaluate" or "predict"): the data
    options in every mode, the model and training options only for training."""
    # One thread by default: with other work on a 2-core machine, two OpenMP threads made the
    # digits run 5x slower (244 s vs 49 s wall); alone, two threads gain only about 1.5x.
    parser.set_defaults(threads=1)
    g = parser.add_argument_group("images")
    g.add_argument(
        "--dataset",
        choices=sorted(DEFAULTS),
        default="fashion-mnist",
        help="fashion-mnist (Debian's dataset-fashion-mnist) or digits (scikit-learn, 8x8)",
    )
    g.add_argument("--data-dir", type=Path, help="directory with the Fashion-MNIST idx files")
    g.add_argument("--limit", type=int, help="use only the first N images of each split")
    if mode != "train":
        return
    g.add_argument("--patch-size", type=int, help="patch side p in pixels (must divide the image)")
    g.add_argument("--dim", type=int, help="model width (divisible by 4 and by --heads)")
    g.add_argument("--depth", type=int, help="encoder layers")
    g.add_argument("--heads", type=int, help="attention heads")
    g.add_argument("--positions", choices=["sin2d", "learned"], default="sin2d")
    g.add_argument(
        "--neighborhood",
        type=int,
        metavar="K",
        help="each patch attends only to the KxK patches around it (odd K); default: all patches",
    )
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate (linear warm-up, linear decay)")
    g.add_argument("--dev-size", type=int, help="training images held out as dev")
    g.add_argument("--time-limit", type=float, help="stop training after this many seconds")
    g.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no random shifts or flips"
    )
    g.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not train the same-size MLP beside it",
    )


def _setting(args: argparse.Namespace, name: str):
    value = getattr(args, name, None)
    return DEFAULTS[args.dataset][name] if value is None else value


def _load(args: argparse.Namespace) -> ImageSplits:
    return load_dataset(args.dataset, root=getattr(args, "data_dir", None), limit=args.limit)


def _batches(
    x: Tensor, y: Tensor, batch_size: int, *, seed: int | None, shift: int = 0, flip: bool = False
) -> Iterator[tuple[tuple[Tensor], Tensor]]:
    """Mini-batches ((images,), labels); shuffled with ``seed`` and augmented when seed is set."""
    n = len(y)
    if seed is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        xb = x[idx]
        if seed is not None and (shift or flip):
            xb = augment(xb, shift, flip, torch.Generator().manual_seed(seed * 100003 + start))
        yield (xb,), y[idx]


class _Epochs:
    """``f(epoch) -> batches`` for ``training.fit`` with a known length (for the lr schedule)."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, shift: int, flip: bool):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.shift, self.flip = seed, shift, flip

    def __call__(self, epoch: int) -> list:
        seed = self.seed * 1000 + epoch
        return list(
            _batches(self.x, self.y, self.batch_size, seed=seed, shift=self.shift, flip=self.flip)
        )


def augment(x: Tensor, shift: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero fill) and, if ``flip``, mirror half.

    x (b, c, H, W) -> (b, c, H, W).
    """
    b, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        rows = dy[:, None] + torch.arange(h)  # (b, H)
        cols = dx[:, None] + torch.arange(w)  # (b, W)
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (b, H, W, c)
        x = x.permute(0, 3, 1, 2).contiguous()
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


def _loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y)


def _metric(logits: Tensor, y: Tensor) -> tuple[int, int]:
    return int((logits.argmax(-1) == y).sum()), len(y)


def _config(args: argparse.Namespace, splits: ImageSplits) -> ViTConfig:
    c, h, w = splits.image_shape
    return ViTConfig(
        image_size=(h, w),
        channels=c,
        patch_size=_setting(args, "patch_size"),
        dim=_setting(args, "dim"),
        depth=_setting(args, "depth"),
        heads=_setting(args, "heads"),
        num_classes=len(splits.classes),
        positions=getattr(args, "positions", "sin2d"),
        neighborhood=getattr(args, "neighborhood", None),
    )


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = sum(_metric(model(xb), yb)[0] for (xb,), yb in _batches(x, y, batch_size, seed=None))
    return correct / len(y)


def _fit(model: nn.Module, name: str, args, train_xy, dev_xy, out_dir: Path, config: dict) -> dict:
    batch_size = _setting(args, "batch_size")
    epochs = _setting(args, "epochs")
    batches = (
        _Epochs(*train_xy, batch_size, args.seed, _setting(args, "shift"), _setting(args, "flip"))
        if getattr(args, "augment", True)
        else _Epochs(*train_xy, batch_size, args.seed, 0, False)
    )
    steps = -(-len(train_xy[1]) // batch_size)
    print(f"{name}: {count_parameters(model):,} parameters, {epochs} epochs", flush=True)
    result = training.fit(
        model,
        batches,
        list(_batches(*dev_xy, 500, seed=None)),
        loss_fn=_loss,
        metric_fn=_metric,
        epochs=epochs,
        lr=_setting(args, "lr"),
        patience=epochs,  # the schedule decays to 0 at the end: keep the best epoch, no early stop
        out_dir=out_dir,
        resume=getattr(args, "resume", False),
        progress=getattr(args, "progress", True),
        config=config,
        weight_decay=0.05,
        warmup_steps=min(steps // 2, 200),
        decay=True,
        time_limit=_setting(args, "time_limit"),
    )
    return result


def train(args: argparse.Namespace) -> dict:
    """Train the ViT (and the same-size MLP), save to ``args.checkpoint``, return the metrics."""
    training.set_seed(args.seed)
    splits = _load(args)
    dev_size = min(_setting(args, "dev_size"), len(splits.y_train) // 5)
    # A fixed random dev split from the training images (the test split stays untouched).
    order = torch.randperm(len(splits.y_train), generator=torch.Generator().manual_seed(12345))
    dev_idx, train_idx = order[:dev_size], order[dev_size:]
    train_xy = splits.x_train[train_idx], splits.y_train[train_idx]
    dev_xy = splits.x_train[dev_idx], splits.y_train[dev_idx]
    cfg = _config(args, splits)
    model = VisionTransformer(cfg)
    checkpoint = Path(args.checkpoint)
    config = {
        "task": "images",
        "dataset": splits.name,
        "classes": list(splits.classes),
        "vit": cfg.to_dict(),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    result = _fit(model, "vit", args, train_xy, dev_xy, checkpoint, config)
    vit_seconds, vit_cpu = time.perf_counter() - t0, time.process_time() - c0
    params = count_parameters(model)
    metrics = {
        "dataset": splits.name,
        "threads": torch.get_num_threads(),
        "train_images": len(train_idx),
        "dev_images": dev_size,
        "test_images": len(splits.y_test),
        "vit": {
            "parameters": params,
            "config": cfg.to_dict(),
            "test_accuracy": _accuracy(model, splits.x_test, splits.y_test),
            "best_dev_accuracy": result["best_dev_accuracy"],
            "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"],
            "stopped": result["stopped"],
            "train_seconds": vit_seconds,
            "train_cpu_seconds": vit_cpu,
        },
    }
    if getattr(args, "baseline", True):
        c, h, w = splits.image_shape
        hidden = MLP.hidden_for(params, (h, w), c, len(splits.classes))
        training.set_seed(args.seed)
        mlp = MLP((h, w), c, hidden, len(splits.classes))
        t0, c0 = time.perf_counter(), time.process_time()
        base = _fit(mlp, "mlp", args, train_xy, dev_xy, checkpoint / "mlp", {"hidden": hidden})
        metrics["mlp"] = {
            "parameters": count_parameters(mlp),
            "hidden": hidden,
            "test_accuracy": _accuracy(mlp, splits.x_test, splits.y_test),
            "best_dev_accuracy": base["best_dev_accuracy"],
            "epochs_run": base["epochs_run"],
            "train_seconds": time.perf_counter() - t0,
            "train_cpu_seconds": time.process_time() - c0,
        }
    training.write_metrics(checkpoint / "metrics.json", metrics)
    return metrics


def load_model(checkpoint: str | Path) -> tuple[VisionTransformer, dict]:
    """The trained ViT from a ``train images`` checkpoint (eval mode) and its saved config."""
    state, config = training.load_checkpoint(checkpoint)
    if config.get("task") != "images" or "vit" not in config:
        raise ValueError(
            f"{checkpoint} is not a checkpoint of `selfattention train images` "
            f"(its config.json has task={config.get('task')!r})"
        )
    model = VisionTransformer(ViTConfig.from_dict(config["vit"]))
    model.load_state_dict(state)
    model.eval()
    return model, config


def _splits_for(args: argparse.Namespace, config: dict) -> ImageSplits:
    if args.dataset != config["dataset"]:
        args.dataset = config["dataset"]  # the checkpoint knows its data set
    return _load(args)


def evaluate(args: argparse.Namespace) -> dict:
    """Test accuracy (overall and per class) of the checkpoint."""
    model, config = load_model(args.checkpoint)
    splits = _splits_for(args, config)
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(-1) for (xb,), _ in _batches(
            splits.x_test, splits.y_test, 500, seed=None)])  # fmt: skip
    per_class = {
        name: float((pred[splits.y_test == k] == k).float().mean())
        for k, name in enumerate(splits.classes)
        if bool((splits.y_test == k).any())
    }
    metrics = {
        "dataset": splits.name,
        "test_images": len(splits.y_test),
        "test_accuracy": float((pred == splits.y_test).float().mean()),
        "per_class_accuracy": per_class,
    }
    training.write_metrics(Path(args.checkpoint) / "evaluation.json", metrics)
    return metrics


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> Tensor:
    """An image file for ``predict``: .npy (H, W) or (C, H, W), or .png (read with matplotlib).

    Values are scaled to [0, 1] (uint8 / 255). Raises ValueError naming the file on bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".png":
            import matplotlib.image as mpimg

            array = mpimg.imread(path)  # (H, W) or (H, W, C), float in [0, 1]
            if array.ndim == 3:
                array = array[..., :3].mean(-1) if channels == 1 else array.transpose(2, 0, 1)
        else:
            raise ValueError(f"image file {path}: expected .npy or .png, got {path.suffix!r}")
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image file {path}: {e}") from e
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"cannot read image file {path}: {e}") from e
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"image file {path}: expected uint8 (0..255) or floats in [0, 1], got {array.dtype}"
        )
    return check_images(torch.as_tensor(np.asarray(array, dtype=np.float32)), channels, size,
                        name=f"image {path}")  # fmt: skip


def predict(args: argparse.Namespace) -> int:
    """Print the class of each input: a test-image index (an integer) or a .npy/.png file."""
    model, config = load_model(args.checkpoint)
    inputs = list(args.inputs or [])
    if getattr(args, "file", None):
        inputs += [
            line.strip() for line in Path(args.file).read_text().splitlines() if line.strip()
        ]
    if not inputs:
        raise ValueError("predict images: give test-image indices or .npy/.png files as inputs")
    cfg, classes = model.config, config["classes"]
    splits = None
    for item in inputs:
        truth = ""
        if item.lstrip("-").isdigit():
            splits = splits or _splits_for(args, config)
            i = int(item)
            if not 0 <= i < len(splits.y_test):
                raise ValueError(f"test index must be in 0..{len(splits.y_test) - 1}, got {i}")
            x, truth = splits.x_test[i], f"  (true: {classes[int(splits.y_test[i])]})"
        else:
            x = read_image(item, cfg.channels, cfg.image_size)
        with torch.no_grad():
            p = model(x).softmax(-1)[0]
        k = int(p.argmax())
        print(f"{item}\t{classes[k]}\t{float(p[k]):.3f}{truth}")
    return 0
