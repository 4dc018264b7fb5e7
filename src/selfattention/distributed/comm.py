"""Point-to-point transfers, counted: every byte this package sends goes through ``exchange``.

``exchange(ring, sends, recvs)`` posts all sends and receives of one step as a single
``torch.distributed.batch_isend_irecv`` and returns a handle to wait on later, so the caller
computes while the transfer is in flight. The bytes of every send are added to ``TRAFFIC`` (per
process), which ``traffic()`` reads and ``reset_traffic()`` zeroes: the benchmark's
"bytes sent per rank" is this count, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist
from torch import Tensor

from selfattention.distributed.group import Ring

__all__ = ["Traffic", "exchange", "reset_traffic", "traffic"]


@dataclass
class Traffic:
    """What this process has sent since the last reset: bytes and messages."""

    bytes_sent: int = 0
    messages: int = 0


TRAFFIC = Traffic()


def traffic() -> Traffic:
    """A copy of this process's send counters."""
    return Traffic(TRAFFIC.bytes_sent, TRAFFIC.messages)


def reset_traffic() -> None:
    TRAFFIC.bytes_sent = 0
    TRAFFIC.messages = 0


class Pending:
    """Transfers in flight; ``wait()`` blocks until all are done (or the group's timeout)."""

    def __init__(self, works: list) -> None:
        self.works = works

    def wait(self) -> None:
        for w in self.works:
            w.wait()
        self.works = []


def exchange(
    ring: Ring, sends: list[tuple[int, Tensor]], recvs: list[tuple[int, Tensor]], tag: int = 0
) -> Pending:
    """Post ``sends`` [(group rank, tensor)] and ``recvs`` [(group rank, buffer)] at once.

    At most one message per (peer, direction, tag) per call: both ends post in the same order.
    """
    ops = []
    for peer, t in sends:
        TRAFFIC.bytes_sent += t.numel() * t.element_size()
        TRAFFIC.messages += 1
        ops.append(dist.P2POp(dist.isend, t, ring.global_rank(peer), ring.group, tag))
    for peer, t in recvs:
        ops.append(dist.P2POp(dist.irecv, t, ring.global_rank(peer), ring.group, tag))
    if not ops:
        return Pending([])
    return Pending(dist.batch_isend_irecv(ops))
