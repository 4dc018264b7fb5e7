"""Image data: an idx reader (the MNIST file format), Fashion-MNIST and scikit-learn's 8×8 digits.

Every loader returns :class:`ImageSplits`: float32 images (n, c, h, w) scaled to [0, 1] and int64
labels (n,), for a train and a test split, plus the class names.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FASHION_CLASSES",
    "ImageSplits",
    "check_finite",
    "check_images",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "read_image",
]

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# idx type byte -> NumPy dtype (big-endian for the multi-byte ones, as the format specifies).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class ImageSplits:
    """Train and test images (n, c, h, w) float32 in [0, 1], labels (n,) int64, class names."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic 0x0000TTDD, D big-endian uint32 sizes, data.

    Raises ValueError naming the file when the header or the length is wrong.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read idx file {path}: {e.strerror or e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path} looks gzipped but does not decompress: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path} is not an idx file: expected magic 00 00 <type> <ndim>, got {raw[:4].hex()}"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: idx header truncated ({len(raw)} bytes for {ndim} sizes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(raw) - header}"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _as_images(array: np.ndarray, scale: float) -> Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / scale)
    return x.unsqueeze(1) if x.ndim == 3 else x  # (n, h, w) -> (n, 1, h, w)


def load_fashion_mnist(root: str | Path | None = None, limit: int | None = None) -> ImageSplits:
    """Fashion-MNIST from ``root`` (default: where ``selfattention data fetch fashion-mnist``
    installed it). Never installs anything: missing data raises ``DataUnavailable`` naming the
    ``data fetch`` command to run.

    ``limit`` keeps the first ``limit`` images of each split (for quick runs and tests).
    """
    _check_limit(limit)
    if root is None:
        from selfattention.apps import datasets

        root = datasets.require("fashion-mnist")
    root = Path(root)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{root}: {prefix} images {images.shape} and labels {labels.shape} do not match"
            )
        parts[split] = (images[:limit], labels[:limit])
    return ImageSplits(
        x_train=_as_images(parts["train"][0], 255.0),
        y_train=torch.from_numpy(parts["train"][1].astype(np.int64)),
        x_test=_as_images(parts["test"][0], 255.0),
        y_test=torch.from_numpy(parts["test"][1].astype(np.int64)),
        classes=FASHION_CLASSES,
        name="fashion-mnist",
    )


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise ValueError(f"{root} has no {stem}(.gz); expected the four Fashion-MNIST idx files")


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageSplits:
    """scikit-learn's 1,797 8×8 digits (values 0..16), split per class with a fixed seed."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images, labels = bunch.images, bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # stratified: the same fraction of every digit
        idx = rng.permutation(np.flatnonzero(labels == c))
        test[idx[: round(len(idx) * test_fraction)]] = True
    return ImageSplits(
        x_train=_as_images(images[~test], 16.0),
        y_train=torch.from_numpy(labels[~test]),
        x_test=_as_images(images[test], 16.0),
        y_test=torch.from_numpy(labels[test]),
        classes=tuple(str(d) for d in range(10)),
        name="digits",
    )


def load_dataset(
    name: str, root: str | Path | None = None, limit: int | None = None
) -> ImageSplits:
    """``"fashion-mnist"`` or ``"digits"``."""
    if name == "fashion-mnist":
        return load_fashion_mnist(root, limit=limit)
    if name == "digits":
        _check_limit(limit)
        splits = load_digits()
        if limit is not None:
            splits = ImageSplits(
                splits.x_train[:limit],
                splits.y_train[:limit],
                splits.x_test[:limit],
                splits.y_test[:limit],
                splits.classes,
                splits.name,
            )
        return splits
    raise ValueError(f"dataset must be 'fashion-mnist' or 'digits', got {name!r}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")


def check_images(x: Tensor, channels: int, size: tuple[int, int], name: str = "images") -> Tensor:
    """Check a batch (n, c, h, w), a single image (c, h, w) or a grey image (h, w) against the
    model's ``channels`` and ``size``; returns it as (n, c, h, w) float32.

    Raises TypeError for a non-tensor and ValueError naming what was expected and what came.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    expected = f"(n, {channels}, {size[0]}, {size[1]})"
    if x.ndim == 2 and channels == 1:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)}, "
            f"expected {expected})"
        )
    if tuple(x.shape[2:]) != tuple(size):
        raise ValueError(
            f"{name} must be {size[0]}×{size[1]} pixels, got {x.shape[2]}×{x.shape[3]} "
            f"(expected {expected})"
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be floating point in [0, 1], got dtype {x.dtype}")
    return x.float()


def check_finite(x: Tensor, name: str = "images") -> Tensor:
    """Refuse NaN and ±inf: a classifier would turn them into a confident-looking answer.

    Raises ValueError naming ``name`` and how many of the values are not finite."""
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(
            f"{name}: {bad} of {x.numel()} values are not finite (NaN or inf); "
            "expected pixel values in [0, 1]"
        )
    return x


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> Tensor:
    """One image file as (1, c, h, w) float32 in [0, 1]: .npy (H, W) or (C, H, W), or .png.

    uint8 arrays are scaled by 1/255; float arrays must already be in [0, 1] and finite.
    Raises ValueError naming the file and what was wrong (missing, unreadable, wrong shape,
    dtype or values).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise ValueError(f"image file {path}: expected .npy or .png, got {path.suffix!r}")
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            import matplotlib.image as mpimg

            array = mpimg.imread(path)  # (H, W) or (H, W, C), float in [0, 1]
            if array.ndim == 3:
                array = array[..., :3].mean(-1) if channels == 1 else array.transpose(2, 0, 1)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # numpy and PIL say "cannot load" in many ways; the file name is what the user needs.
        raise ValueError(f"cannot read image file {path}: {e}") from e
    if not isinstance(array, np.ndarray):
        raise ValueError(f"cannot read image file {path}: it holds no array")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"image file {path}: expected uint8 (0..255) or floats in [0, 1], got {array.dtype}"
        )
    name = f"image file {path}"
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    x = check_images(x, channels, size, name=name)
    check_finite(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:  # e.g. 0..255 saved as floats: the model would see noise
        raise ValueError(
            f"{name}: float values must be in [0, 1], got {lo:g}..{hi:g} "
            "(divide by 255, or save the image as uint8)"
        )
    return x
