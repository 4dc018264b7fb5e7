"""Packed against padded batches: tokens/s of the POS tagger's encoder on the real length mix.

    python benchmarks/packed.py                    # oanc-pos if installed, else the fixture
    python benchmarks/packed.py --batches 20 --batch-size 64 --reps 3

Sentence lengths come from the installed ``oanc-pos`` corpus (``selfattention data fetch
oanc-pos``); without it, from the committed fixture tests/fixtures/tagged_tiny.txt (said in the
output). Batches of ``--batch-size`` sentences are drawn two ways: in random order, and grouped
by length as training does (``apps.text.common.batches``: sorted inside pools of 50 batches).
The same ``TextModel`` (tagger, dim 128, 4 heads, 2 layers, rotary; word vectors only) runs each
batch packed (real tokens end to end, ``cu_seqlens``) and padded (``packed=False``), forward +
backward, interleaved (packed, padded, packed, ...) so that load hits both alike; best of
``--reps`` passes over the batches. Prints real tokens per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

import torch

from selfattention.apps.text import corpus
from selfattention.apps.text.model import TextModel, TextModelConfig

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tagged_tiny.txt"


def lengths_of_corpus() -> tuple[list[int], str]:
    """Sentence lengths of oanc-pos, or of the fixture when oanc-pos is not installed."""
    from selfattention.apps import datasets

    try:
        path, source = datasets.require("oanc-pos"), "oanc-pos"
    except Exception:  # DataUnavailable: fall back to the committed fixture
        path, source = FIXTURE, f"fixture {FIXTURE.name} (oanc-pos is not installed)"
    return [len(s) for s in corpus.read_tagged(path) if s], source


def make_batches(lengths: list[int], size: int, count: int, grouped: bool, seed: int = 0):
    """``count`` batches of word ids (size, max_len), padded with 0 at the end."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if grouped:  # as training: sort inside pools of 50 batches, then shuffle the batches
        pool = 50 * size
        order = [
            i
            for start in range(0, len(order), pool)
            for i in sorted(order[start : start + pool], key=lambda k: lengths[k])
        ]
    groups = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    if grouped:
        rng.shuffle(groups)
    out = []
    for group in groups[:count]:
        n = max(lengths[i] for i in group)
        words = torch.zeros(len(group), n, dtype=torch.long)
        for row, i in enumerate(group):
            words[row, : lengths[i]] = torch.randint(2, 1000, (lengths[i],))
        out.append(words)
    return out


def step(model: TextModel, words: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(words).square().mean().backward()


def bench(batches, reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = TextModelConfig(
        task="tag", num_labels=45, vocab_size=1000, trainable_words=1000, dim=128, heads=4,
        layers=2, ff_dim=256, positions="rotary", dropout=0.0,
    )  # fmt: skip
    packed = TextModel(cfg)
    padded = TextModel(dataclasses.replace(cfg, packed=False))
    padded.load_state_dict(packed.state_dict())
    step(packed, batches[0])  # warm-up
    step(padded, batches[0])
    best = {"packed": float("inf"), "padded": float("inf")}
    for _ in range(reps):
        for name, model in (("packed", packed), ("padded", padded)):
            start = time.perf_counter()
            for words in batches:
                step(model, words)
            best[name] = min(best[name], time.perf_counter() - start)
    tokens = sum(int((w != 0).sum()) for w in batches)
    slots = sum(w.numel() for w in batches)
    return {
        "tokens": tokens,
        "padding": 1 - tokens / slots,
        "packed": tokens / best["packed"],
        "padded": tokens / best["padded"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths, source = lengths_of_corpus()
    mean = sum(lengths) / len(lengths)
    print(
        f"lengths: {source}, {len(lengths)} sentences, mean {mean:.1f}, max {max(lengths)}; "
        f"batch {args.batch_size}, {args.batches} batches, forward+backward, "
        f"{args.threads} threads, best of {args.reps}"
    )
    print(f"{'batches':<16}{'padding':>9}{'packed tok/s':>15}{'padded tok/s':>15}{'ratio':>8}")
    for grouped in (False, True):
        batches = make_batches(lengths, args.batch_size, args.batches, grouped)
        r = bench(batches, args.reps)
        label = "length-grouped" if grouped else "random order"
        print(
            f"{label:<16}{r['padding']:>8.0%} {r['packed']:>14,.0f} {r['padded']:>14,.0f}"
            f"{r['packed'] / r['padded']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
