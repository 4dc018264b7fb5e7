"""``selfattention viz image``: where a trained vision transformer looks, drawn over test images.

For each chosen test image: the attention of one patch (last layer, mean of heads), the
attention rollout of that patch through all layers, and the rollout averaged over all patches
(what the mean-pooled classifier draws on), side by side (``image_<i>.png``); a layers × heads
grid for the patch (``image_<i>_grid.png``); and one HTML report with every layer and head, the
image patches standing where tokens would be.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["add_viz_image_arguments", "attention_maps", "parse_patch", "run_viz_image"]


def add_viz_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``selfattention viz image``."""
    parser.add_argument(
        "--checkpoint",
        "-c",
        type=Path,
        default=Path("results") / "images",
        help="checkpoint of `selfattention train images` (default: results/images)",
    )
    parser.add_argument(
        "--index",
        "-i",
        type=int,
        nargs="+",
        default=[0],
        help="test image index(es) (default: 0)",
    )
    parser.add_argument(
        "--patch",
        "-p",
        default=None,
        help="query patch: index (row-major) or ROW,COL; default: the centre patch",
    )
    parser.add_argument("--layers", help="layers in the grid PNG, e.g. '0,3' or '1-2'")
    parser.add_argument("--heads", help="heads in the grid PNG, e.g. '0-1'")
    parser.add_argument("--data-dir", type=Path, help="directory with the Fashion-MNIST idx files")
    parser.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("results") / "viz-image",
        help="output directory (default: results/viz-image)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


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
            f"--patch must be an index in 0..{gh * gw - 1} or ROW,COL within the {gh}×{gw} "
            f"grid, got {spec!r}"
        ) from None
    if not 0 <= k < gh * gw:
        raise ValueError(f"--patch must be in 0..{gh * gw - 1} for a {gh}×{gw} grid, got {k}")
    return k


@torch.no_grad()
def attention_maps(model, image: Tensor) -> tuple[Tensor, np.ndarray]:
    """Probabilities (classes,) and the weights (L, H, n, n) of one image (c, H, W)."""
    logits, weights = model(image[None], return_weights=True)
    return logits.softmax(-1)[0], torch.stack([w[0] for w in weights]).numpy()


def _display(image: Tensor) -> np.ndarray:
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def overview(img: np.ndarray, weights: np.ndarray, grid, patch: int, title: str):
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


def run_viz_image(args: argparse.Namespace) -> int:
    """Draw the PNGs and the HTML report; returns 0 (errors raise ValueError with the reason)."""
    from selfattention import viz
    from selfattention.apps.vision.data import load_dataset
    from selfattention.apps.vision.train import load_model

    torch.set_num_threads(max(1, getattr(args, "threads", 1)))
    model, config = load_model(args.checkpoint)
    splits = load_dataset(config["dataset"], root=getattr(args, "data_dir", None))
    grid = model.config.grid
    patch = parse_patch(args.patch, grid)
    classes = config["classes"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sequences, written = [], []
    for index in args.index:
        if not 0 <= index < len(splits.y_test):
            raise ValueError(f"--index must be in 0..{len(splits.y_test) - 1}, got {index}")
        image = splits.x_test[index]
        probs, weights = attention_maps(model, image)
        k = int(probs.argmax())
        truth = classes[int(splits.y_test[index])]
        name = f"test {index}: {truth}, predicted {classes[k]} ({float(probs[k]):.2f})"
        img = _display(image)
        fig = overview(img, weights, grid, patch, name)
        written.append(viz.save(fig, out / f"image_{index}.png", dpi=110))
        title = f"{name}: attention of patch {patch}"
        fig = viz.image_grid(
            img, weights, grid, query=patch, layers=args.layers, heads=args.heads, title=title
        )
        written.append(viz.save(fig, out / f"image_{index}_grid.png", dpi=90))
        sequences.append({"name": name, "image": img, "grid": grid, "weights": weights})
    written.append(
        viz.report(
            out / "report.html",
            sequences,
            title=f"Vision transformer attention ({config['dataset']})",
            description=(
                f"{model.config.depth} layers × {model.config.heads} heads over a "
                f"{grid[0]}×{grid[1]} grid of {model.config.patch_size}-pixel patches. "
                "Click a patch to see where it looks; 'rollout' follows attention through "
                "the layers with the residual connection."
            ),
        )
    )
    for path in written:
        print(path)
    return 0
