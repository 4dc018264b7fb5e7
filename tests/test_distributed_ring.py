"""ring_attention on 1, 2, 3 (uneven shards) and 4 spawned gloo ranks against one process.

Each world size is one spawned group that runs every case (spawning is the slow part): float64
output and dq, dk, dv against ``sa.attention(backend="math")`` over the whole sequence, to 1e-10.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist

import selfattention as sa
from distributed_harness import run_group
from selfattention import distributed as sd
from selfattention.nn.positions import alibi_slopes

TOL = 1e-10
B, H, D, E = 2, 2, 5, 3
LENGTHS = {1: 23, 2: 29, 3: 31, 4: 37}  # 29 over 4 zigzag chunks, 31 over 3: uneven shards


def alibi(heads: int):
    """ALiBi as a function of global positions: bias (h, i, j) = -m_h |i - j|."""
    slopes = alibi_slopes(heads).to(torch.float64)

    def bias(i, j):
        return -slopes[:, None, None] * (i[:, None] - j[None, :]).abs().to(torch.float64)

    return bias


def cases(n: int, world: int) -> dict[str, dict]:
    """name -> keyword arguments (full-sequence masks/biases are sharded by the worker)."""
    last = sd.layout_segments(n, world, "contiguous")[-1][0]
    lengths = torch.tensor([n - 3, last[0]])  # batch 1: the last shard's keys all padding
    pad = sa.masks.padding(lengths, n)  # (b, 1, 1, n)
    g = torch.Generator().manual_seed(5)
    rows = torch.rand(B, H, n, n, generator=g) > 0.4
    rows[:, :, 2] = False  # a query row with no key at all
    bias_t = torch.randn(1, H, n, n, generator=g, dtype=torch.float64)
    shard_len = n // world
    return {
        "full": {},
        "full zigzag": dict(layout="zigzag"),
        "causal contiguous": dict(causal=True),
        "causal zigzag": dict(causal=True, layout="zigzag"),
        "window narrower than a shard": dict(window=2),
        "window wider than a shard": dict(window=(shard_len + 3, 2 * shard_len + 1)),
        "asymmetric window (5, 1)": dict(window=(5, 1)),
        "asymmetric window (0, 4)": dict(window=(0, 4)),
        "causal window 7": dict(window=7, causal=True),
        "zigzag window (3, 6)": dict(window=(3, 6), layout="zigzag"),
        "window (None, 3): ring": dict(window=(None, 3)),
        "window (6, None) zigzag: ring": dict(window=(6, None), layout="zigzag"),
        "padding, a shard all masked": dict(mask=pad),
        "padding causal zigzag": dict(mask=pad, causal=True, layout="zigzag"),
        "padding window": dict(mask=pad, window=(4, 2)),
        "row mask with empty rows": dict(mask=rows),
        "ALiBi causal": dict(bias=alibi(H), causal=True),
        "ALiBi zigzag window": dict(bias=alibi(H), window=5, layout="zigzag"),
        "bias tensor": dict(bias=bias_t),
        "sum": dict(normalize="sum", positive=True),
        "sum causal zigzag": dict(normalize="sum", causal=True, layout="zigzag", positive=True),
        "sum window": dict(normalize="sum", window=(3, 3), positive=True),
        "relu": dict(normalize="relu"),
        "relu padding causal": dict(normalize="relu", mask=pad, causal=True),
        "relu window zigzag": dict(normalize="relu", window=(2, 5), layout="zigzag"),
        "scale 0.3": dict(scale=0.3, causal=True),
    }


def _one_case(rank: int, world: int, n: int, kw: dict) -> tuple[float, float]:
    kw = dict(kw)
    positive = kw.pop("positive", False)
    layout = kw.get("layout", "contiguous")
    g = torch.Generator().manual_seed(n)
    draw = (lambda *s: torch.rand(*s, generator=g)) if positive else torch.randn
    if not positive:
        torch.manual_seed(n)
    q, k = (draw(B, H, n, D).double() for _ in range(2))
    v = draw(B, H, n, E).double()
    dout = torch.randn(B, H, n, E, generator=g, dtype=torch.float64)
    full = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_kw = {key: val for key, val in kw.items() if key != "layout"}
    if callable(ref_kw.get("bias")):
        pos = torch.arange(n)
        ref_kw["bias"] = ref_kw["bias"](pos, pos)
    ref = sa.attention(*full, backend="math", **ref_kw)
    ref_grads = torch.autograd.grad(ref, full, dout)

    def cut(t):
        return sd.shard(t, layout=layout) if t.shape[-2] == n else t

    ring_kw = dict(kw)
    for name in ("mask", "bias"):
        if isinstance(ring_kw.get(name), torch.Tensor):
            ring_kw[name] = cut(ring_kw[name])  # this rank's query rows, all keys
    mine = [cut(t).clone().requires_grad_() for t in (q, k, v)]
    out = sd.ring_attention(*mine, **ring_kw)
    grads = torch.autograd.grad(out, mine, cut(dout))
    out_err = (out - cut(ref)).abs().max().item()
    grad_err = max((a - cut(b)).abs().max().item() for a, b in zip(grads, ref_grads, strict=True))
    assert torch.isfinite(out).all()
    return out_err, grad_err


def _module_case(rank: int, world: int, n: int, layout: str, **attention_kwargs):
    """An encoder layer made sequence-parallel: output and parameter gradients (summed over
    ranks) against the same layer on the whole sequence."""
    torch.manual_seed(3)
    layer = sa.nn.TransformerEncoderLayer(8, 2, ff_dim=16, dtype=torch.float64, **attention_kwargs)
    x = torch.randn(B, n, 8, dtype=torch.float64)
    w = torch.randn(B, n, 8, dtype=torch.float64)
    (layer(x) * w).sum().backward()
    parallel = sd.sequence_parallel(copy.deepcopy(layer), layout=layout)
    parallel.zero_grad()
    y = parallel(sd.shard(x, layout=layout, dim=1))
    (y * sd.shard(w, layout=layout, dim=1)).sum().backward()
    out_err = (y - sd.shard(layer(x), layout=layout, dim=1)).abs().max().item()
    grad_err = 0.0
    assert list(parallel.state_dict()) == list(layer.state_dict())  # same keys, shared params
    for p, p_ref in zip(parallel.parameters(), layer.parameters(), strict=True):
        g = p.grad.clone()
        if dist.is_initialized():
            dist.all_reduce(g)
        grad_err = max(grad_err, (g - p_ref.grad).abs().max().item())
    return out_err, grad_err


def all_cases(rank: int, world: int) -> dict[str, object]:
    n = LENGTHS[world]
    report: dict[str, object] = {}
    module_cases = {
        "module: causal rotary zigzag": dict(
            layout="zigzag", causal=True, positions=sa.nn.RotaryPositions(4)
        ),
        "module: ALiBi window": dict(layout="contiguous", window=(3, 5), positions=sa.nn.ALiBi(2)),
    }
    for name, kw in cases(n, world).items():
        try:
            report[name] = _one_case(rank, world, n, kw)
        except Exception as exc:  # report per case; the group stays usable
            report[name] = f"{type(exc).__name__}: {exc}"
    for name, kw in module_cases.items():
        try:
            report[name] = _module_case(rank, world, n, **kw)
        except Exception as exc:
            report[name] = f"{type(exc).__name__}: {exc}"
    return report


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ring_matches_one_process(world):
    results = run_group(world, all_cases)
    assert sorted(results) == list(range(world)), f"ranks that did not report: {results}"
    bad = []
    for rank, (status, report) in sorted(results.items()):
        assert status == "ok", f"rank {rank}: {report}"
        for name, value in report.items():
            if isinstance(value, str) or max(value) > TOL:
                bad.append(f"rank {rank} {name}: {value}")
    assert not bad, "\n".join(bad)
