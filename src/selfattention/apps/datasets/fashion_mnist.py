"""Fashion-MNIST (Zalando, 60,000 + 10,000 grey 28×28 images, 10 classes), from Debian's
``dataset-fashion-mnist`` package: ``/usr/share/datasets/fashion-mnist/*-ubyte.gz`` (idx format).

:func:`fetch_fashion_mnist` only locates the directory; ``selfattention data fetch fashion-mnist``
installs the pinned Debian package (as root).
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, InstallPlan, missing, register
from selfattention.apps.datasets._install import apt_install, apt_plan

NAME = "fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
PACKAGE = "dataset-fashion-mnist"
VERSION = "0.0~git20200523.55506a9-1"  # Debian 12's
DEB_SHA256 = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"


def fetch_fashion_mnist() -> Path:
    """The directory holding the four idx files; DataUnavailable names the fetch command.
    Never installs (the name is kept for its callers)."""
    if not FASHION_MNIST_DIR.is_dir():
        raise missing(NAME, f"{FASHION_MNIST_DIR} is not there")
    lacking = [f for f in FILES if not (FASHION_MNIST_DIR / f).is_file()]
    if lacking:
        raise missing(NAME, f"{FASHION_MNIST_DIR} lacks {', '.join(lacking)}")
    return FASHION_MNIST_DIR


def _plan() -> InstallPlan:
    return apt_plan(NAME, PACKAGE, VERSION, DEB_SHA256, FASHION_MNIST_DIR)


def _install() -> Path:
    apt_install(PACKAGE, VERSION, FASHION_MNIST_DIR / FILES[0])
    return fetch_fashion_mnist()


register(
    Dataset(
        name=NAME,
        description="Fashion-MNIST, 60k+10k 28x28 grey images, 10 classes (Debian package)",
        licence="MIT (Expat)",
        locate=fetch_fashion_mnist,
        plan=_plan,
        install=_install,
    )
)
