"""Fashion-MNIST (Zalando, 60,000 + 10,000 grey 28×28 images, 10 classes), from Debian's
``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist/*-ubyte.gz`` (idx format).

``fetch()`` returns the directory; when it is missing and we run as root it installs the package
with apt-get (Debian's archive is the only source used), otherwise it says what to run.
"""

from __future__ import annotations

# os and shutil are unused here, kept because tests/test_vision.py patches fashion_mnist.os/.shutil
import os  # noqa: F401
import shutil  # noqa: F401
from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, register
from selfattention.apps.datasets._install import apt_install

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def fetch_fashion_mnist() -> Path:
    """The directory holding the four idx files (installing ``dataset-fashion-mnist`` if needed)."""
    if not all((FASHION_MNIST_DIR / f).exists() for f in FILES):
        apt_install("dataset-fashion-mnist", FASHION_MNIST_DIR / FILES[0])
    missing = [f for f in FILES if not (FASHION_MNIST_DIR / f).exists()]
    if missing:
        raise DataUnavailable(
            f"{FASHION_MNIST_DIR} lacks {missing}; reinstall dataset-fashion-mnist"
        )
    return FASHION_MNIST_DIR


register(
    Dataset(
        name="fashion-mnist",
        description="Fashion-MNIST, 60k+10k 28x28 grey images, 10 classes (Debian package)",
        licence="MIT (Expat)",
        fetch=fetch_fashion_mnist,
    )
)
