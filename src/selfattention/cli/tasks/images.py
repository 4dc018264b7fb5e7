"""``selfattention train|evaluate|predict images``: options -> :mod:`selfattention.apps.vision`.

train     --dataset digits|fashion-mnist [model and training options] -> metrics
evaluate  the checkpoint on its data set's test split -> metrics (also CHECKPOINT/evaluation.json)
predict   INPUT...: test-image indices or .npy/.png files -> a line each: input, class, probability
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfattention.apps.vision.config import DATASET_DEFAULTS, DATASETS
from selfattention.cli.tasks import positive_float, positive_int, read_inputs, train_with_args

__all__ = ["add_arguments", "evaluate", "predict", "train"]


def add_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """The images options of ``mode`` ("train", "evaluate" or "predict"): the data options in
    every mode, the data set and the model and training options only for training (a checkpoint
    knows its data set and its model)."""
    # One thread by default: with other processes busy on the CPU, two OpenMP threads made the
    # digits run 5x slower (244 s vs 49 s wall); alone, two threads gain only about 1.5x.
    parser.set_defaults(threads=1)
    g = parser.add_argument_group("images")
    if mode == "train":
        g.add_argument(
            "--dataset",
            choices=DATASETS,
            default="fashion-mnist",
            help="fashion-mnist (`selfattention data fetch fashion-mnist`) or digits "
            "(scikit-learn's 8x8 digits); default: fashion-mnist",
        )
    g.add_argument("--data-dir", type=Path, help="folder with the Fashion-MNIST idx files")
    g.add_argument("--limit", type=positive_int, help="use only the first N images of each split")
    if mode != "train":
        return
    fashion, digits = DATASET_DEFAULTS["fashion-mnist"], DATASET_DEFAULTS["digits"]

    def default(name: str) -> str:
        return f"default: {fashion[name]} (fashion-mnist), {digits[name]} (digits)"

    g.add_argument(
        "--patch-size",
        type=positive_int,
        help=f"patch side p in pixels, must divide the image; {default('patch_size')}",
    )
    g.add_argument(
        "--dim",
        type=positive_int,
        help=f"model width, divisible by 4 and by --heads; {default('dim')}",
    )
    g.add_argument("--depth", type=positive_int, help=f"encoder layers; {default('depth')}")
    g.add_argument("--heads", type=positive_int, help=f"attention heads; {default('heads')}")
    g.add_argument(
        "--positions",
        choices=["sin2d", "learned"],
        default="sin2d",
        help="2-D sinusoidal or learned positions (default: sin2d)",
    )
    g.add_argument(
        "--neighborhood",
        type=positive_int,
        metavar="K",
        help="each patch attends only to the KxK patches around it (odd K); default: all patches",
    )
    g.add_argument("--epochs", type=positive_int, help=default("epochs"))
    g.add_argument("--batch-size", type=positive_int, help=default("batch_size"))
    g.add_argument(
        "--lr",
        type=positive_float,
        help=f"peak learning rate (linear warm-up, linear decay); {default('lr')}",
    )
    g.add_argument(
        "--dev-size",
        type=positive_int,
        help=f"training images held out as dev; {default('dev_size')}",
    )
    g.add_argument(
        "--time-limit",
        type=positive_float,
        metavar="SECONDS",
        help=f"stop training after this long; {default('time_limit')}",
    )
    g.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no random shifts or flips"
    )
    g.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not train the same-size MLP beside it",
    )


def _check_data_dir(args: argparse.Namespace, dataset: str) -> None:
    if args.data_dir is not None and dataset != "fashion-mnist":
        raise ValueError(f"--data-dir is for fashion-mnist; this run uses {dataset!r}")


def train(args: argparse.Namespace) -> dict:
    """Train on ``--dataset`` and save to ``--checkpoint``; returns the metrics."""
    from selfattention.apps.vision.config import ImageTaskConfig
    from selfattention.apps.vision.data import load_dataset
    from selfattention.apps.vision.train import train as train_images

    # The options are checked before the data is loaded: a typo costs no waiting.
    config = ImageTaskConfig.for_dataset(
        args.dataset,
        patch_size=args.patch_size,
        dim=args.dim,
        depth=args.depth,
        heads=args.heads,
        positions=args.positions,
        neighborhood=args.neighborhood,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        dev_size=args.dev_size,
        time_limit=args.time_limit,
        shift=None if args.augment else 0,
        flip=None if args.augment else False,
        baseline=args.baseline,
        seed=args.seed,
    )
    _check_data_dir(args, args.dataset)
    if args.checkpoint.exists() and not args.checkpoint.is_dir():
        raise ValueError(f"--checkpoint {args.checkpoint} is a file; give a folder")
    splits = load_dataset(args.dataset, root=args.data_dir, limit=args.limit)
    return train_with_args(train_images, config, splits, args)


def evaluate(args: argparse.Namespace) -> dict:
    """Test accuracy of ``--checkpoint`` on its data set; also written to evaluation.json."""
    from selfattention.apps.training import write_metrics
    from selfattention.apps.vision.classifier import evaluate as evaluate_images
    from selfattention.apps.vision.classifier import load_classifier
    from selfattention.apps.vision.data import load_dataset

    clf = load_classifier(args.checkpoint)
    _check_data_dir(args, clf.dataset)
    metrics = evaluate_images(clf, load_dataset(clf.dataset, root=args.data_dir, limit=args.limit))
    write_metrics(Path(args.checkpoint) / "evaluation.json", metrics)
    return metrics


def predict(args: argparse.Namespace) -> int:
    """Print ``input<TAB>class<TAB>probability`` for each input: a test-image index (with the
    true class) or a .npy/.png file. Every input is read and checked before any is printed."""
    import torch

    from selfattention.apps.vision.classifier import load_classifier
    from selfattention.apps.vision.classifier import predict as predict_images
    from selfattention.apps.vision.data import load_dataset, read_image

    clf = load_classifier(args.checkpoint)
    cfg = clf.model.config
    items = read_inputs(args)
    splits, images, truths = None, [], []
    for item in items:
        if item.strip().lstrip("-").isdigit():
            if splits is None:
                _check_data_dir(args, clf.dataset)
                splits = load_dataset(clf.dataset, root=args.data_dir, limit=args.limit)
            i, n = int(item.strip()), len(splits.y_test)
            if not 0 <= i < n:
                raise ValueError(f"test image index must be in 0..{n - 1}, got {i}")
            images.append(splits.x_test[i : i + 1])
            truths.append(f"  (true: {clf.classes[int(splits.y_test[i])]})")
        else:
            images.append(read_image(item, cfg.channels, cfg.image_size))
            truths.append("")
    predictions = predict_images(clf, torch.cat(images))
    for item, p, truth in zip(items, predictions, truths, strict=True):
        print(f"{item}\t{p.label}\t{p.probability:.3f}{truth}")
    return 0
