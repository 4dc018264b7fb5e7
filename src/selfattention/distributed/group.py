"""Which process group a call runs on, and the check that every rank called it the same way.

``resolve(group)`` -> ``Ring`` (rank, size, global ranks of the neighbours). Without an initialised
``torch.distributed`` process group a call runs as world size 1 (exact single-process attention,
no communication) unless the environment says this process was started as one of several
(``WORLD_SIZE`` > 1, as ``torchrun`` sets it): then silently attending over the local shard only
would be wrong, so it raises and says how to start the group.

``check_same_call`` all-gathers a small signature (shapes, dtype, layout, options) so that ranks
called with different shapes or layouts all raise the same named error instead of hanging in a
send that no one receives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["NoProcessGroupError", "Ring", "ShardMismatchError", "check_same_call", "resolve"]

START_HINT = (
    "start one before the call, e.g. under `torchrun --nproc-per-node N script.py`: "
    "torch.distributed.init_process_group('gloo' on CPU or 'nccl' on GPU, "
    "timeout=datetime.timedelta(seconds=60)); or pass group=..."
)


class NoProcessGroupError(RuntimeError):
    """Several processes were started but torch.distributed was never initialised."""


class ShardMismatchError(ValueError):
    """Ranks called a distributed attention with shapes, layouts or options that do not fit."""


@dataclass(frozen=True)
class Ring:
    """A process group seen from one rank: ``size`` ranks in ring order 0 … size-1."""

    group: dist.ProcessGroup | None  # None: world size 1 without torch.distributed
    rank: int
    size: int

    def global_rank(self, r: int) -> int:
        """The global rank of group rank r (what point-to-point ops address)."""
        if self.group is None:
            return r
        return dist.get_global_rank(self.group, r)


def resolve(group: dist.ProcessGroup | None) -> Ring:
    """The ring of ``group`` (default: the world), or world size 1 when nothing is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise NoProcessGroupError(f"group={group!r} was given but {_not_started()}")
        world = os.environ.get("WORLD_SIZE", "1")
        if world.strip() not in ("", "1"):
            raise NoProcessGroupError(
                f"this process is one of WORLD_SIZE={world} but {_not_started()}"
            )
        return Ring(None, 0, 1)
    pg = group if group is not None else dist.group.WORLD
    rank = dist.get_rank(pg)
    if rank < 0:
        raise ValueError(
            f"this process (global rank {dist.get_rank()}) is not a member of group={group!r}; "
            "call only on the ranks of the group"
        )
    return Ring(pg, rank, dist.get_world_size(pg))


def _not_started() -> str:
    return f"torch.distributed has no initialised process group; {START_HINT}"


def check_same_call(ring: Ring, signature: list[int], names: list[str], device) -> list[list[int]]:
    """All-gather ``signature`` (ints) from every rank; return the table (size × len).

    Raises ``ShardMismatchError`` naming the first field that differs between ranks, the same
    error on every rank (they all see the same table), so no rank is left waiting.
    """
    local = torch.tensor(signature, dtype=torch.int64, device=device)
    if ring.size == 1:
        return [signature]
    table = torch.empty(ring.size * len(signature), dtype=torch.int64, device=device)
    dist.all_gather_single(table, local, group=ring.group)
    rows = table.view(ring.size, len(signature)).tolist()
    for col, name in enumerate(names):
        values = [row[col] for row in rows]
        if name and len(set(values)) > 1:
            raise ShardMismatchError(
                f"ranks disagree on {name}: {dict(enumerate(values))} (rank: value); every rank "
                "must call with the same batch, heads, head_dim, dtype, layout and options"
            )
    return rows
