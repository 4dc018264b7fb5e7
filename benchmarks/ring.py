"""Benchmark of sa.distributed.ring_attention on loopback (prints; not a test).

    .venv/bin/python benchmarks/ring.py            # the sweep + the side-by-side, < 10 minutes
    .venv/bin/python benchmarks/ring.py --quick    # n up to 16384

1. Sweep: 1, 2 and 4 gloo processes on 127.0.0.1 (one thread each), forward of full,
   causal-zigzag and window (256, 256) attention, b=1, h=1, d=64, float32, n = 4096 … 65536:
   wall time (slowest rank, best of the repeats), bytes sent per rank (counted in every send by
   ``sa.distributed.traffic()``), peak resident memory per rank above the rank's baseline
   (sampled every 2 ms from /proc/self/statm).
2. Side by side, interleaved: ring full fp32 n=16384 on 2 processes × 1 thread, against
   single-process ``sa.attention`` with 2 threads (the issue asks for ring <= 1.3 x single).
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import threading
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import selfattention as sa
from selfattention import distributed as sd

D = 64
WINDOW = (256, 256)
KINDS = {
    "full": dict(),
    "causal-zigzag": dict(causal=True, layout="zigzag"),
    "window": dict(window=WINDOW),
}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident set size above the value at entry, sampled on a thread."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _rss())
        self.extra = self.peak - self.base


def _init(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )


def _inputs(n: int, kw: dict, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    full = [torch.randn(1, 1, n, D, generator=g) for _ in range(3)]
    layout = kw.get("layout", "contiguous")
    return [sd.shard(t, layout=layout).contiguous() for t in full]


def sweep_rank(rank: int, world: int, port: int, sizes: list[int], results) -> None:
    _init(rank, world, port)
    for n in sizes:
        for kind, kw in KINDS.items():
            q, k, v = _inputs(n, kw)
            best, mem, sent = float("inf"), 0, 0
            for _ in range(2 if n <= 16384 else 1):
                dist.barrier()
                sd.reset_traffic()
                with PeakMemory() as peak:
                    start = time.perf_counter()
                    sd.ring_attention(q, k, v, **kw)
                    elapsed = time.perf_counter() - start
                sent = sd.traffic().bytes_sent
                slowest = torch.tensor([elapsed])
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
                best = min(best, slowest.item())
                mem = max(mem, peak.extra)
            results.put((world, n, kind, rank, best, sent, mem))
        if world > 1:  # one ring step's transfer alone: a (1, 1, n_r, 2d) block to the next rank
            results.put((world, n, "transfer", rank, _transfer(rank, world, n), 0, 0))
    dist.destroy_process_group()


def _transfer(rank: int, world: int, n: int) -> float:
    ring = sd.group.resolve(None)
    buf = torch.randn(1, 1, sd.local_length(n, world, rank, "contiguous"), 2 * D)
    recv = torch.empty(1, 1, sd.local_length(n, world, (rank - 1) % world, "contiguous"), 2 * D)
    best = float("inf")
    for _ in range(3):
        dist.barrier()
        start = time.perf_counter()
        sd.comm.exchange(ring, [((rank + 1) % world, buf)], [((rank - 1) % world, recv)]).wait()
        best = min(best, time.perf_counter() - start)
    return best


def side_rank(rank: int, world: int, port: int, n: int, commands, results) -> None:
    _init(rank, world, port)
    q, k, v = _inputs(n, {})
    while commands[rank].get() == "run":
        dist.barrier()
        start = time.perf_counter()
        sd.ring_attention(q, k, v)
        dist.barrier()
        results.put((rank, time.perf_counter() - start))
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(sizes: list[int]) -> None:
    ctx = mp.get_context("spawn")
    print(f"forward, b=1 h=1 d={D} float32, window={WINDOW}; one thread per process")
    print(
        f"{'P':>2} {'n':>6} {'kind':<14} {'time s':>8} {'sent/rank MiB':>14} {'peak MiB/rank':>14}"
    )
    for world in (1, 2, 4):
        results = ctx.SimpleQueue()
        mp.spawn(sweep_rank, args=(world, _port(), sizes, results), nprocs=world, join=True)
        rows: dict[tuple, list] = {}
        while not results.empty():
            _, n, kind, _, best, sent, mem = results.get()
            rows.setdefault((n, kind), []).append((best, sent, mem))
        for n in sizes:
            for kind in KINDS:
                r = rows[(n, kind)]
                t = max(x[0] for x in r)
                sent = max(x[1] for x in r)
                mem = max(x[2] for x in r)
                print(
                    f"{world:>2} {n:>6} {kind:<14} {t:>8.3f} {sent / 2**20:>14.3f} "
                    f"{mem / 2**20:>14.1f}"
                )
        if world > 1:
            for n in sizes:
                t = max(x[0] for x in rows[(n, "transfer")])
                size = sd.local_length(n, world, 0, "contiguous") * 2 * D * 4
                print(
                    f"   one step's block ({size / 2**20:.2f} MiB): {t * 1e3:.2f} ms, "
                    f"{size / t / 1e9:.2f} GB/s"
                )
        window_bytes = [max(x[1] for x in rows[(n, "window")]) for n in sizes]
        bound = sum(WINDOW) * 2 * D * 4  # (left + right)·(k + v)·d·4 bytes, b = h = 1
        print(f"   window bytes/rank over n: {window_bytes} (bound {bound})")


def side_by_side(n: int = 16384, rounds: int = 3) -> None:
    ctx = mp.get_context("spawn")
    commands = [ctx.SimpleQueue() for _ in range(2)]
    results = ctx.SimpleQueue()
    procs = mp.spawn(side_rank, args=(2, _port(), n, commands, results), nprocs=2, join=False)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, n, D, generator=g) for _ in range(3))
    torch.set_num_threads(2)
    single, ring = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        sa.attention(q, k, v)
        single.append(time.perf_counter() - start)
        for c in commands:
            c.put("run")
        ring.append(max(results.get()[1] for _ in range(2)))
    for c in commands:
        c.put("stop")
    procs.join()
    print(
        f"\nside by side, full fp32 n={n}, b=1 h=1 d={D}, interleaved x{rounds}: "
        f"single process 2 threads {min(single):.3f} s (runs {[round(t, 3) for t in single]}), "
        f"ring 2 processes x 1 thread {min(ring):.3f} s (runs {[round(t, 3) for t in ring]}), "
        f"ratio {min(ring) / min(single):.2f}"
    )
    print(f"backend of the single run: {sa.explain_dispatch(q, k, v).chosen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 16384")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    if not args.skip_sweep:
        sweep([4096, 16384] if args.quick else [4096, 16384, 65536])
    side_by_side()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
