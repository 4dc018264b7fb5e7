"""Images as sets of patch vectors: a small vision transformer, its data and its attention views.

selfattention.apps.vision.data    # idx reader, Fashion-MNIST, scikit-learn's 8x8 digits
selfattention.apps.vision.model   # VisionTransformer (ViTConfig), the same-size MLP baseline
selfattention.apps.vision.train   # `selfattention train|evaluate|predict images`
selfattention.apps.vision.viz_cli # `selfattention viz image`: patch attention and rollout
"""

from __future__ import annotations

import argparse

__all__ = ["add_viz_image_arguments", "run_viz_image"]


def add_viz_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``selfattention viz image`` (see ``viz_cli``)."""
    from selfattention.apps.vision.viz_cli import add_viz_image_arguments as add

    add(parser)


def run_viz_image(args: argparse.Namespace) -> int:
    """``selfattention viz image``: patch attention and rollout over test images.

    Bad input (a missing or foreign checkpoint, an index or patch out of range, missing data)
    is reported on stderr with exit status 1."""
    import sys

    from selfattention.apps.datasets import DataUnavailable
    from selfattention.apps.vision.viz_cli import run_viz_image as run

    try:
        return run(args)
    except (ValueError, TypeError, DataUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
