"""Use a trained checkpoint: load it, score it on the test split, classify images.

clf = load_classifier("results/images")
splits = load_dataset(clf.dataset)
evaluate(clf, splits)["test_accuracy"]
predict(clf, splits.x_test[:2])  # [Prediction(9, 'Ankle boot', 0.97), Prediction(2, ...)]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfattention.apps import training
from selfattention.apps.vision.data import ImageSplits, check_finite, check_images
from selfattention.apps.vision.model import VisionTransformer, ViTConfig

__all__ = ["Classifier", "Prediction", "evaluate", "load_classifier", "predict"]


@dataclass(frozen=True)
class Classifier:
    """A trained ViT in eval mode, the class names it predicts and the data set it learned."""

    model: VisionTransformer
    classes: tuple[str, ...]
    dataset: str


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one image: its ``index``, ``label`` and ``probability``."""

    index: int
    label: str
    probability: float


def load_classifier(checkpoint: str | Path) -> Classifier:
    """The ViT saved by ``train`` in ``checkpoint``.

    Raises ValueError (``CheckpointError``) when the folder is missing or damaged, or holds
    another task's checkpoint."""
    state, saved = training.load_checkpoint(checkpoint)
    if saved.get("task") != "images" or "vit" not in saved:
        raise ValueError(
            f"{checkpoint} is not a checkpoint of `selfattention train images` "
            f"(its config.json has task={saved.get('task')!r})"
        )
    model = VisionTransformer(ViTConfig.from_dict(saved["vit"]))
    model.load_state_dict(state)
    model.eval()
    return Classifier(model, tuple(saved["classes"]), str(saved["dataset"]))


def _as_classifier(checkpoint: Classifier | str | Path) -> Classifier:
    return checkpoint if isinstance(checkpoint, Classifier) else load_classifier(checkpoint)


@torch.no_grad()
def _predicted(model: VisionTransformer, x: Tensor, batch_size: int = 500) -> Tensor:
    """Probabilities (n, classes) of images (n, c, H, W), in batches."""
    return torch.cat(
        [model(x[i : i + batch_size]).softmax(-1) for i in range(0, len(x), batch_size)]
    )


def evaluate(checkpoint: Classifier | str | Path, splits: ImageSplits) -> dict:
    """Test accuracy, overall and per class, of ``checkpoint`` on ``splits``' test split."""
    clf = _as_classifier(checkpoint)
    if splits.name != clf.dataset:
        raise ValueError(f"the checkpoint was trained on {clf.dataset!r}, not on {splits.name!r}")
    pred = _predicted(clf.model, splits.x_test).argmax(-1)
    per_class = {
        name: float((pred[splits.y_test == k] == k).float().mean())
        for k, name in enumerate(splits.classes)
        if bool((splits.y_test == k).any())
    }
    return {
        "dataset": splits.name,
        "test_images": len(splits.y_test),
        "test_accuracy": float((pred == splits.y_test).float().mean()),
        "per_class_accuracy": per_class,
    }


def predict(checkpoint: Classifier | str | Path, images: Tensor) -> list[Prediction]:
    """The most probable class of each image: images (n, c, H, W), (c, H, W) or grey (H, W),
    floats in [0, 1].

    Raises ValueError for a wrong shape and for NaN/inf values (how many), TypeError for a
    wrong type or dtype.
    """
    clf = _as_classifier(checkpoint)
    cfg = clf.model.config
    x = check_finite(check_images(images, cfg.channels, cfg.image_size), "images")
    probs = _predicted(clf.model, x)
    best = probs.argmax(-1)
    return [
        Prediction(int(k), clf.classes[int(k)], float(p[k]))
        for k, p in zip(best, probs, strict=True)
    ]
