"""Where a trained vision transformer looks, drawn over test images.

For each chosen test image, an :class:`ImageView` holds the per-layer weights and two figures:
``overview`` (the image, the attention of one patch in the last layer (mean of heads), that
patch's attention rollout through all layers, and the rollout averaged over all patches, which
is what the mean-pooled classifier draws on) and ``grid`` (layers × heads for the patch).
:func:`write_views` saves them as ``image_<i>.png``, ``image_<i>_grid.png`` and one HTML report
with every layer and head, the image patches standing where tokens would be.

    clf = load_classifier("results/images")
    views = image_views(clf, load_dataset(clf.dataset), ViewConfig(indices=(0, 7), patch="1,2"))
    write_views(views, clf, "results/viz-image")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from selfattention.apps.vision.classifier import Classifier
from selfattention.apps.vision.data import ImageSplits
from selfattention.apps.vision.model import VisionTransformer

__all__ = [
    "ImageView",
    "ViewConfig",
    "attention_maps",
    "image_views",
    "overview",
    "parse_patch",
    "write_views",
]


@dataclass(frozen=True)
class ViewConfig:
    """Which test images (``indices``), which query ``patch`` (None: the centre; an index k
    row-major; or "row,col") and which ``layers`` / ``heads`` in the grid ("0,3", "1-2"; None:
    all)."""

    indices: tuple[int, ...] = (0,)
    patch: str | int | None = None
    layers: str | None = None
    heads: str | None = None

    def __post_init__(self) -> None:
        indices = tuple(self.indices)
        if not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise ValueError(f"indices must be one or more integers, got {self.indices!r}")
        object.__setattr__(self, "indices", indices)


@dataclass(frozen=True)
class ImageView:
    """One test image: ``name`` (truth and prediction), ``image`` (H, W) or (H, W, c), the patch
    ``grid`` (gh, gw), ``weights`` (layers, heads, n, n), and the two figures."""

    index: int
    name: str
    image: np.ndarray
    grid: tuple[int, int]
    weights: np.ndarray
    overview: Any  # matplotlib Figure
    grid_figure: Any  # matplotlib Figure


def parse_patch(spec: str | int | None, grid: tuple[int, int]) -> int:
    """A patch index from ``None`` (centre), an int / "k" (row-major index) or "row,col"."""
    gh, gw = grid
    if spec is None:
        return (gh // 2) * gw + gw // 2
    text = str(spec).strip()
    try:
        if "," in text:
            r, c = (int(t) for t in text.split(","))
            if not (0 <= r < gh and 0 <= c < gw):
                raise ValueError
            return r * gw + c
        k = int(text)
    except ValueError:
        raise ValueError(
            f"patch must be an index in 0..{gh * gw - 1} or ROW,COL within the {gh}×{gw} "
            f"grid, got {spec!r}"
        ) from None
    if not 0 <= k < gh * gw:
        raise ValueError(f"patch must be in 0..{gh * gw - 1} for a {gh}×{gw} grid, got {k}")
    return k


@torch.no_grad()
def attention_maps(model: VisionTransformer, image: Tensor) -> tuple[Tensor, np.ndarray]:
    """Probabilities (classes,) and the weights (layers, heads, n, n) of one image (c, H, W)."""
    logits, weights = model(image[None], return_weights=True)
    return logits.softmax(-1)[0], torch.stack([w[0] for w in weights]).numpy()


def _display(image: Tensor) -> np.ndarray:
    """(c, H, W) -> what imshow takes: (H, W) grey or (H, W, c)."""
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def overview(
    img: np.ndarray, weights: np.ndarray, grid: tuple[int, int], patch: int, title: str
) -> Any:
    """Four panels: the image, the patch's last-layer attention, its rollout, the mean rollout."""
    from selfattention import viz
    from selfattention.viz.figures import new_figure

    fig = new_figure(15.0, 3.6)
    axes = fig.subplots(1, 4)
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_title(title, fontsize=10)
    last = len(weights) - 1
    panels = (
        (weights[last].mean(0), patch, f"layer {last}: patch {patch} (mean of heads)"),
        (list(weights), patch, f"rollout of patch {patch}"),
        (list(weights), None, "rollout, mean over patches"),
    )
    for ax, (w, query, label) in zip(axes[1:], panels, strict=True):
        viz.image_attention(img, w, grid, query=query, ax=ax, title=label)
    return fig


def image_views(clf: Classifier, splits: ImageSplits, config: ViewConfig) -> list[ImageView]:
    """The views of ``config.indices`` in the test split. Raises ValueError for an index or a
    patch out of range, or a layer/head selection that names none, before drawing anything."""
    from selfattention import viz

    if splits.name != clf.dataset:
        raise ValueError(f"the checkpoint was trained on {clf.dataset!r}, not on {splits.name!r}")
    n = len(splits.y_test)
    bad = [i for i in config.indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"test image index must be in 0..{n - 1}, got {bad[0]}")
    grid = clf.model.config.grid
    patch = parse_patch(config.patch, grid)
    views = []
    for index in config.indices:
        image = splits.x_test[index]
        probs, weights = attention_maps(clf.model, image)
        k = int(probs.argmax())
        truth = clf.classes[int(splits.y_test[index])]
        name = f"test {index}: {truth}, predicted {clf.classes[k]} ({float(probs[k]):.2f})"
        img = _display(image)
        title = f"{name}: attention of patch {patch}"
        grid_figure = viz.image_grid(
            img, weights, grid, query=patch, layers=config.layers, heads=config.heads, title=title
        )
        first = overview(img, weights, grid, patch, name)
        views.append(ImageView(index, name, img, grid, weights, first, grid_figure))
    return views


def write_views(views: list[ImageView], clf: Classifier, out: str | Path) -> list[Path]:
    """Save each view's PNGs and one ``report.html`` in the folder ``out``; returns the paths."""
    from selfattention import viz

    out = Path(out)
    written = []
    for v in views:
        written.append(viz.save(v.overview, out / f"image_{v.index}.png", dpi=110))
        written.append(viz.save(v.grid_figure, out / f"image_{v.index}_grid.png", dpi=90))
    cfg = clf.model.config
    sequences = [{"name": v.name, "image": v.image, "grid": v.grid, "weights": v.weights}
                 for v in views]  # fmt: skip
    written.append(
        viz.report(
            out / "report.html",
            sequences,
            title=f"Vision transformer attention ({clf.dataset})",
            description=(
                f"{cfg.depth} layers × {cfg.heads} heads over a {cfg.grid[0]}×{cfg.grid[1]} "
                f"grid of {cfg.patch_size}-pixel patches. Click a patch to see where it looks; "
                "'rollout' follows attention through the layers with the residual connection."
            ),
        )
    )
    return written
