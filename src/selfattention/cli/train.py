"""``selfattention train|evaluate|predict TASK``: train, score and use the models of ``apps``.

Each task is a module (see :data:`TASKS`) providing

    add_arguments(parser, mode)  # its own options for mode (data path; sizes, epochs to train)
    train(args) -> dict          # trains, saves a checkpoint to args.checkpoint, returns metrics
    evaluate(args) -> dict       # loads args.checkpoint, returns test metrics
    predict(args) -> int         # loads args.checkpoint, prints predictions for args.inputs

Options every task receives (added here): ``args.task``, ``args.mode`` ("train", "evaluate" or
"predict"), ``args.checkpoint`` (Path, default ``results/<task>``), ``args.seed``, ``args.threads``,
``args.progress`` (bool); ``args.resume`` when training; ``args.inputs`` (list of str) and
``args.file`` when predicting. Metrics are written by the task as JSON under the checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

TASKS: dict[str, str] = {
    "pos": "selfattention.apps.text.pos",
    "polarity": "selfattention.apps.text.polarity",
    "images": "selfattention.cli.tasks.images",
}


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _add(parser: argparse.ArgumentParser, mode: str) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for task, module in TASKS.items():
        p = sub.add_parser(task, help=f"{mode} the {task} model")
        p.set_defaults(mode=mode, _task_module=module)
        p.add_argument(
            "--checkpoint",
            "-c",
            type=Path,
            default=Path("results") / task,
            help=f"checkpoint directory (default: results/{task})",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        threads = p.add_argument("--threads", type=int, default=2, help="torch threads")
        p.add_argument(
            "--no-progress", dest="progress", action="store_false", help="no progress bar"
        )
        if mode == "train":
            p.add_argument("--resume", action="store_true", help="continue from CHECKPOINT/last")
        if mode == "predict":
            p.add_argument("inputs", nargs="*", metavar="TEXT", help="input(s) to predict")
            p.add_argument("--file", type=Path, help="read inputs from this file, one a line")
        if _find(module):
            # Each mode gets only its own options: evaluate/predict take no model sizes.
            importlib.import_module(module).add_arguments(p, mode)
        threads.help = f"torch threads (default: {p.get_default('threads')})"  # the task's choice


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "train")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "evaluate")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "predict")


def _run(args: argparse.Namespace) -> int:
    if not getattr(args, "task", None):
        known = ", ".join(TASKS)
        print(f"error: name a task: {known}", file=sys.stderr)
        return 2
    module_name = args._task_module
    if not _find(module_name):
        print(
            f"error: task {args.task!r} is not available in this installation "
            f"(module {module_name} is missing)",
            file=sys.stderr,
        )
        return 2
    import torch

    from selfattention.apps.datasets import DataUnavailable
    from selfattention.apps.training import CheckpointError

    if args.threads is not None:  # None: the task picks (by model size)
        torch.set_num_threads(max(1, args.threads))
    module = importlib.import_module(module_name)
    try:
        result = getattr(module, args.mode)(args)
    except (DataUnavailable, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.mode == "predict":
        return int(result or 0)
    print(json.dumps(result, indent=2, default=str))
    return 0


def run_train(args: argparse.Namespace) -> int:
    return _run(args)


def run_evaluate(args: argparse.Namespace) -> int:
    return _run(args)


def run_predict(args: argparse.Namespace) -> int:
    return _run(args)


def run(args: argparse.Namespace) -> int:
    return _run(args)
