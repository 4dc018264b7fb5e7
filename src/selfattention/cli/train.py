"""``selfattention train|evaluate|predict TASK``: train, score and use the task models of ``apps``.

The tasks are listed in :data:`TASKS`; each is an adapter module in :mod:`selfattention.cli.tasks`
(its protocol is described there). This module adds the options every task shares, sets the
number of torch threads, calls the task and prints its metrics as JSON (predict prints its own
lines). Errors reach ``selfattention.cli.main``, which prints them as one line; Ctrl-C while
training names the last checkpoint and exits 130.

Under ``torchrun --nproc-per-node N -m selfattention train TASK ...`` every process runs this
same command: training joins the process group torchrun describes (gloo on CPU, NCCL on GPUs)
and ``apps.training.fit`` trains with DistributedDataParallel. Rank 0 alone prints (progress,
epoch lines, metrics) and writes; the other ranks are quiet unless they fail.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfattention.apps.training.ddp import (
    DEFAULT_TIMEOUT,
    DistributedError,
    is_main_process,
    process_group,
)
from selfattention.cli._common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, error, one_line
from selfattention.cli.tasks import images, polarity, pos, positive_float, positive_int

__all__ = [
    "TASKS",
    "add_evaluate_arguments",
    "add_predict_arguments",
    "add_train_arguments",
    "run",
]

TASKS = {"pos": pos, "polarity": polarity, "images": images}


def _add(parser: argparse.ArgumentParser, mode: str) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    for name, task in TASKS.items():
        p = sub.add_parser(name, help=f"{mode} the {name} model", description=f"{mode} {name}")
        p.set_defaults(mode=mode, _task=task)
        p.add_argument(
            "--checkpoint",
            "-c",
            type=Path,
            default=Path("results") / name,
            help=f"checkpoint directory (default: results/{name})",
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        threads = p.add_argument("--threads", type=positive_int, default=2, help="torch threads")
        p.add_argument(
            "--no-progress",
            dest="progress",
            action="store_false",
            help="no progress bar and no line per epoch",
        )
        if mode == "train":
            p.add_argument("--resume", action="store_true", help="continue from CHECKPOINT/last")
            p.add_argument(
                "--ddp-timeout",
                type=positive_float,
                default=DEFAULT_TIMEOUT,
                metavar="SECONDS",
                help="under torchrun: how long a process waits for the others before it stops "
                f"with an error (default: {DEFAULT_TIMEOUT:g})",
            )
        if mode == "predict":
            p.add_argument("inputs", nargs="*", metavar="INPUT", help="input(s) to predict")
            p.add_argument("--file", type=Path, help="read inputs from this file, one a line")
        task.add_arguments(p, mode)  # evaluate/predict get only their own options
        threads.help = f"torch threads (default: {p.get_default('threads')})"  # the task's choice


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "train")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "evaluate")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "predict")


def run(args: argparse.Namespace) -> int:
    if args.task is None:  # `selfattention train` without a task
        error(f"name a task: {', '.join(TASKS)}")
        return EXIT_USAGE
    import torch

    torch.set_num_threads(args.threads)
    if args.mode != "train" and not Path(args.checkpoint).is_dir():
        # Before any data is read: a missing checkpoint is the first thing to fix.
        error(f"checkpoint directory {args.checkpoint} does not exist; train one with "
              f"`selfattention train {args.task} -c {args.checkpoint}`")  # fmt: skip
        return EXIT_FAILURE
    if args.mode == "predict":
        return int(args._task.predict(args) or 0)
    if args.mode == "evaluate":
        metrics = args._task.evaluate(args)
    else:
        main = True
        try:
            with process_group(args.ddp_timeout):  # a no-op unless torchrun started several
                main = is_main_process()
                args.progress = args.progress and main
                metrics = args._task.train(args)
        except KeyboardInterrupt as exc:
            if not main:
                return EXIT_INTERRUPTED  # quietly: rank 0 says where to resume
            if str(exc).startswith("last checkpoint"):
                raise KeyboardInterrupt(f"{exc}; continue with --resume") from None
            raise
        except DistributedError as exc:
            error(one_line(exc))
            return EXIT_FAILURE
        if not main:
            return 0
    print(json.dumps(metrics, indent=2, default=str))
    return 0
