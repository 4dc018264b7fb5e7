"""Position encodings in selfattention.nn against selfattention.reference (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import randn
from selfattention import reference
from selfattention.nn import (
    ALiBi,
    AttentionPositions,
    LearnedPositions,
    RotaryPositions,
    SelfAttention,
    SinusoidalPositions,
    SinusoidalPositions2D,
    alibi_slopes,
    sinusoidal_table,
)


@pytest.mark.parametrize("n, dim", [(1, 4), (13, 16), (50, 7), (97, 64)])
def test_sinusoidal_table_matches_reference(n, dim):
    got = sinusoidal_table(n, dim, dtype=torch.float64)
    # Same formula; torch's and NumPy's sin differ in the last bit, angles reach n radians.
    ref = reference.sinusoidal_positions(n, dim)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=4 * n * np.finfo(float).eps)


def test_sinusoidal_positions_add_the_table():
    pe = SinusoidalPositions(10, max_len=32)
    x = randn(2, 9, 10)
    ref = torch.from_numpy(reference.sinusoidal_positions(9, 10))
    torch.testing.assert_close(pe(x), x + ref, rtol=1e-15, atol=1e-15)
    # float32 gets the float64 table rounded once (within one ulp), not a float32 recomputation.
    x32 = x.float()
    torch.testing.assert_close(pe(x32), x32 + ref.float(), rtol=1.2e-7, atol=1e-7)
    assert pe.state_dict() == {}
    # Sanity of the known values: position 0 is (0, 1, 0, 1, ...).
    torch.testing.assert_close(pe.table(1)[0], torch.tensor([0.0, 1.0] * 5))


def test_sinusoidal_2d_is_rows_then_columns():
    pe = SinusoidalPositions2D(8, height=3, width=5)
    table = pe.table(dtype=torch.float64).view(3, 5, 8)
    rows, cols = reference.sinusoidal_positions(3, 4), reference.sinusoidal_positions(5, 4)
    for r in range(3):
        for c in range(5):
            expected = np.concatenate([rows[r], cols[c]])
            np.testing.assert_allclose(table[r, c].numpy(), expected, rtol=0, atol=1e-15)
    x = randn(2, 15, 8)
    torch.testing.assert_close(pe(x), x + table.view(15, 8), rtol=0, atol=0)  # same table
    torch.testing.assert_close(pe(x.view(2, 3, 5, 8)), (x + table.view(15, 8)).view(2, 3, 5, 8))
    with pytest.raises(ValueError, match=r"\(batch, 15, 8\)"):
        pe(randn(2, 14, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        SinusoidalPositions2D(6, 2, 2)


def test_learned_positions():
    torch.manual_seed(0)
    pe = LearnedPositions(16, 8)
    assert list(pe.state_dict()) == ["weight"] and pe.weight.shape == (16, 8)
    assert 0.01 < float(pe.weight.detach().std()) < 0.03
    x = torch.randn(3, 5, 8, requires_grad=True)
    out = pe(x)
    torch.testing.assert_close(out, x + pe.weight[:5])
    out.sum().backward()
    torch.testing.assert_close(pe.weight.grad[:5], torch.full((5, 8), 3.0))
    assert float(pe.weight.grad[5:].abs().max()) == 0.0
    with pytest.raises(ValueError, match="max_len=16"):
        pe(torch.randn(1, 17, 8))
    with pytest.raises(ValueError, match=r"\(batch, seq, 8\)"):
        pe(torch.randn(1, 4, 9))


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 11, 8), (1, 1, 64, 32)])
def test_rotary_matches_reference(shape):
    x = randn(*shape, seed=1)
    rope = RotaryPositions(shape[-1])
    ref = torch.from_numpy(reference.rotary(x.numpy()))
    torch.testing.assert_close(rope.rotate(x), ref, rtol=1e-14, atol=1e-13)
    # float32: cos/sin from float64 angles rounded once, error at float32 resolution.
    torch.testing.assert_close(rope.rotate(x.float()).double(), ref, rtol=1e-6, atol=1e-6)


def test_rotary_interleaved_is_the_half_split_layout_permuted():
    d = 8
    x = randn(2, 7, d, seed=2)
    to_half = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # (0,2,4,6,1,3,5,7)
    back = torch.argsort(to_half)
    got = RotaryPositions(d, interleaved=True).rotate(x)
    expected = torch.from_numpy(reference.rotary(x[..., to_half].numpy()))[..., back]
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_scores_depend_only_on_relative_position(interleaved):
    rope = RotaryPositions(6, interleaved=interleaved)
    q, k = randn(6, seed=3), randn(6, seed=4)
    n = 12
    qs, ks = rope.rotate(q.expand(n, 6)), rope.rotate(k.expand(n, 6))
    s = qs @ ks.T  # s[i, j] = q rotated to i · k rotated to j
    for offset in range(-n + 1, n):
        diag = torch.diagonal(s, offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), rtol=1e-12, atol=1e-12)
    # and the norm is kept
    torch.testing.assert_close(qs.norm(dim=-1), q.norm().expand(n))


@pytest.mark.parametrize("heads", [*range(1, 17), 24, 32])
def test_alibi_slopes_match_reference(heads):
    np.testing.assert_array_equal(alibi_slopes(heads).numpy(), reference.alibi_slopes(heads))


def test_alibi_known_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), 2.0 ** -torch.arange(1, 9, dtype=torch.float64))
    a = ALiBi(4)
    got = a.bias(5, 7, dtype=torch.float64)
    assert got.shape == (1, 4, 5, 7)
    np.testing.assert_array_equal(got[0].numpy(), reference.alibi_bias(4, 5, 7))  # exact
    assert isinstance(a, AttentionPositions) and isinstance(RotaryPositions(4), AttentionPositions)


def test_alibi_under_causal_equals_the_papers_form():
    # Paper: bias m·(j - i) on j <= i, future masked. Ours: -m|i - j| with causal=True.
    torch.manual_seed(0)
    m = SelfAttention(12, 4, positions=ALiBi(4), causal=True).double()
    x = randn(2, 9, 12, seed=5)
    out = m(x)
    m.positions = None
    i, j = torch.arange(9)[:, None], torch.arange(9)[None, :]
    paper = (alibi_slopes(4)[:, None, None] * (j - i)).masked_fill(j > i, -torch.inf)
    torch.testing.assert_close(out, m(x, bias=paper[None]), rtol=1e-12, atol=1e-12)


def test_rope_in_attention_is_shift_invariant():
    # Self-attention with RoPE gives the same output for a sequence whatever its absolute start:
    # padding the sequence on the left with masked keys shifts every position by the same amount.
    torch.manual_seed(0)
    m = SelfAttention(8, 2, positions=RotaryPositions(4)).double()
    x = randn(1, 6, 8, seed=6)
    padded = torch.cat([randn(1, 3, 8, seed=7), x], dim=1)
    mask = torch.arange(9) >= 3  # the three pad keys are invisible
    torch.testing.assert_close(m(padded, mask=mask)[:, 3:], m(x), rtol=1e-12, atol=1e-12)


def test_bad_position_arguments():
    with pytest.raises(ValueError, match="head_dim must be even"):
        RotaryPositions(5)
    with pytest.raises(ValueError, match="head_dim=8"):
        RotaryPositions(8).rotate(torch.randn(3, 6))
    with pytest.raises(ValueError, match="heads must be a positive int"):
        ALiBi(0)
    with pytest.raises(ValueError, match="heads=4"):
        ALiBi(4).attend(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="max_len=8"):
        SinusoidalPositions(4, max_len=8)(torch.randn(1, 9, 4))
    with pytest.raises(TypeError, match="floating-point"):
        SinusoidalPositions(4)(torch.ones(1, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="base"):
        SinusoidalPositions(4, base=0.5)
