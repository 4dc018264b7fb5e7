"""Sequence-parallel attention on ``torch.distributed``: one sequence across several processes.

    import selfattention as sa
    q_r = sa.distributed.shard(q, group, layout="zigzag")       # this rank's (b, h, n_r, d)
    out_r = sa.distributed.ring_attention(q_r, k_r, v_r, causal=True, layout="zigzag")
    out = sa.distributed.unshard(out_r, group, layout="zigzag")  # (b, h, n, e) on every rank

Layers: imports ``functional`` and ``nn`` only. gloo on CPU, NCCL on GPU (device taken from the
tensors). See docs/distributed.md.
"""

from selfattention.distributed.attention import ring_attention
from selfattention.distributed.comm import Traffic, reset_traffic, traffic
from selfattention.distributed.group import NoProcessGroupError, ShardMismatchError
from selfattention.distributed.module import SequenceParallel, sequence_parallel
from selfattention.distributed.shard import (
    LAYOUTS,
    global_segments,
    layout_segments,
    local_length,
    shard,
    unshard,
)

__all__ = [
    "LAYOUTS",
    "NoProcessGroupError",
    "SequenceParallel",
    "ShardMismatchError",
    "Traffic",
    "global_segments",
    "layout_segments",
    "local_length",
    "reset_traffic",
    "ring_attention",
    "sequence_parallel",
    "shard",
    "traffic",
    "unshard",
]
