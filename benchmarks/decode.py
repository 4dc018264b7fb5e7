"""One generation step with a KV cache against recomputing the whole prefix, at cache length n.

    python benchmarks/decode.py                  # n = 4096, dim 512, 8 heads, 2 threads
    python benchmarks/decode.py --length 1024 --reps 5

For a causal ``SelfAttention`` and a causal pre-norm ``TransformerEncoderLayer``: the cache is
prefilled with n positions, then each repetition times (interleaved, so load hits both alike)
one cached step at position n and one full causal forward over the n + 1 positions (whose last
row is the same output). Prints the best time of each, their ratio, and the largest difference
between the two outputs.
"""

from __future__ import annotations

import argparse
import time

import torch

from selfattention.nn import KVCache, RotaryPositions, SelfAttention, TransformerEncoderLayer


def best_of_interleaved(model, x: torch.Tensor, n: int, reps: int) -> dict:
    """Time a cached step at position n and the full forward over n + 1 positions."""
    cache = KVCache(capacity=n + reps + 1)
    with torch.no_grad():
        model(x[:, :n], cache=cache)  # prefill
        step_times, full_times, error = [], [], 0.0
        for r in range(reps):
            t = n + r  # the cache grows by one per repetition: n, n+1, …
            start = time.perf_counter()
            step = model(x[:, t : t + 1], cache=cache)
            step_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            full = model(x[:, : t + 1])[:, -1:]
            full_times.append(time.perf_counter() - start)
            error = max(error, float((step - full).abs().max()))
    return {"step": min(step_times), "full": min(full_times), "error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096, help="cache length (default 4096)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head_dim = args.dim // args.heads
    models = {
        "SelfAttention": SelfAttention(
            args.dim, args.heads, causal=True, positions=RotaryPositions(head_dim)
        ),
        "TransformerEncoderLayer": TransformerEncoderLayer(
            args.dim, args.heads, causal=True, positions=RotaryPositions(head_dim)
        ),
    }
    n = args.length
    x = torch.randn(1, n + args.reps, args.dim)
    print(
        f"cache length {n}, dim {args.dim}, {args.heads} heads, fp32, {args.threads} threads, "
        f"best of {args.reps} interleaved"
    )
    print("| module | cached step ms | recompute prefix ms | speed-up | max difference |")
    print("|---|---:|---:|---:|---:|")
    for name, model in models.items():
        r = best_of_interleaved(model.eval(), x, n, args.reps)
        print(
            f"| {name} | {1000 * r['step']:.3f} | {1000 * r['full']:.1f} | "
            f"{r['full'] / r['step']:.0f}x | {r['error']:.1e} |"
        )


if __name__ == "__main__":
    main()
