"""Faults and checks of sa.distributed: failing ranks end the others in bounded time, ranks
that disagree get a named error, no process group is a clear error (or world size 1)."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

import selfattention as sa
from distributed_harness import run_group
from selfattention import distributed as sd


def _qkv(n: int, h: int = 2, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, h, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


# -- one process -------------------------------------------------------------------------------


def test_no_group_runs_as_world_size_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    q, k, v = _qkv(11)
    out = sd.ring_attention(q, k, v, causal=True, layout="zigzag")
    ref = sa.attention(q, k, v, causal=True, backend="math")
    assert torch.allclose(out, ref, atol=1e-12)


def test_no_group_under_torchrun_says_how_to_start_one(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    q, k, v = _qkv(8)
    with pytest.raises(sd.NoProcessGroupError, match="init_process_group"):
        sd.ring_attention(q, k, v)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(layout="striped"), "layout must be one of"),
        (dict(normalize=lambda s, a: s), "normalize must be one of"),
        (dict(mask=torch.ones(3, 3, dtype=torch.bool)), "mask must broadcast"),
        (dict(mask=torch.ones(1, 1, 1, 10)), "bool tensor"),
        (dict(bias=torch.zeros(1, 2, 10, 10, requires_grad=True)), "must not require a gradient"),
        (dict(bias="alibi"), "bias must be a Tensor, a callable"),
        (dict(window=-1), "non-negative"),
    ],
)
def test_bad_arguments_are_named(kw, match):
    q, k, v = _qkv(10)
    with pytest.raises((ValueError, TypeError), match=match):
        sd.ring_attention(q, k, v, **kw)


def test_too_short_to_split_is_refused():
    with pytest.raises(ValueError, match="needs n >= 8"):
        sd.layout_segments(7, 4, "zigzag")


def test_layouts_cover_the_sequence_once():
    for n, world in [(31, 3), (37, 4), (8, 4)]:
        for layout in sd.LAYOUTS:
            segs = sorted(s for rank in sd.layout_segments(n, world, layout) for s in rank)
            assert segs[0][0] == 0 and segs[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(segs))


# -- spawned groups ----------------------------------------------------------------------------


def checks(rank: int, world: int) -> dict[str, object]:
    """Per-check outcome on this rank: the exception's class name, or a value."""
    out: dict[str, object] = {}
    q, k, v = (sd.shard(t) for t in _qkv(30))

    def attempt(name, fn):
        try:
            out[name] = fn()
        except Exception as exc:
            out[name] = type(exc).__name__ + ": " + str(exc)

    attempt(
        "layouts differ", lambda: sd.ring_attention(q, k, v, layout=["contiguous", "zigzag"][rank])
    )
    qh, kh, vh = (t[:, : 1 + rank] for t in (q, k, v))
    attempt("heads differ", lambda: sd.ring_attention(qh, kh, vh))
    attempt("causal differs", lambda: sd.ring_attention(q, k, v, causal=bool(rank)))
    short = [t[:, :, : 10 + 10 * rank] for t in _qkv(30)]
    attempt("lengths not the layout's", lambda: sd.ring_attention(*short))
    attempt("group still works", lambda: float(sd.ring_attention(q, k, v).sum()))
    for layout in sd.LAYOUTS:
        x = torch.arange(2 * 31 * 3.0).view(2, 31, 3)
        attempt(
            f"unshard {layout}",
            lambda x=x, layout=layout: bool(
                torch.equal(sd.unshard(sd.shard(x, layout=layout, dim=1), layout=layout, dim=1), x)
            ),
        )
    for n in (64, 256):
        qn, kn, vn = (sd.shard(t) for t in _qkv(n))
        sd.reset_traffic()
        sd.ring_attention(qn, kn, vn, window=(3, 2))
        out[f"halo bytes n={n}"] = sd.traffic().bytes_sent
    return out


@pytest.mark.slow
def test_mismatches_are_named_on_every_rank_and_halo_bytes_do_not_grow_with_n():
    results = run_group(2, checks)
    assert sorted(results) == [0, 1], results
    for rank, (status, out) in results.items():
        assert status == "ok", out
        for name in (
            "layouts differ",
            "heads differ",
            "causal differs",
            "lengths not the layout's",
        ):
            assert str(out[name]).startswith("ShardMismatchError"), (rank, name, out[name])
        assert "layout" in out["layouts differ"] and "heads" in out["heads differ"]
        assert isinstance(out["group still works"], float)
        assert out["unshard contiguous"] is True and out["unshard zigzag"] is True
        # (left + right)·(d + e) values at most, per batch element and head, float64
        bound = (3 + 2) * (4 + 4) * 2 * 2 * 8
        assert 0 < out["halo bytes n=64"] == out["halo bytes n=256"] <= bound


def fail_mid_ring(rank: int, world: int, how: str) -> str:
    q, k, v = (sd.shard(t).requires_grad_() for t in _qkv(40))

    def bias(i, j):  # rank 1 fails on the second block it sees: in the middle of the ring
        if rank == 1 and j[0] < i[0]:
            if how == "raise":
                raise RuntimeError("rank 1 fails on purpose")
            time.sleep(12)  # a rank that hangs: the others end at the group timeout (8 s)
        return torch.zeros(())

    # rank 0 has all it needs for its forward (sends are posted before compute); its backward
    # waits for rank 1's gradients, which never come
    sd.ring_attention(q, k, v, bias=bias).sum().backward()
    return "finished"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "hang"])
def test_a_failing_rank_ends_the_others_with_an_error(how):
    start = time.monotonic()
    results = run_group(2, fail_mid_ring, how, deadline=45.0, timeout=8.0)
    elapsed = time.monotonic() - start
    assert elapsed < 60
    status, message = results[0]
    assert status == "error", message  # rank 0 did not hang and did not "finish"
    if how == "raise":
        assert results[1][0] == "error" and "on purpose" in results[1][1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_merges_in_float32(dtype, monkeypatch):
    """Zigzag in one process merges two segments: the merge and backward run in float32."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    q, k, v = (t.to(dtype).requires_grad_() for t in _qkv(64))
    out = sd.ring_attention(q, k, v, causal=True, layout="zigzag")
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = sa.attention(q64, k64, v64, causal=True)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    perm = sd.shard(torch.arange(64)[:, None], layout="zigzag")[:, 0]
    assert torch.allclose(out.double(), ref[:, :, perm], atol=tol)
    out.sum().backward()
    ref[:, :, perm].sum().backward()
    for a, b in ((q, q64), (k, k64), (v, v64)):
        assert torch.allclose(a.grad.double(), b.grad, atol=5 * tol)
