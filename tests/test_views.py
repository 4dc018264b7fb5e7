"""The "why" views in selfattention.viz: neuron view, value-weighted attention, rollout and
attention flow (hand-computed cases), and the compact storage of long reports."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch

from selfattention import viz
from selfattention.viz import _compact


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


# ---------------------------------------------------------------- neuron view


def test_neuron_products_add_up_to_the_score_the_model_softmaxes(rng):
    """Σ_d scale·q_i[d]·k_j[d] is the score, and softmax of those scores is the module's weight."""
    from selfattention.nn import SelfAttention
    from selfattention.nn.attention import split_heads

    torch.manual_seed(0)
    attn = SelfAttention(12, 3).double().eval()
    x = torch.randn(1, 5, 12, dtype=torch.float64)
    _, w = attn(x, return_weights=True)
    q = split_heads(attn.query_proj(x), 3)[0].detach()  # (H, n, d)
    k = split_heads(attn.key_proj(x), 3)[0].detach()
    p = viz.neuron_products(q, k, 2, 4)  # default scale 1/√d, as the module
    assert p.shape == (3, 4)
    scores = np.stack([viz.neuron_products(q, k, 2, j).sum(-1) for j in range(5)], -1)  # (H, j)
    np.testing.assert_allclose(p.sum(-1), scores[:, 4])
    np.testing.assert_allclose(softmax(scores), w[0, :, 2].detach().numpy(), atol=1e-12)


def test_neuron_products_hand_computed():
    q = np.array([[[1.0, 2.0], [0.0, 1.0]]])  # (H=1, i=2, d=2)
    k = np.array([[[3.0, -1.0], [2.0, 2.0]]])
    np.testing.assert_allclose(viz.neuron_products(q, k, 0, 0, scale=0.5), [[1.5, -1.0]])
    np.testing.assert_allclose(viz.neuron_products(q, k, 1, 1, scale=1.0), [[0.0, 2.0]])
    with pytest.raises(ValueError, match=r"query must be a position in 0\.\.1"):
        viz.neuron_products(q, k, 2, 0)
    with pytest.raises(ValueError, match="share H and d"):
        viz.neuron_products(q, k[..., :1], 0, 0)


# ---------------------------------------------------------------- value-weighted attention


def test_value_norms_and_value_weighted_match_the_definition(rng):
    n_heads, n, d, e = 2, 4, 3, 5
    v = rng.normal(size=(n_heads, n, d))
    w_o = rng.normal(size=(e, n_heads * d))
    alpha = softmax(rng.normal(size=(n_heads, n, n)))
    norms = viz.value_norms(v, w_o)
    vw = viz.value_weighted(alpha, norms)
    for h in range(n_heads):
        for i in range(n):
            for j in range(n):
                moved = alpha[h, i, j] * (w_o[:, h * d : (h + 1) * d] @ v[h, j])
                assert vw[0, h, i, j] == pytest.approx(np.linalg.norm(moved), rel=1e-12)
    with pytest.raises(ValueError, match="norms must be"):
        viz.value_weighted(alpha, norms[:, :3])


def test_value_weighted_shows_that_a_sink_moves_nothing():
    """A head resting on position 0 whose value there is zero moves almost nothing."""
    alpha = np.array([[[0.9, 0.1], [0.9, 0.1]]])
    v = np.array([[[0.0, 0.0], [1.0, 1.0]]])  # v_0 = 0
    vw = viz.value_weighted(alpha, viz.value_norms(v, np.eye(2)))
    np.testing.assert_allclose(vw[0, 0, :, 0], 0.0)
    np.testing.assert_allclose(vw[0, 0, :, 1], 0.1 * np.sqrt(2))


# ---------------------------------------------------------------- rollout and flow

# Two layers × three tokens, one head each (rows = output, columns = input; rows sum to 1).
A1 = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
A2 = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]])
W2 = np.stack([A1[None], A2[None]])  # (L=2, H=1, 3, 3)


def test_rollout_hand_computed_with_the_residual_identity():
    h1, h2 = 0.5 * A1 + 0.5 * np.eye(3), 0.5 * A2 + 0.5 * np.eye(3)
    # output 0 from input 0: via node 0 (h2[0,0] h1[0,0]) and node 1 (h2[0,1] h1[1,0] = 0)
    assert h2[0, 0] * h1[0, 0] == 0.75 * 0.75
    np.testing.assert_allclose(viz.rollout(W2), h2 @ h1)
    assert viz.rollout(W2)[0, 0] == pytest.approx(0.5625)
    np.testing.assert_allclose(viz.rollout(W2, add_residual=False), A2 @ A1)


def test_attention_flow_hand_computed_without_residual():
    """Flow into output 0 (edges in: from node 0 and node 1, 0.5 each):
    input 0 reaches node 0 only (0.5) -> 0.5; input 1 reaches node 0 (0.5) and node 1 (0.5),
    each passing 0.5 on -> 1.0; input 2 reaches node 1 (0.5) and node 2 (1, but node 2 gives
    output 0 nothing) -> 0.5. Rollout instead gives A2 @ A1 row 0 = (0.25, 0.5, 0.25)."""
    np.testing.assert_allclose(
        viz.attention_flow(W2, 0, add_residual=False), [0.5, 1.0, 0.5], atol=1e-12
    )
    # output 2 reads only node 2 (A2[2] = (0, 0, 1)), which reads only input 2 (A1[2] = (0, 0, 1))
    np.testing.assert_allclose(
        viz.attention_flow(W2, 2, add_residual=False), [0.0, 0.0, 1.0], atol=1e-12
    )


def test_attention_flow_with_residual_hand_computed():
    """With 0.5·A + 0.5·I, a one-layer flow is the capacity of the single edge: Â[o, j]."""
    one = A1[None, None]
    h = 0.5 * A1 + 0.5 * np.eye(3)
    np.testing.assert_allclose(viz.attention_flow(one), h, atol=1e-12)


def test_max_flow_needs_the_reverse_edge():
    """The classic case where a greedy path must be undone: s->a->b->t first, then s->b, a->t."""
    s, a, b, t = range(4)
    cap = np.zeros((4, 4))
    cap[s, a] = cap[s, b] = cap[a, t] = cap[b, t] = 1.0
    cap[a, b] = 1.0
    assert viz.max_flow(cap, s, t) == pytest.approx(2.0)


def test_attention_flow_refuses_long_inputs_with_a_clear_error(rng):
    w = softmax(rng.normal(size=(1, 1, 65, 65)))
    with pytest.raises(ValueError, match=r"limited to 64 tokens.*has 65.*rollout"):
        viz.attention_flow(w)


def test_flow_is_bounded_by_rollouts_support_and_one(rng):
    w = softmax(rng.normal(size=(3, 2, 6, 6)) * 2)
    f = viz.attention_flow(w)
    assert f.shape == (6, 6) and np.all(f <= 1 + 1e-9) and np.all(f >= 0)


def test_view_figures_draw(rng, tmp_path):
    w = softmax(rng.normal(size=(2, 3, 5, 5)))
    q, k = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    tokens = ["[CLS]", "a", "$x$", "b", "[SEP]"]
    for fig in (
        viz.neuron_figure(q, k, 1, 2, tokens),
        viz.value_weighted_figure(w, rng.random((2, 3, 5)), tokens, layer=1),
        viz.flow_figure(w, tokens),
    ):
        assert viz.save(fig, tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- compact storage


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.mark.parametrize("precision", ["float32", "uint16", "uint8", "uint7"])
def test_decoded_weights_match_within_the_stated_precision(rng, precision):
    w = softmax(rng.normal(size=(2, 3, 40, 40)) * 3)
    page = viz.render_html([{"name": "s", "weights": w}], precision=precision)
    seq = _data(page)["sequences"][0]
    got = _compact.decode(seq["w"]).reshape(w.shape)
    tol = _compact.tolerance(w, precision)
    assert np.all(np.abs(got - w) <= tol)
    assert "weights" in seq["precision"]
    roll = _compact.decode(seq["rollout"]).reshape(2, 40, 40)
    want = viz.rollout(w, cumulative=True)
    assert np.all(np.abs(roll - want) <= _compact.tolerance(want, precision))


def test_uint8_rows_are_small_and_auto_picks_them_for_long_inputs(rng, monkeypatch):
    w = softmax(rng.normal(size=(2, 2, 300, 300)) * 4)
    f32 = _data(viz.render_html([{"name": "s", "weights": w}], precision="float32"))
    u8 = _data(viz.render_html([{"name": "s", "weights": w}], precision="uint8"))
    assert len(u8["sequences"][0]["w"]["data"]) < 0.3 * len(f32["sequences"][0]["w"]["data"])
    monkeypatch.setattr(sys.modules["selfattention.viz.report"], "AUTO_LIMIT", 1e5)  # "long"
    auto = _data(viz.render_html([{"name": "s", "weights": w}]))
    assert auto["sequences"][0]["w"]["dtype"] == "u1"
    assert auto["sequences"][0]["precision"].startswith("weights stored in 8 bits per row")


def test_report_carries_the_view_data(rng):
    w = softmax(rng.normal(size=(2, 3, 6, 6)))
    q, k = rng.normal(size=(2, 3, 6, 4)), rng.normal(size=(2, 3, 6, 4))
    norms = rng.random((2, 3, 6))
    seq = {"name": "s", "weights": w, "queries": q, "keys": k, "scale": 0.5, "value_norms": norms}
    data = _data(viz.render_html([seq], heads=[1, 2]))["sequences"][0]
    stored_q = _compact.decode(data["neuron"]["q"]).reshape(2, 2, 6, 4)
    np.testing.assert_allclose(stored_q, 0.5 * q[:, 1:], rtol=1e-6)  # scale folded into q
    np.testing.assert_allclose(
        _compact.decode(data["vnorm"]).reshape(2, 2, 6), norms[:, 1:], rtol=1e-6
    )
    np.testing.assert_allclose(
        _compact.decode(data["flow"]).reshape(6, 6), viz.attention_flow(w), rtol=1e-6
    )
    with pytest.raises(ValueError, match="queries and keys"):
        viz.render_html([{"name": "s", "weights": w, "queries": q}])
    with pytest.raises(ValueError, match="value_norms"):
        viz.render_html([{"name": "s", "weights": w, "value_norms": norms[:, :2]}])


def test_signed_weights_fall_back_to_16_bits_and_say_so(rng):
    """Weights of the "sum" normalisation can be negative: 8-bit rows scaled by their maximum
    cannot hold them, so they are stored in 16 bits, and the page says which."""
    w = rng.normal(size=(1, 2, 20, 20)) / 20  # short enough that flow would be computed
    seq = _data(viz.render_html([{"name": "s", "weights": w}], precision="uint8"))["sequences"][0]
    assert seq["w"]["dtype"] == "u2" and "16-bit" in seq["precision"]
    assert seq["flow"] is None  # capacities must be >= 0: no flow view, and no crash
    with pytest.raises(ValueError, match="flow needs weights >= 0"):
        viz.attention_flow(w)
    got = _compact.decode(seq["w"]).reshape(w.shape)
    assert np.all(np.abs(got - w) <= _compact.tolerance(w, "uint16"))
