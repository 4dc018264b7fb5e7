"""selfattention.viz: inputs, figures, rollout, PCA, the JSON format, the HTML report and the CLI.

The browser checks of the report live in test_report_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import numpy as np
import pytest
import torch

from selfattention import viz
from selfattention.cli import main
from selfattention.viz._inputs import as_array, parse_selection, stack_layers
from selfattention.viz.report import script_json


def softmax_maps(rng: np.random.Generator, *shape: int, temp: float = 2.0) -> np.ndarray:
    x = rng.normal(size=shape) * temp
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------- inputs


def test_stack_layers_accepts_the_usual_layouts(rng):
    w = softmax_maps(rng, 3, 2, 5, 5)
    assert stack_layers(w[0, 0]).shape == (1, 1, 5, 5)
    assert stack_layers(w[0]).shape == (1, 2, 5, 5)
    np.testing.assert_array_equal(stack_layers(w), w)
    # what an encoder returns for a batch of one: a tuple of (1, H, i, j) torch tensors
    per_layer = tuple(torch.from_numpy(w[k][None]).float() for k in range(3))
    np.testing.assert_allclose(stack_layers(per_layer), w, atol=1e-7)
    np.testing.assert_allclose(stack_layers(torch.from_numpy(w).to(torch.bfloat16)), w, atol=1e-2)


def test_as_array_keeps_float64_tensors_exact_and_widens_half(rng):
    x = rng.standard_normal((3, 4)) / 3.0  # values float32 cannot hold exactly
    got = as_array(torch.from_numpy(x), "x")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, x)
    for dtype in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(x).to(dtype)
        np.testing.assert_array_equal(as_array(t, "x"), t.double().numpy())


def test_stack_layers_rejects_batches_and_bad_values(rng):
    w = softmax_maps(rng, 2, 2, 4, 4)  # (b=2, H, i, j) per layer
    with pytest.raises(ValueError, match="b=2"):
        stack_layers([w, w])
    with pytest.raises(ValueError, match="same"):
        stack_layers([w[0], w[0, :1]])
    bad = w[0].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stack_layers(bad)
    with pytest.raises(TypeError, match="weights"):
        stack_layers("not weights")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(None, [0, 1, 2, 3, 4, 5]), ("0,5", [0, 5]), ("0-3", [0, 1, 2, 3]), ("1-2,-1", [1, 2, 5]),
     (-1, [5]), (slice(None, None, 2), [0, 2, 4]), ([3, 3, 1], [3, 1])],
)  # fmt: skip
def test_parse_selection(spec, expected):
    assert parse_selection(spec, 6, "layers") == expected


@pytest.mark.parametrize("spec", ["6", "a-b", [7], ""])
def test_parse_selection_errors_name_the_argument(spec):
    with pytest.raises(ValueError, match="heads"):
        parse_selection(spec, 6, "heads")


# ---------------------------------------------------------------- rollout


def test_rollout_hand_computed():
    w1 = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # 2 heads
    w2 = np.array([[[0.0, 1.0], [1.0, 0.0]]] * 2)
    # layer 1: mean of heads [[.5,.5],[.5,.5]]; + I -> [[1.5,.5],[.5,1.5]]; rows / 2
    a1 = np.array([[0.75, 0.25], [0.25, 0.75]])
    # layer 2: [[0,1],[1,0]] + I -> [[1,1],[1,1]]; rows / 2
    a2 = np.array([[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(viz.rollout([w1, w2]), a2 @ a1)
    np.testing.assert_allclose(viz.rollout([w1]), a1)
    np.testing.assert_allclose(viz.rollout([w1, w2], add_residual=False), w2[0] @ w1.mean(0))
    cum = viz.rollout([w1, w2], cumulative=True)
    np.testing.assert_allclose(cum, np.stack([a1, a2 @ a1]))


def test_rollout_equals_half_attention_half_identity_and_keeps_rows_stochastic(rng):
    w = softmax_maps(rng, 4, 3, 7, 7)
    expected = np.eye(7)
    for layer in w:
        expected = (0.5 * layer.mean(0) + 0.5 * np.eye(7)) @ expected  # Abnar & Zuidema's form
    r = viz.rollout(torch.from_numpy(w))
    np.testing.assert_allclose(r, expected, atol=1e-6)
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-6)


def test_rollout_masked_rows_give_zeros_not_nan():
    w = np.array([[[[0.5, 0.5], [0.0, 0.0]]]])  # query 1 attends to nothing
    out = viz.rollout(w, add_residual=False)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[1], [0.0, 0.0])
    with pytest.raises(ValueError, match="square"):
        viz.rollout(np.ones((1, 1, 2, 3)) / 3)


# ---------------------------------------------------------------- PCA and shift


def test_pca_matches_the_covariance_eigenvectors(rng):
    x = rng.normal(size=(30, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    coords, comps, ratio = viz.pca(x, 2)
    xc = x - x.mean(0)
    evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
    np.testing.assert_allclose(ratio, evals[::-1][:2] / evals.sum(), rtol=1e-10)
    ref_coords = xc @ evecs[:, ::-1][:, :2]
    signs = np.sign((coords * ref_coords).sum(0))
    np.testing.assert_allclose(coords, ref_coords * signs, atol=1e-10)
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-12)


def test_shift_draws_one_arrow_per_word_and_stage(rng):
    static = rng.normal(size=(5, 8))
    stages = {"self-attention": static + 0.3, "layer 6": static + 0.6}
    words = ["the", "bank", "of", "the", "river"]
    fig = viz.shift(static, stages, words, highlight="bank")
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if t.arrow_patch is not None]
    assert len(arrows) == 5 * 2
    coords, _, _ = viz.pca(np.concatenate([static, *stages.values()]), 2)
    # the first collection holds the highlighted static point(s): "bank"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), coords[1:2])
    assert {t.get_text() for t in ax.texts} >= {"bank", "river", "bank′"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["static", *stages]


def test_shift_errors(rng):
    static = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match="layer 6"):
        viz.shift(static, {"layer 6": rng.normal(size=(3, 5))}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="zebra"):
        viz.shift(static, static, ["a", "b", "c"], highlight="zebra")
    with pytest.raises(ValueError, match="labels"):
        viz.shift(static, static, ["a", "b"])


# ---------------------------------------------------------------- heatmaps


def test_heatmap_draws_the_weights_with_labels_and_values(rng, tmp_path):
    w = softmax_maps(rng, 4, 4)
    tokens = ["the", "bank", "of", "river"]
    fig = viz.heatmap(torch.from_numpy(w), tokens, title="head 0")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), w)
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert len(ax.texts) == 16 and ax.texts[0].get_text() == f"{w[0, 0]:.2f}".lstrip("0")
    path = viz.save(fig, tmp_path / "sub" / "h.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_heatmap_many_tokens_thins_labels_and_skips_values(rng):
    w = softmax_maps(rng, 150, 150)
    fig = viz.heatmap(w, [f"t{k}" for k in range(150)], max_labels=50)
    ax = fig.axes[0]
    assert len(ax.texts) == 0
    assert 40 <= len(ax.get_xticklabels()) <= 50
    assert ax.get_xticklabels()[1].get_text() == "t3"


def test_heatmap_into_given_axes_and_cross_attention_labels(rng):
    from selfattention.viz.figures import new_figure

    fig = new_figure(4, 3)
    ax = fig.add_subplot()
    out = viz.heatmap(softmax_maps(rng, 2, 3), ["a", "b", "c"], ["q1", "q2"], ax=ax, colorbar=False)
    assert out is fig and len(fig.axes) == 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q1", "q2"]
    with pytest.raises(ValueError, match="x_labels"):
        viz.heatmap(softmax_maps(rng, 2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="2-d"):
        viz.heatmap(softmax_maps(rng, 2, 2, 3), ["a", "b", "c"])


def test_grid_filters_layers_and_heads(rng):
    w = softmax_maps(rng, 4, 3, 5, 5)
    fig = viz.grid(list(w), list("abcde"), layers="0,3", heads=[2, 0], mean=True)
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"][:6]
    assert len(fig.axes) == 2 * 3 + 1  # 2 layers × (2 heads + mean) + colorbar
    np.testing.assert_allclose(panels[0].images[0].get_array(), w[0, 2])
    np.testing.assert_allclose(panels[1].images[0].get_array(), w[0, 0])
    np.testing.assert_allclose(panels[2].images[0].get_array(), w[0].mean(0))  # all heads
    np.testing.assert_allclose(panels[3].images[0].get_array(), w[3, 2])
    assert panels[0].get_title() == "head 2" and panels[3].get_ylabel() == "layer 3"
    with pytest.raises(ValueError, match="layers"):
        viz.grid(w, list("abcde"), layers=4)


# ---------------------------------------------------------------- images


def test_patches_cut_row_by_row():
    img = np.arange(24, dtype=float).reshape(4, 6)
    ps = viz.patches(img, (2, 3))
    assert len(ps) == 6 and ps[0].shape == (2, 2)
    np.testing.assert_array_equal(ps[1], img[:2, 2:4])
    np.testing.assert_array_equal(ps[3], img[2:, :2])
    with pytest.raises(ValueError, match="evenly"):
        viz.patches(img, (3, 3))


def test_image_attention_draws_the_query_row_over_the_image(rng):
    img = rng.random((8, 8))
    w = softmax_maps(rng, 5, 5)  # class token + 2×2 patches
    fig = viz.image_attention(img, w, (2, 2), query=2, cls_token=True)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[1].get_array(), w[3, 1:].reshape(2, 2))
    assert "patch 2" in ax.get_title() and len(ax.patches) == 1  # the query's outline
    fig = viz.image_attention(img, w, (2, 2), cls_token=True)  # None -> the class token's row
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), w[0, 1:].reshape(2, 2))
    w4 = softmax_maps(rng, 4, 4)
    fig = viz.image_attention(img, w4, (2, 2))  # None without class token -> mean over queries
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), w4.mean(0).reshape(2, 2))
    with pytest.raises(ValueError, match="grid"):
        viz.image_attention(img, w4, (3, 3))
    with pytest.raises(ValueError, match="out of range"):
        viz.image_attention(img, w4, (2, 2), query=4)


def test_image_attention_of_layers_uses_rollout_and_image_grid(rng):
    img = rng.random((6, 6, 3)) * 255  # colour, not in [0, 1]
    w = softmax_maps(rng, 3, 2, 9, 9)
    per_layer = [torch.from_numpy(layer).requires_grad_() for layer in w]  # straight from a model
    fig = viz.image_attention(img, per_layer, (3, 3), query=4)
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), viz.rollout(w)[4].reshape(3, 3))
    assert fig.axes[0].get_title().startswith("rollout")
    fig = viz.image_grid(img, w, (3, 3), query=4, layers="0,2", heads=1)
    assert len(fig.axes) == 2 * 3  # layers × (1 head, mean, rollout)
    np.testing.assert_allclose(
        fig.axes[5].images[1].get_array(), viz.rollout(w)[4].reshape(3, 3), atol=1e-12
    )


# ---------------------------------------------------------------- attention.json


def test_json_round_trip(rng, tmp_path):
    w = softmax_maps(rng, 2, 3, 4, 4)
    path = viz.dump_json(
        tmp_path / "a.json",
        [{"name": "s1", "tokens": ["a", "b", "c", "</script>"], "weights": torch.from_numpy(w)}],
        meta={"word": "bank"},
    )
    doc = json.loads(path.read_text())
    assert doc["format"] == "selfattention.attention/1" and doc["meta"] == {"word": "bank"}
    assert len(doc["sequences"][0]["weights"][1][2][3]) == 4  # [layer][head][query][key]
    (r,) = viz.load_json(path)
    assert r.name == "s1" and r.tokens[3] == "</script>"
    np.testing.assert_allclose(r.weights, w, atol=5e-7)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"sequences": [{"tokens": ["a"], "weights": [[[[1.0]], [[0.5, 0.5]]]]}]}, "ragged"),
        ({"sequences": [{"tokens": ["a"], "weights": [[[1.0]]]}]}, "expected 4"),
        ({"sequences": [{"tokens": ["a", "b"], "weights": [[[[1.0]]]]}]}, "2 labels"),
        ({"sequences": [{"weights": [[[[1.0]]]]}]}, "'tokens' and 'weights'"),
        ({"format": "other/9", "sequences": []}, "unknown format"),
        ([1, 2], "'sequences' list"),
    ],
)
def test_load_json_errors(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        viz.load_json(path)


def test_records_check_their_fields(rng):
    w = softmax_maps(rng, 1, 1, 5, 5)
    with pytest.raises(TypeError, match="unknown keys"):
        viz.render_html([{"weights": w, "tokenz": []}])
    with pytest.raises(ValueError, match="patches"):
        viz.AttentionRecord("img", w, patches=[np.zeros((2, 2))] * 3)
    r = viz.AttentionRecord("img", w, image=np.zeros((4, 4)), grid=(2, 2), cls_token=True)
    assert len(r.patches) == 4 and r.tokens == ["[CLS]", "patch 0", "patch 1", "patch 2", "patch 3"]


# ---------------------------------------------------------------- HTML report


def _decode(v: dict) -> np.ndarray:
    raw = base64.b64decode(v["data"])
    if v["dtype"] == "f4":
        return np.frombuffer(raw, "<f4")
    return v["lo"] + np.frombuffer(raw, "<u2") * ((v["hi"] - v["lo"]) / 65535)


def _data_block(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_script_json_cannot_break_out_of_the_script_block():
    tokens = ["</script><script>alert(1)</script>", "<!--", "a&b", "\u2028", "<img src=x>"]
    text = script_json({"tokens": tokens})
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text)["tokens"] == tokens


def test_report_is_self_contained_and_escapes_user_strings(rng, tmp_path):
    evil = "</script><script>window.__pwned=1</script>"
    w = softmax_maps(rng, 2, 3, 4, 4)
    from selfattention.viz.figures import new_figure

    fig = new_figure(2, 2)
    fig.add_subplot().plot([0, 1], [1, 0])
    path = viz.report(
        tmp_path / "r" / "report.html",
        [{"name": evil, "tokens": ["<b>a</b>", evil, "c", "d"], "weights": w}],
        title="T <i>x</i>",
        tables=[
            ("caption <u>", ["word", "cos"], [["<img src=x onerror=alert(1)>", 0.5], ["b", None]])
        ],
        figures=[("plot", fig)],
    )
    page = path.read_text(encoding="utf-8")
    # exactly two scripts (data + viewer); nothing user-supplied became markup
    assert len(re.findall(r"<script", page, re.I)) == 2
    assert len(re.findall(r"</script", page, re.I)) == 2
    assert "<img src=x" not in page and "<i>x</i>" not in page and "<u>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "T &lt;i&gt;x&lt;/i&gt;" in page
    # no network: no external URLs, images are data: URIs, and the CSP forbids fetching
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert re.search(r'<img src="data:image/png;base64,', page)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    js = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp  # only the viewer's own script may run
    data = _data_block(page)
    seq = data["sequences"][0]
    assert seq["name"] == evil and seq["x"][1] == evil
    weights = _decode(seq["w"]).reshape(2, 3, 4, 4)
    np.testing.assert_allclose(weights, w, rtol=1e-6)


def test_report_filters_layers_and_heads_but_means_use_all(rng):
    w = softmax_maps(rng, 3, 4, 5, 5)
    page = viz.render_html(
        [{"name": "s", "tokens": list("abcde"), "weights": w}], layers="1-2", heads=[3]
    )
    seq = _data_block(page)["sequences"][0]
    assert seq["layers"] == [1, 2] and seq["heads"] == [3]
    got = _decode(seq["w"]).reshape(2, 1, 5, 5)
    np.testing.assert_allclose(got, w[1:3, 3:4], rtol=1e-6)
    mean = _decode(seq["mean"]).reshape(2, 5, 5)
    np.testing.assert_allclose(mean, w[1:3].mean(1), rtol=1e-6)
    roll = _decode(seq["rollout"]).reshape(2, 5, 5)
    np.testing.assert_allclose(roll, viz.rollout(w, cumulative=True)[1:3], rtol=1e-5)


def test_report_uint16_precision_halves_the_size_within_its_step(rng):
    w = softmax_maps(rng, 2, 3, 30, 30)
    seq = [{"name": "s", "tokens": [str(k) for k in range(30)], "weights": w}]
    exact = viz.render_html(seq)  # small: "auto" keeps float32
    assert _data_block(exact)["sequences"][0]["w"]["dtype"] == "f4"
    small = viz.render_html(seq, precision="uint16")
    stored = _data_block(small)["sequences"][0]["w"]
    assert stored["dtype"] == "u2"
    step = (w.max() - w.min()) / 65535
    np.testing.assert_allclose(_decode(stored).reshape(w.shape), w, atol=step / 2 + 1e-12, rtol=0)
    assert len(stored["data"]) <= 0.51 * len(_data_block(exact)["sequences"][0]["w"]["data"])
    with pytest.raises(ValueError, match="precision"):
        viz.render_html(seq, precision="float16")


def test_report_image_sequence_carries_patches_and_image(rng):
    img = np.arange(64, dtype=float).reshape(8, 8)
    w = softmax_maps(rng, 1, 2, 5, 5)
    page = viz.render_html(
        [{"name": "img", "image": img, "grid": (2, 2), "cls_token": True, "weights": w}]
    )
    seq = _data_block(page)["sequences"][0]
    p, im = seq["patches"], seq["image"]
    assert (p["h"], p["w"], p["cls"]) == (4, 4, 1) and im["grid"] == [2, 2]
    rgba = np.frombuffer(base64.b64decode(p["rgba"]), np.uint8).reshape(4, 4, 4, 4)
    assert rgba[0, 0, 0, 0] == 0 and rgba[3, 3, 3, 0] == 255 and (rgba[..., 3] == 255).all()
    full = np.frombuffer(base64.b64decode(im["rgba"]), np.uint8).reshape(8, 8, 4)
    np.testing.assert_array_equal(full[4:, 4:], rgba[3])  # patch 3 = bottom-right quarter


def test_report_rejects_bad_tables_and_figures(rng):
    seq = [{"name": "s", "tokens": list("ab"), "weights": softmax_maps(rng, 2, 2)}]
    with pytest.raises(ValueError, match="tables\\[0\\] row 0"):
        viz.render_html(seq, tables=[("c", ["a", "b"], [[1]])])
    with pytest.raises(ValueError, match="neither PNG nor JPEG"):
        viz.render_html(seq, figures=[("c", b"GIF89a")])
    with pytest.raises(ValueError, match="empty"):
        viz.render_html([])


# ---------------------------------------------------------------- CLI


def test_cli_viz_json(rng, tmp_path, capsys):
    w = softmax_maps(rng, 3, 2, 4, 4)
    src = viz.dump_json(
        tmp_path / "attention.json", [{"name": "s", "tokens": list("abcd"), "weights": w}]
    )
    out = tmp_path / "out"
    assert (
        main(["viz", "json", str(src), "--out", str(out), "--layers", "0,2", "--heads", "1"]) == 0
    )
    assert (out / "grid.png").read_bytes().startswith(b"\x89PNG")
    seq = _data_block((out / "report.html").read_text())["sequences"][0]
    assert seq["layers"] == [0, 2] and seq["heads"] == [1]
    assert str(out / "report.html") in capsys.readouterr().out
    assert main(["viz", "json", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert main(["viz", "json", str(src), "--out", str(out), "--layers", "0-x"]) == 2
    assert "--layers" in capsys.readouterr().err


def test_cli_viz_json_mixes_deep_and_one_layer_sequences(rng, tmp_path, capsys):
    seqs = [
        {"name": "model", "tokens": list("abc"), "weights": softmax_maps(rng, 6, 2, 3, 3)},
        {"name": "glove", "tokens": list("xyz"), "weights": softmax_maps(rng, 3, 3)},
    ]
    src = viz.dump_json(tmp_path / "attention.json", seqs)
    out = tmp_path / "out"
    assert main(["viz", "json", str(src), "--out", str(out), "--layers", "0,5"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["grid-00-model.png", "grid-01-glove.png"]
    data = _data_block((out / "report.html").read_text())["sequences"]
    assert data[0]["layers"] == [0, 5] and data[1]["layers"] == [0]
    assert main(["viz", "json", str(src), "--out", str(out), "--layers", "4-5"]) == 0
    assert "'glove' has 1 layers; --layers 4-5 selects none" in capsys.readouterr().err


# ---------------------------------------------------------------- user text, atomic files

# Text matplotlib would read as mathtext: "$\foo$" fails when the figure is drawn, "$5 or $6"
# silently loses its dollar signs.
MATH_LIKE = ["$\\foo$", "cost $5 or $6", "a\\$b", "x^$"]


def _drawn_as_typed(fig, texts: list[str]) -> None:
    """Every Text of ``fig`` showing one of ``texts`` draws exactly that string, not mathtext."""
    viz.png_bytes(fig)  # raised ValueError (mathtext ParseFatalException) before
    seen = set()
    for t in fig.findobj(lambda a: hasattr(a, "_preprocess_math") and a.get_text()):
        shown, is_math = t._preprocess_math(t.get_text())
        assert not is_math, t.get_text()
        seen.add(shown)
    assert set(texts) <= seen, set(texts) - seen


def test_user_text_in_figures_is_drawn_as_typed_not_as_mathtext(rng):
    tokens = MATH_LIKE
    w = softmax_maps(rng, 2, 2, 4, 4)
    _drawn_as_typed(viz.heatmap(w[0, 0], tokens, title="cost $5 or $6"), tokens)
    _drawn_as_typed(viz.grid(w, tokens, title="$\\foo$ grid $"), [*tokens, "$\\foo$ grid $"])
    static = rng.normal(size=(4, 3))
    fig = viz.shift(static, {"$\\alpha$ $": static + 1}, tokens, highlight="x^$", title="$a$")
    _drawn_as_typed(fig, [*tokens, "x^$′", "$\\alpha$ $", "$a$"])
    img, w5 = rng.random((4, 4)), softmax_maps(rng, 2, 2, 4, 4)
    _drawn_as_typed(viz.image_attention(img, w5[0, 0], (2, 2), title="$\\foo$"), ["$\\foo$"])
    _drawn_as_typed(viz.image_grid(img, w5, (2, 2), title="$5 $6"), ["$5 $6"])


def test_saved_files_are_replaced_atomically(rng, tmp_path):
    """A reader holding the old file (here: a hard link to it) never sees a half-written one:
    the new content goes to a temporary file that is renamed over the old name."""
    import os

    from selfattention.viz.figures import new_figure

    w = softmax_maps(rng, 1, 2, 3, 3)
    fig = new_figure(2, 2)
    fig.add_subplot().plot([0, 1], [1, 0])
    writers = {
        "fig.png": lambda p: viz.save(fig, p),
        "attention.json": lambda p: viz.dump_json(p, [{"name": "s", "weights": w}]),
        "report.html": lambda p: viz.report(p, [{"name": "s", "weights": w}]),
    }
    mask = os.umask(0o022)
    os.umask(mask)
    for name, write in writers.items():
        path = tmp_path / name
        path.write_bytes(b"old")
        os.link(path, tmp_path / f"{name}.reader")
        assert write(path) == path
        assert (tmp_path / f"{name}.reader").read_bytes() == b"old"  # untouched, not truncated
        assert path.read_bytes() != b"old" and path.stat().st_size > 100
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~mask)  # not mkstemp's 0o600
    # a write that fails leaves the old file and no temporary file behind
    path = tmp_path / "fig.png"
    before = path.read_bytes()
    broken = new_figure(2, 2)
    broken.add_subplot().set_title("$\\foo$")  # set directly: mathtext that cannot be drawn
    with pytest.raises(ValueError):
        viz.save(broken, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
