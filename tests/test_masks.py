"""Mask builders (torch) against the reference's index predicates, and what masks mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import selfattention as sa
from selfattention import reference

SIZES = [(1, 1), (1, 7), (7, 1), (5, 5), (4, 9), (9, 4)]


@pytest.mark.parametrize(("i", "j"), SIZES)
def test_causal_matches_reference(i, j):
    np.testing.assert_array_equal(sa.masks.causal(i, j).numpy(), reference.causal_mask(i, j))


@pytest.mark.parametrize(("i", "j"), SIZES)
@pytest.mark.parametrize(
    ("left", "right"), [(0, 0), (2, 0), (0, 3), (1, 2), (None, 1), (2, None), (None, None), (9, 9)]
)
def test_window_matches_reference(i, j, left, right):
    got = sa.masks.window(i, j, left, right).numpy()
    np.testing.assert_array_equal(got, reference.window_mask(i, j, left, right))
    # Spelled out: query q sees key k iff q - left <= k <= q + right.
    for q in range(i):
        for k in range(j):
            inside = (left is None or k >= q - left) and (right is None or k <= q + right)
            assert got[q, k] == inside


def test_causal_default_square_and_window_zero_is_identity():
    assert torch.equal(sa.masks.causal(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert torch.equal(sa.masks.window(4, 4, 0, 0), torch.eye(4, dtype=torch.bool))


def test_padding_shape_and_values():
    m = sa.masks.padding([3, 1, 0], 4)
    assert m.shape == (3, 1, 1, 4) and m.dtype == torch.bool
    np.testing.assert_array_equal(m[:, 0, 0].numpy(), reference.padding_mask([3, 1, 0], 4))
    assert sa.masks.padding(torch.tensor([2, 5])).shape == (2, 1, 1, 5)


def test_combine_is_logical_and_with_none():
    a, b = sa.masks.causal(4), sa.masks.window(4, 4, 1, 1)
    assert torch.equal(sa.masks.combine(a, None, b), a & b)
    assert sa.masks.combine(None, None) is None
    pad = sa.masks.padding([2, 4], 4)
    assert sa.masks.combine(a, pad).shape == (2, 1, 4, 4)


def test_build_equals_combination():
    user = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) < 0.5
    got = sa.masks.build(user, True, (2, 3), 4, 6)
    assert torch.equal(got, user & sa.masks.causal(4, 6) & sa.masks.window(4, 6, 2, 3))
    assert sa.masks.build(None, False, None, 4, 6) is None


def test_padding_keys_do_not_change_the_real_tokens():
    """Padding the keys and masking them gives exactly the unpadded result."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g, dtype=torch.float64) for n in (5, 8, 8))
    lengths = [8, 5]
    mask = sa.masks.padding(lengths, 8)
    for backend in ["auto", *sa.functional.backends.REGISTRY]:
        try:
            sa.explain_dispatch(q, k, v, mask=mask, backend=backend)
        except ValueError:
            continue
        out = sa.attention(q, k, v, mask=mask, backend=backend)
        alone = sa.attention(q[1:], k[1:, :, :5], v[1:, :, :5], backend="math")
        torch.testing.assert_close(out[1:], alone, rtol=1e-12, atol=1e-14)
        # Garbage in the padded positions changes nothing either.
        k2, v2 = k.clone(), v.clone()
        k2[1, :, 5:], v2[1, :, 5:] = 1e3, -1e3
        torch.testing.assert_close(sa.attention(q, k2, v2, mask=mask, backend=backend), out)


@pytest.mark.parametrize(
    "shape", [(6,), (5, 6), (1, 6), (2, 1, 1, 6), (1, 3, 5, 6), (2, 3, 5, 6), (3, 1, 1)]
)
@pytest.mark.parametrize("what", ["mask", "bias"])
def test_mask_and_bias_broadcast_shapes_in_every_backend(shape, what):
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g, dtype=torch.float64) for n in (5, 6, 6))
    if what == "mask":
        kw = {"mask": torch.rand(shape, generator=g) < 0.7}
    else:
        kw = {"bias": torch.randn(shape, generator=g, dtype=torch.float64)}
    ref, _ = reference.attention(
        q.numpy(), k.numpy(), v.numpy(), **{n: t.numpy() for n, t in kw.items()}
    )
    for backend in ["auto", *sa.functional.backends.REGISTRY]:
        try:
            sa.explain_dispatch(q, k, v, backend=backend, **kw)
        except ValueError:
            continue
        out = sa.attention(q, k, v, backend=backend, **kw)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-14, err_msg=backend)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_mask_builder_lengths_are_checked(bad):
    with pytest.raises(ValueError, match=r"q_len must be a positive int"):
        sa.masks.causal(bad)
    with pytest.raises(ValueError, match=r"k_len must be a positive int"):
        sa.masks.window(3, bad, 1, 1)
