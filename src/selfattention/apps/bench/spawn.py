"""Spawned process groups on loopback that always end: the ``ring`` suite's plumbing.

``start`` launches P ranks of a fresh gloo group (MASTER_ADDR=127.0.0.1, a free port, one torch
thread each, a process-group timeout); ``collect`` reads what they report until a deadline;
``end`` joins them until the deadline and kills and reaps any still alive.
"""

from __future__ import annotations

import datetime
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable

__all__ = ["collect", "end", "first_line", "start"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, group_timeout, fn, args, results) -> None:
    """A spawned rank: join the gloo group, run fn(rank, world, *args), report, leave."""
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=group_timeout),
        )
        value = fn(rank, world, *args)
        results.put((rank, "ok", value))
        dist.destroy_process_group()
    except BaseException as exc:  # reported as the row's error; the parent kills what is left
        results.put((rank, "error", f"{type(exc).__name__}: {first_line(exc)}"))
        traceback.print_exc()


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:160]


def start(world: int, fn: Callable, rank_args: list[tuple], group_timeout: float, results):
    """Spawn ``world`` ranks of a fresh gloo group on loopback; rank r runs fn(r, world,
    *rank_args[r]) and puts (rank, "ok" | "error", value) on ``results``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(
            target=_entry,
            args=(rank, world, port, group_timeout, fn, rank_args[rank], results),
            daemon=True,
        )
        for rank in range(world)
    ]
    for p in procs:
        p.start()
    return procs


def end(procs: list, deadline: float) -> None:
    """Join every process until ``deadline`` (monotonic), then kill and reap what is left."""
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)


def collect(results, count: int, deadline: float, procs: list) -> list[tuple]:
    """Up to ``count`` items from ``results`` before ``deadline``; fewer if every process died."""
    got: list[tuple] = []
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=min(1.0, max(0.01, deadline - time.monotonic()))))
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                try:  # a last item may still be in the pipe
                    got.append(results.get(timeout=0.5))
                except queue.Empty:
                    break
    return got
