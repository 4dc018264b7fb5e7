"""A small vision transformer built from this library's modules, and an MLP baseline.

An image is treated as a set of vectors: cut into a (gh, gw) grid of p×p patches, each patch
flattened to a vector of c·p·p pixels and projected to ``dim``; 2-D positions say where each
patch sits; self-attention lets every patch draw on every other (or, with ``neighborhood=k``,
on the k×k patches around it, a CNN-like local receptive field); the mean of the final patch
vectors is classified.

    x (b, c, H, W) -> patches (b, n, c·p·p) -> (b, n, dim) + P -> encoder -> mean over n -> logits

Legend: b batch, n = gh·gw patches, p patch side, h heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch import Tensor, nn

from selfattention.apps.vision.data import check_images
from selfattention.nn import LearnedPositions, SinusoidalPositions2D, TransformerEncoder
from selfattention.nn.neighborhood import NeighborhoodAttention2D

__all__ = [
    "MLP",
    "EncoderNeighborhoodAttention",
    "ViTConfig",
    "VisionTransformer",
    "count_parameters",
    "patchify",
]


@dataclass(frozen=True)
class ViTConfig:
    """Everything needed to rebuild a ``VisionTransformer`` (saved in the checkpoint).

    image_size: (H, W) pixels; patch_size p must divide both. channels: c.
    dim, depth, heads, ff_dim (default 2·dim): encoder width, layers, heads, MLP width.
    positions: "sin2d" (fixed, ``SinusoidalPositions2D``) or "learned" (``LearnedPositions``).
    neighborhood: None for global attention, or an odd k <= both grid sides: each patch
        attends to the k×k patches around it (``NeighborhoodAttention2D``; the window is shifted
        inward at the borders, so every patch sees k² patches).
    """

    image_size: tuple[int, int] = (28, 28)
    channels: int = 1
    patch_size: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    ff_dim: int | None = None
    num_classes: int = 10
    positions: str = "sin2d"
    neighborhood: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        h, w = self.image_size
        object.__setattr__(self, "image_size", (int(h), int(w)))
        p = self.patch_size
        if not (isinstance(p, int) and p >= 1 and h % p == 0 and w % p == 0):
            raise ValueError(f"patch_size must be a positive int dividing {h}×{w}, got {p!r}")
        if self.positions not in ("sin2d", "learned"):
            raise ValueError(f"positions must be 'sin2d' or 'learned', got {self.positions!r}")
        k = self.neighborhood
        if k is not None and not (isinstance(k, int) and k % 2 == 1 and 1 <= k <= min(self.grid)):
            raise ValueError(
                f"neighborhood must be None or an odd int in 1..{min(self.grid)} (the patch grid "
                f"is {self.grid[0]}×{self.grid[1]}), got {k!r}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """(gh, gw) patches."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"unknown ViTConfig field(s) {sorted(unknown)}; known: {sorted(names)}"
            )
        kw = dict(d)
        if "image_size" in kw:
            kw["image_size"] = tuple(kw["image_size"])
        return cls(**kw)


def patchify(x: Tensor, p: int) -> Tensor:
    """Images (b, c, H, W) -> patch vectors (b, gh·gw, c·p·p), patches row-major over the grid."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)  # (b, c, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (b, gh, gw, c, p, p)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


class EncoderNeighborhoodAttention(NeighborhoodAttention2D):
    """``NeighborhoodAttention2D`` with the call signature of ``SelfAttention``, so that it can
    stand in a ``TransformerEncoderLayer`` as ``layer.attn`` (it takes no mask or bias: the
    neighbourhood is the mask, and the kernel skips the work outside it)."""

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if context is not None or mask is not None or bias is not None:
            raise ValueError("neighbourhood attention takes no context, mask or bias")
        return super().forward(x, return_weights=return_weights)


class VisionTransformer(nn.Module):
    """ViT classifier: patch vectors, 2-D positions, a pre-norm ``TransformerEncoder``, mean pool.

    ``forward(images, return_weights=False)``: images (b, c, H, W) in [0, 1] -> logits
    (b, num_classes), or (logits, weights) with ``weights`` a tuple of per-layer (b, h, n, n).
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        gh, gw = config.grid
        p, c = config.patch_size, config.channels
        self.patch_proj = nn.Linear(c * p * p, config.dim)
        if config.positions == "sin2d":
            self.positions: nn.Module = SinusoidalPositions2D(config.dim, gh, gw)
        else:
            self.positions = LearnedPositions(gh * gw, config.dim)
        self.encoder = TransformerEncoder(
            config.depth,
            config.dim,
            config.heads,
            ff_dim=config.ff_dim or 2 * config.dim,
            dropout=config.dropout,
            norm_first=True,
        )
        if config.neighborhood is not None:
            # Each layer's global attention becomes k×k neighbourhood attention (same weights).
            for layer in self.encoder.layers:
                layer.attn = EncoderNeighborhoodAttention(
                    config.dim, config.heads, config.neighborhood, (gh, gw)
                )
        self.head = nn.Linear(config.dim, config.num_classes)

    def forward(
        self, images: Tensor, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        cfg = self.config
        x = check_images(images, cfg.channels, cfg.image_size)
        x = (x - 0.5) / 0.5  # pixels to [-1, 1]
        x = self.positions(self.patch_proj(patchify(x, cfg.patch_size)))  # (b, n, dim)
        out = self.encoder(x, return_weights=return_weights)
        logits = self.head(out.last_hidden_state.mean(dim=1))  # (b, num_classes)
        return (logits, out.weights) if return_weights else logits


class MLP(nn.Module):
    """The baseline: pixels -> ``hidden`` -> ``hidden`` -> classes, GELU, no notion of patches."""

    def __init__(
        self, image_size: tuple[int, int], channels: int, hidden: int, num_classes: int
    ) -> None:
        super().__init__()
        self.image_size, self.channels = tuple(image_size), channels
        inputs = channels * image_size[0] * image_size[1]
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        x = check_images(images, self.channels, self.image_size)
        return self.net((x.flatten(1) - 0.5) / 0.5)

    @staticmethod
    def hidden_for(params: int, image_size: tuple[int, int], channels: int, classes: int) -> int:
        """The width whose parameter count is closest to ``params``: solves
        w² + (inputs + classes + 2)·w + classes = params for w."""
        a = channels * image_size[0] * image_size[1] + classes + 2
        w = (-a + (a * a + 4 * max(params - classes, 0)) ** 0.5) / 2
        return max(1, round(w))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
