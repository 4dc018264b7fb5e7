"""Training utilities shared by every classifier and tagger in ``selfattention.apps``.

* :class:`FitConfig` (``config.py``) + :func:`fit` (``loop.py``): AdamW, gradient clipping,
  optional linear warm-up and decay, early stopping on dev accuracy, a time limit, the best
  weights saved as a checkpoint and ``resume=True`` to continue a run; returns a
  :class:`History`. Ctrl-C re-raises ``KeyboardInterrupt`` naming the last checkpoint.
* :func:`save_checkpoint` / :func:`load_checkpoint` (``checkpoint.py``): a folder whose
  ``config.json`` manifest is written last, so that an interrupt at any point leaves the previous
  checkpoint loadable. No pickles.
* :func:`write_metrics` (``files.py``) writes a metrics dict as JSON, atomically.
* ``ddp.py``: under ``torchrun``, :func:`process_group` joins the processes and :func:`fit`
  trains with DistributedDataParallel; :func:`is_main_process` says whether this process is
  the one that writes files (rank 0, or the only one).
"""

from selfattention.apps.training import ddp
from selfattention.apps.training.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    check_same_config,
    load_checkpoint,
    load_optimizer,
    load_state,
    load_tensors,
    read_checkpoint_extra,
    save_checkpoint,
)
from selfattention.apps.training.config import FitConfig, History, format_epoch
from selfattention.apps.training.ddp import DistributedError, is_main_process, process_group
from selfattention.apps.training.files import write_atomic, write_metrics
from selfattention.apps.training.loop import evaluate, fit, set_seed

__all__ = [
    "CheckpointError",
    "CheckpointMismatch",
    "DistributedError",
    "FitConfig",
    "History",
    "check_same_config",
    "ddp",
    "evaluate",
    "fit",
    "format_epoch",
    "is_main_process",
    "load_checkpoint",
    "load_optimizer",
    "load_state",
    "load_tensors",
    "process_group",
    "read_checkpoint_extra",
    "save_checkpoint",
    "set_seed",
    "write_atomic",
    "write_metrics",
]
