"""Spawn a gloo group on loopback, run one function on every rank, collect what each returns.

Every run ends: init_process_group has a timeout, the group is joined with a deadline and any
process still alive after it is killed (the test then fails with the ranks that did not report).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GROUP_TIMEOUT = 20.0  # seconds: a blocked send/recv/collective fails after this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args, results, timeout: float) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)  # more processes than cores: keep each to one thread
    try:
        dist.init_process_group(
            "gloo",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout),
        )
        value = fn(rank, world, *args)
        results.put((rank, "ok", value))
    except BaseException as exc:  # report it, then end this process
        results.put((rank, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    dist.destroy_process_group()


def run_group(world: int, fn, *args, deadline: float = 240.0, timeout: float = GROUP_TIMEOUT):
    """Run fn(rank, world, *args) on ``world`` spawned ranks -> {rank: ("ok"|"error", value)}.

    ``fn`` must live in an importable module. Ranks that have not ended by ``deadline``
    seconds are killed and missing from the result.
    """
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    port = free_port()
    procs = mp.spawn(
        _entry, args=(world, port, fn, args, results, timeout), nprocs=world, join=False
    )
    end = time.monotonic() + deadline
    alive = list(procs.processes)
    while alive and time.monotonic() < end:
        for p in alive:
            p.join(timeout=0.2)
        alive = [p for p in alive if p.is_alive()]
    for p in alive:
        p.kill()
        p.join(5)
    out = {}
    while not results.empty():
        rank, status, value = results.get()
        out[rank] = (status, value)
    return out
