"""The ``ring`` suite: ``sa.distributed.ring_attention`` on 1, 2 and 4 processes on loopback.

Each world size P runs as P spawned processes (gloo, MASTER_ADDR=127.0.0.1, a free port, one
torch thread each, a process-group timeout); the parent joins them with a deadline and kills any
that is still alive, so a run always ends. For every n and kind (full, causal-zigzag, window
``RING_WINDOW``), forward only, b = 1, h = 1, d = head_dim, float32, a rank reports:

    seconds     the slowest rank's time of one call, best of ``repeat`` calls
    sent_bytes  bytes this rank sent during the call, counted by ``sa.distributed.traffic()``
    peak_mb     resident high-water mark during the call above the rank's resident size before it

and the row keeps the largest over the ranks; for P > 1 a ``TRANSFER`` row times one ring
step's block (1, 1, n/P, 2d) sent to the next rank alone. Then, side by side and interleaved
(best of ``repeat`` rounds each): ring full on 2 processes × 1 thread against single-process
``sa.attention`` with 2 threads, each in its own spawned process, at n = 16384 when swept.

Layers: apps imports ``selfattention.distributed``; that package never imports this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from selfattention.apps.bench.spawn import collect, end, start

__all__ = ["KINDS", "RING_WINDOW", "SIDE_N", "measure", "side_by_side_n"]

Row = dict[str, Any]
RING_WINDOW = (256, 256)  # (left, right) of the window kind: halo bytes independent of n and P
KINDS: dict[str, dict[str, Any]] = {
    "full": {},
    "causal-zigzag": dict(causal=True, layout="zigzag"),
    "window": dict(window=RING_WINDOW),
}
TRANSFER = "one ring step"  # the kind of the rows timing one step's block transfer alone
SIDE_N = 16384  # the side-by-side size: ring 2 × 1 thread ≤ 1.3 × one process 2 threads
SIDE_RING, SIDE_SINGLE = (
    "side-by-side ring 2 procs x 1 thread",
    "side-by-side sa.attention 2 threads",
)


def side_by_side_n(sizes: list[int]) -> int:
    """The side-by-side's n: 16384 when swept, else the largest n below it, else the smallest."""
    below = [n for n in sizes if n <= SIDE_N]
    return max(below) if below else min(sizes)


def _inputs(n: int, d: int, layout: str | None):
    """Seeded fp32 q, k, v (1, 1, n, d); this rank's shard of each when ``layout`` is given."""
    import torch

    from selfattention import distributed as sd

    g = torch.Generator().manual_seed(0)
    full = [torch.randn(1, 1, n, d, generator=g) for _ in range(3)]
    if layout is None:
        return full
    return [sd.shard(t, layout=layout).contiguous() for t in full]


def _sweep_rank(rank: int, world: int, sizes: list[int], d: int, repeat: int) -> list[Row]:
    """Every (n, kind) on this rank: seconds (slowest rank), bytes sent, peak memory."""
    import torch
    import torch.distributed as dist

    from selfattention import distributed as sd
    from selfattention.apps.measure import PeakRSS

    rows = []
    for n in sizes:
        for kind, kw in KINDS.items():
            q, k, v = _inputs(n, d, kw.get("layout", "contiguous"))
            best, sent, peak = float("inf"), 0, 0
            for _ in range(repeat):
                dist.barrier()
                sd.reset_traffic()
                memory = PeakRSS()
                start = time.perf_counter()
                with torch.no_grad():
                    out = sd.ring_attention(q, k, v, **kw)
                elapsed = time.perf_counter() - start
                peak = max(peak, memory.extra_bytes())
                sent = sd.traffic().bytes_sent
                del out
                slowest = torch.tensor([elapsed])
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
                best = min(best, slowest.item())
                if best > 5.0:  # minutes per call at large n: one call is the measurement
                    break
            rows.append(dict(n=n, kind=kind, seconds=best, sent_bytes=sent, peak_bytes=peak))
        if world > 1:  # one ring step's transfer alone, for the cost model in docs/distributed.md
            seconds, sent = _transfer(rank, world, n, d, repeat)
            rows.append(dict(n=n, kind=TRANSFER, seconds=seconds, sent_bytes=sent, peak_bytes=0))
    return rows


def _transfer(rank: int, world: int, n: int, d: int, repeat: int) -> tuple[float, int]:
    """Seconds (slowest rank, best of ``repeat``) and bytes of one ring step alone: this rank's
    k|v block (1, 1, n_r, 2d) to the next rank while receiving the previous rank's."""
    import torch
    import torch.distributed as dist

    from selfattention import distributed as sd
    from selfattention.distributed import comm, group

    ring = group.resolve(None)
    prev, nxt = (rank - 1) % world, (rank + 1) % world
    block = torch.randn(1, 1, sd.local_length(n, world, rank, "contiguous"), 2 * d)
    recv = torch.empty(1, 1, sd.local_length(n, world, prev, "contiguous"), 2 * d)
    best, sent = float("inf"), 0
    for _ in range(max(repeat, 3)):
        dist.barrier()
        sd.reset_traffic()
        start = time.perf_counter()
        comm.exchange(ring, [(nxt, block)], [(prev, recv)]).wait()
        slowest = torch.tensor([time.perf_counter() - start])
        sent = sd.traffic().bytes_sent
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        best = min(best, slowest.item())
    return best, sent


def _side_rank(rank: int, world: int, n: int, d: int, commands, replies) -> None:
    """Ring full on command: one timed call (barrier to barrier) per "run", until "stop"."""
    import torch
    import torch.distributed as dist

    from selfattention import distributed as sd

    q, k, v = _inputs(n, d, "contiguous")
    with torch.no_grad():
        sd.ring_attention(q, k, v)  # warm-up
        while commands.get() == "run":
            dist.barrier()
            start = time.perf_counter()
            sd.ring_attention(q, k, v)
            dist.barrier()
            replies.put((rank, time.perf_counter() - start))


def _single(n: int, d: int, threads: int, commands, replies) -> None:
    """Single-process ``sa.attention`` with ``threads`` threads, one timed call per "run"."""
    import torch

    import selfattention as sa

    torch.set_num_threads(threads)
    q, k, v = _inputs(n, d, None)
    with torch.no_grad():
        sa.attention(q, k, v)  # warm-up
        replies.put((-1, sa.explain_dispatch(q, k, v).chosen))
        while commands.get() == "run":
            start = time.perf_counter()
            sa.attention(q, k, v)
            replies.put((-1, time.perf_counter() - start))


def _sweep(world: int, sizes: list[int], d: int, repeat: int, timeout: float) -> list[Row]:
    import multiprocessing as mp

    results = mp.get_context("spawn").Queue()
    procs = start(world, _sweep_rank, [(sizes, d, repeat)] * world, timeout, results)
    deadline = time.monotonic() + timeout * len(sizes)
    got = collect(results, world, deadline, procs)
    end(procs, deadline)
    errors = [value for _, status, value in got if status == "error"]
    if errors or len(got) < world:
        why = errors[0] if errors else f"{world - len(got)} of {world} ranks did not report"
        why = why if errors else f"{why} within {timeout * len(sizes):g} s (killed)"
        return [dict(n=n, method=f"P={world}", world=world, error=why) for n in sizes]
    rows = []
    per_rank = [value for _, _, value in got]
    for i, first in enumerate(per_rank[0]):
        cells = [ranks[i] for ranks in per_rank]
        rows.append(
            dict(
                n=first["n"],
                method=f"{first['kind']} P={world}",
                world=world,
                kind=first["kind"],
                seconds=max(c["seconds"] for c in cells),
                sent_bytes=max(c["sent_bytes"] for c in cells),
                peak_mb=max(c["peak_bytes"] for c in cells) / 2**20,
            )
        )
    return rows


def _side_by_side(n: int, d: int, rounds: int, timeout: float) -> list[Row]:
    """Ring full (2 processes × 1 thread) and ``sa.attention`` (1 process × 2 threads), each
    run in turn ``rounds`` times after a warm-up; best of each."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ring_cmds, single_cmds = [ctx.Queue() for _ in range(2)], ctx.Queue()
    replies, ends = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_single, args=(n, d, 2, single_cmds, replies), daemon=True)]
    procs[0].start()
    procs += start(2, _side_rank, [(n, d, c, replies) for c in ring_cmds], timeout, ends)
    deadline = time.monotonic() + timeout
    best = {SIDE_RING: float("inf"), SIDE_SINGLE: float("inf")}
    backend, error = "", ""
    got = collect(replies, 1, deadline, procs)
    if got:
        backend = got[0][1]
    for _ in range(rounds if got else 0):
        single_cmds.put("run")
        one = collect(replies, 1, deadline, procs)
        for c in ring_cmds:
            c.put("run")
        two = collect(replies, 2, deadline, procs)
        if len(one) < 1 or len(two) < 2:
            error = f"a process did not answer within {timeout:g} s (killed)"
            break
        best[SIDE_SINGLE] = min(best[SIDE_SINGLE], one[0][1])
        best[SIDE_RING] = min(best[SIDE_RING], max(t for _, t in two))
    for c in (*ring_cmds, single_cmds):
        c.put("stop")
    reported = collect(ends, 2, min(deadline, time.monotonic() + 30), procs)
    end(procs, min(deadline, time.monotonic() + 10))
    failed = [v for _, status, v in reported if status == "error"]
    error = error or (failed[0] if failed else "") or ("" if got else "no warm-up reply")
    if error:
        return [dict(n=n, method=m, error=error) for m in (SIDE_RING, SIDE_SINGLE)]
    return [
        dict(n=n, method=SIDE_RING, world=2, seconds=best[SIDE_RING]),
        dict(n=n, method=SIDE_SINGLE, world=1, seconds=best[SIDE_SINGLE], note=backend),
    ]


def measure(
    worlds: tuple[int, ...],
    sizes: list[int],
    head_dim: int,
    repeat: int,
    timeout: float,
    progress: Callable[[Row], None] | None = None,
) -> list[Row]:
    """The whole suite: the sweep for every P in ``worlds`` over ``sizes`` (each P one spawned
    group, ``timeout`` seconds per n), then the side-by-side at ``side_by_side_n(sizes)``.

    Rows: ``{suite: "ring", head_dim, method, n, world, kind, seconds, sent_bytes, peak_mb}``, the
    side-by-side's two ``{suite, method, n, world, seconds}``, or ``{suite, method, n, error}``.
    """
    rows = []
    batches = [lambda w=w: _sweep(w, sizes, head_dim, repeat, timeout) for w in worlds]
    batches.append(lambda: _side_by_side(side_by_side_n(sizes), head_dim, repeat, timeout))
    for batch in batches:
        for row in batch():
            row = {"suite": "ring", "head_dim": head_dim, **row}
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows
