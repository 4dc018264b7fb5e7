"""Cached causal attention: a prefill then single steps equal one causal forward over the whole
sequence; rotary and ALiBi apply at the cached offset; a windowed cache stays within its window;
``KVCache`` errors name the argument."""

from __future__ import annotations

import pytest
import torch

from selfattention.nn import (
    ALiBi,
    KVCache,
    LearnedPositions,
    RotaryPositions,
    SelfAttention,
    SinusoidalPositions,
    TransformerEncoder,
)

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
POSITIONS = {
    "none": lambda h, d: None,
    "rotary": lambda h, d: RotaryPositions(d),
    "rotary_interleaved": lambda h, d: RotaryPositions(d, interleaved=True),
    "alibi": lambda h, d: ALiBi(h),
}


def _generate(model, x: torch.Tensor, prefill: int, cache) -> torch.Tensor:
    """The outputs of a prefill of ``prefill`` positions, then one position at a time."""
    with torch.no_grad():
        outs = [model(x[:, :prefill], cache=cache)]
        outs += [model(x[:, t : t + 1], cache=cache) for t in range(prefill, x.shape[1])]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("positions", sorted(POSITIONS))
@pytest.mark.parametrize(("window", "causal"), [(None, True), ((6, 0), False), ((4, 9), True)])
def test_prefill_then_steps_equal_one_causal_forward(dtype, positions, window, causal):
    torch.manual_seed(0)
    heads, head_dim = 4, 6
    attn = SelfAttention(
        20,
        heads,
        head_dim=head_dim,
        causal=causal,
        window=window,
        positions=POSITIONS[positions](heads, head_dim),
        dtype=dtype,
    ).eval()
    x = torch.randn(3, 37, 20, dtype=dtype)
    with torch.no_grad():
        full = attn(x)
    for prefill in (1, 11):
        got = _generate(attn, x, prefill, KVCache(capacity=4))
        assert float((got - full).abs().max()) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_causal_encoder_stack_generates_with_one_cache_per_layer(dtype):
    torch.manual_seed(1)
    enc = TransformerEncoder(
        3, 24, 4, causal=True, positions=RotaryPositions(6), dtype=dtype, norm_first=True
    ).eval()
    x = torch.randn(2, 29, 24, dtype=dtype)
    with torch.no_grad():
        full = enc(x).last_hidden_state
        caches = enc.make_cache(capacity=8)
        steps = [enc(x[:, :5], cache=caches).last_hidden_state]
        steps += [enc(x[:, t : t + 1], cache=caches).last_hidden_state for t in range(5, 29)]
    assert float((torch.cat(steps, 1) - full).abs().max()) <= TOL[dtype]
    assert [c.length for c in caches] == [29] * 3
    with pytest.raises(ValueError, match="one KVCache per layer"):
        enc(x[:, :1], cache=caches[:2])


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_additive_positions_at_an_offset_equal_the_whole_table(encoding):
    torch.manual_seed(2)
    pos = (
        SinusoidalPositions(16, max_len=64)
        if encoding == "sinusoidal"
        else LearnedPositions(64, 16)
    )
    x = torch.randn(2, 30, 16)
    whole = pos(x)
    pieces = torch.cat(
        [pos(x[:, :7], offset=0), pos(x[:, 7:8], offset=7), pos(x[:, 8:], offset=8)], 1
    )
    assert torch.equal(pieces, whole)
    with pytest.raises(ValueError, match="max_len=64"):
        pos(x[:, :5], offset=60)
    with pytest.raises(ValueError, match="offset must be a non-negative int"):
        pos(x, offset=-1)


def test_a_rolling_cache_stays_within_the_window():
    torch.manual_seed(3)
    left = 8
    attn = SelfAttention(16, 2, window=(left, 0)).eval()
    x = torch.randn(1, 600, 16)
    cache = KVCache(capacity=4)
    with torch.no_grad():
        full = attn(x)
        outs = []
        for t in range(600):
            outs.append(attn(x[:, t : t + 1], cache=cache))
            assert cache.held <= left and cache.capacity <= 2 * (left + 1)
    assert cache.length == 600 and cache.start == 600 - left
    assert float((torch.cat(outs, 1) - full).abs().max()) <= 1e-6


def test_cache_grows_by_doubling_and_resets():
    attn = SelfAttention(8, 2, causal=True).eval()
    cache = KVCache(capacity=3)
    with torch.no_grad():
        attn(torch.randn(1, 2, 8), cache=cache)
        assert (cache.length, cache.held, cache.capacity) == (2, 2, 3)
        attn(torch.randn(1, 2, 8), cache=cache)
        assert (cache.length, cache.capacity) == (4, 6)
        assert cache.keys.shape == (1, 2, 4, 4) and cache.values.shape == (1, 2, 4, 4)
    cache.reset()
    assert (cache.length, cache.held, cache.keys) == (0, 0, None)


def test_stepping_past_a_fixed_capacity_names_it_and_changes_nothing():
    attn = SelfAttention(8, 2, causal=True).eval()
    cache = KVCache(capacity=4, fixed=True)
    with torch.no_grad():
        attn(torch.randn(1, 3, 8), cache=cache)
        attn(torch.randn(1, 1, 8), cache=cache)
        with pytest.raises(ValueError, match=r"capacity=4 with fixed=True"):
            attn(torch.randn(1, 1, 8), cache=cache)
        assert (cache.length, cache.held) == (4, 4)
        with pytest.raises(ValueError, match="capacity"):
            attn(torch.randn(1, 5, 8), cache=KVCache(capacity=4, fixed=True))


def test_a_fixed_capacity_is_enough_for_a_window():
    attn = SelfAttention(8, 2, window=(3, 0)).eval()
    cache = KVCache(capacity=4, fixed=True)
    with torch.no_grad():
        for _ in range(50):
            attn(torch.randn(1, 1, 8), cache=cache)
    assert cache.capacity == 4 and cache.length == 50


def test_a_cache_from_another_module_shape_is_a_value_error():
    a = SelfAttention(8, 2, causal=True).eval()
    b = SelfAttention(8, 4, causal=True).eval()
    same_shape = SelfAttention(8, 2, causal=True).eval()
    cache = KVCache()
    with torch.no_grad():
        a(torch.randn(1, 3, 8), cache=cache)
        with pytest.raises(ValueError, match="cache holds keys of another shape"):
            a(torch.randn(2, 1, 8), cache=cache)  # another batch size
        with pytest.raises(ValueError, match="cache was filled by another module"):
            b(torch.randn(1, 1, 8), cache=cache)
        with pytest.raises(ValueError, match="cache was filled by another module"):
            same_shape(torch.randn(1, 1, 8), cache=cache)
        cache.reset()
        same_shape(torch.randn(1, 1, 8), cache=cache)  # a reset cache serves any module
        fresh = KVCache()
        a(torch.randn(1, 2, 8), cache=fresh)
        fresh._owner = None  # shape alone still protects a cache passed around by hand
        with pytest.raises(ValueError, match="cache holds keys of another shape"):
            b(torch.randn(1, 1, 8), cache=fresh)


def test_cache_needs_causal_self_attention():
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="cache= needs causal attention"):
        SelfAttention(8, 2)(x, cache=KVCache())
    with pytest.raises(ValueError, match="cache= needs causal attention"):
        SelfAttention(8, 2, window=(2, 1))(x, cache=KVCache())
    with pytest.raises(ValueError, match="cache= is for self-attention"):
        SelfAttention(8, 2, causal=True)(x, torch.randn(1, 4, 8), cache=KVCache())
    with pytest.raises(TypeError, match="cache must be a KVCache"):
        SelfAttention(8, 2, causal=True)(x, cache=[])
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        KVCache(capacity=0)


def test_positions_without_offsets_are_refused_with_a_cache():
    class OnlyAttend(torch.nn.Module):
        def attend(self, q, k):
            return q, k, None

    attn = SelfAttention(8, 2, causal=True, positions=OnlyAttend())
    with pytest.raises(TypeError, match=r"encode\(x, start\)"):
        attn(torch.randn(1, 2, 8), cache=KVCache())


def test_weights_with_a_cache_span_the_held_keys():
    torch.manual_seed(4)
    attn = SelfAttention(8, 2, causal=True, positions=ALiBi(2)).eval()
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        _, full = attn(x, return_weights=True)
        cache = KVCache()
        attn(x[:, :5], cache=cache)
        _, step = attn(x[:, 5:], cache=cache, return_weights=True)
    assert step.shape == (1, 2, 1, 6)
    torch.testing.assert_close(step[0, :, 0], full[0, :, 5], rtol=0, atol=1e-6)
