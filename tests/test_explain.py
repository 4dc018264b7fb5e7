"""``explain``: the default run (what ``make demo`` does), the library API in apps/explain, and
the failures users hit (markup in sentences, a bad ``--out``)."""

from __future__ import annotations

import contextlib
import html
import io
import json
import re

import numpy as np
import pytest

from selfattention.cli import main

pytestmark = pytest.mark.pretrained


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["explain", *argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    rc, text, err = _run("--out", str(out))
    return rc, text + err, out


@pytest.fixture(scope="module")
def model():
    from selfattention.pretrained import load_bert

    return load_bert()


@pytest.fixture(scope="module")
def glove():
    from selfattention.pretrained import load_glove

    return load_glove()


# ---------------------------------------------------------------- the default run (make demo)


def test_default_run_prints_the_three_views(default_run):
    from selfattention.apps.explain import DEFAULT_SENTENCES

    rc, text, _ = default_run
    assert rc == 0, text
    for sentence in DEFAULT_SENTENCES:
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
    from selfattention.apps.explain import DEFAULT_SENTENCES, encode_words
    from selfattention.pretrained import words

    _, _, out = default_run
    doc = json.loads((out / "attention.json").read_text())
    seqs = {s["name"]: s for s in doc["sequences"]}
    assert set(seqs) == {
        "sentence 1: model",
        "sentence 2: model",
        "sentence 1: GloVe softmax(XXᵀ)",
        "sentence 2: GloVe softmax(XXᵀ)",
    }
    encoded = encode_words(model, [words(s) for s in DEFAULT_SENTENCES])
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
    _, text, out = default_run
    for name in ("grid_1.png", "grid_2.png", "shift.png", "neuron.png", "value_weighted.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    html_text = (out / "report.html").read_text(encoding="utf-8")
    assert "Cosine similarity of &#x27;bank&#x27;" in html_text
    assert "data:image/png;base64," in html_text  # the geometric plot, inline
    # Self-contained: no script, stylesheet or image is fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html_text)
    names = [
        "attention.json",
        "grid_1.png",
        "grid_2.png",
        "shift.png",
        "neuron.png",
        "value_weighted.png",
        "flow.png",
        "report.html",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary file left
    written = " ".join(text.split("Written: ")[1].split()).split(", ")  # write_outputs' order
    assert written == [str(out / name) for name in names]


# ---------------------------------------------------------------- user text is text


def test_brackets_and_markup_in_sentences_print_as_typed(tmp_path):
    """Issue 9: "the [/] bank" ended in a raw rich MarkupError; "bank [on Monday]" lost its
    bracketed words in the header; the report must escape sentences too."""
    first = "I paid $5 at the bank [on Monday] <b>early</b>."
    second = "the [/] bank [bold]red[/bold]"
    rc, text, err = _run(first, second, "--out", str(tmp_path))
    assert rc == 0, err
    assert f"1. {first}" in text and f"2. {second}" in text
    # the GloVe ladder is on sentence 1: its bracket tokens label rows and columns
    ladder = text.split("Scores X Xᵀ")[1].split("Weights W")[0]
    assert re.search(r"^\[\s+\d", ladder, flags=re.M) and re.search(r"^\]\s+\d", ladder, re.M)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.escape(first) in page and html.escape(second) in page
    assert "<b>early</b>" not in page


# ---------------------------------------------------------------- --out is checked first


@pytest.mark.parametrize("where", ["an existing file", "a path under a file"])
def test_bad_out_fails_in_one_line_before_any_compute(where, tmp_path):
    """Issue 9: --out pointing at a file gave a raw traceback after all the compute (the tables
    were printed first). As root, permissions cannot make a folder unwritable; a path under a
    regular file cannot be created by anyone."""
    file = tmp_path / "file.txt"
    file.write_text("keep me")
    out = file if where == "an existing file" else file / "sub"
    rc, text, err = _run("--out", str(out))
    assert rc == 2 and text == ""  # failed before computing (and printing) anything
    assert err.count("\n") == 1 and err.startswith("error: --out: "), err
    assert f"{file} is a file, not a folder" in err
    assert file.read_text() == "keep me"


def test_prepare_out_creates_the_folder_and_names_the_problem(tmp_path):
    from selfattention.apps.explain import prepare_out

    assert prepare_out(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"cannot create the folder .*f/x/y: .*f is a file"):
        prepare_out(tmp_path / "f" / "x" / "y")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "rc", "message"),
    [
        (["The bank.", "  "], 2, "sentence 2 is empty"),
        (["The cat sat.", "A dog ran."], 2, "share no word; choose the word to follow with --word"),
        (["The cat sat.", "A dog ran.", "--word", "bank"], 2, "--word 'bank' is in none of the"),
        (["One bank.", "--word", "two words"], 2, "--word must be a single word"),
        (["One bank.", "--top", "0"], 2, "--top must be an integer of at least 1, got 0"),
        ([" ".join(["bank"] * 600)], 1, "sentence 1 has 602 tokens"),
        (["The bank.", "--model", "/nonexistent/model"], 1, "/nonexistent/model"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, rc, message, tmp_path):
    out = tmp_path / "out"
    got, text, err = _run(*argv, "--out", str(out))
    assert got == rc, err
    assert text == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists() or not list(out.iterdir())  # nothing half-written


def test_corrupt_model_folder_names_the_file(tmp_path):
    from selfattention.pretrained import default_model_path

    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).symlink_to(default_model_path() / name)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    rc, _, err = _run("The bank.", "--model", str(broken), "--out", str(tmp_path / "out"))
    assert rc == 1 and "model.safetensors: not a readable safetensors file" in err


def test_config_errors_name_the_argument_not_a_flag():
    from selfattention.apps.explain import ExplainConfig

    cases = [
        ({"sentences": ("The cat sat.", "A dog ran."), "word": "bank"}, "word 'bank' is in none"),
        ({"sentences": ("The cat sat.", "A dog ran.")}, "share no word"),
        ({"sentences": ("One bank.",), "word": "two words"}, "word must be a single word"),
        ({"sentences": ()}, "sentences is empty"),
        ({"top": 0}, "top must be an integer of at least 1, got 0"),
        ({"top": True}, "top must be an integer"),
        ({"scale": "2"}, r"scale must be one of \['1', 'sqrt'\], got '2'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as exc:
            ExplainConfig(**kwargs)
        assert "--" not in str(exc.value)  # the library knows no command-line flags
    with pytest.raises(TypeError, match="sentences must be a list of strings"):
        ExplainConfig(sentences="one sentence")


# ---------------------------------------------------------------- the library API


def test_explain_returns_data_and_prints_nothing(model, glove, capsys):
    from selfattention.apps.explain import ExplainConfig, explain
    from selfattention.apps.explain.figures import grid_figures

    texts = ("The zqxwvbank flibbertqq sat by the bank.", "Money in the bank costs $5 or $6.")
    config = ExplainConfig(sentences=texts, top=3, scale="sqrt")
    result = explain(config, model=model, glove=glove)
    assert capsys.readouterr() == ("", "")
    assert result.word == "bank" and result.pairs == ["1 vs 2"]
    assert result.unknown_words(0) == ["zqxwvbank", "flibbertqq"] and not result.glove_lacks_word
    assert result.sentences[0].x.shape == (len(result.sentences[0].words) - 2, 50)
    lad = result.ladder
    assert lad.sentence == 0 and lad.scale == "sqrt" and "zqxwvbank" not in lad.labels
    np.testing.assert_allclose(lad.weights.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(lad.scores, lad.x @ lad.x.T)
    assert [len(layer) for layer in result.top[0]] == [12] * 6
    assert all(len(cell) == 3 for layer in result.top[1] for cell in layer)
    assert result.special_share[0].shape == (6,)
    assert [name for name, _ in result.similarity][:1] == ["GloVe (static)"]
    # the grid titles carry the sentences, "$5 or $6" drawn as typed
    stem, fig = grid_figures(result)[1]
    assert stem == "grid_2"
    title = fig._suptitle
    assert title._preprocess_math(title.get_text()) == (f"sentence 2: {texts[1]}", False)


def test_unknown_glove_words_are_reported(model, glove):
    from rich.console import Console

    from selfattention.apps.explain import ExplainConfig, explain
    from selfattention.cli._explain_tables import print_result

    config = ExplainConfig(sentences=("The zqxwvbank sat by the bank.", "Money in the bank."))
    console = Console(file=io.StringIO(), width=200, markup=False)
    print_result(console, explain(config, model=model, glove=glove))
    text = console.file.getvalue()
    assert "note: GloVe does not know 'zqxwvbank' in sentence 1: dropped" in text


def test_default_word_is_the_longest_shared_word():
    from selfattention.apps.explain.compare import choose_word

    assert choose_word([["the", "river", "bank"], ["the", "bank", "loan"]]) == "bank"
    assert choose_word([["a", "cat", "and", "dog"], ["dog", "and", "cat"]]) == "cat"


def test_parameter_free_attention_is_the_reference_ladder():
    from selfattention.apps.explain.compare import parameter_free

    x = np.random.default_rng(0).normal(size=(5, 8))
    y, w = parameter_free(x, "1")
    s = x @ x.T
    expected = np.exp(s - s.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(w, expected, atol=1e-12)
    np.testing.assert_allclose(y, expected @ x, atol=1e-12)
    _, w_scaled = parameter_free(x, "sqrt")
    s = s / np.sqrt(8)
    expected = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(w_scaled, expected / expected.sum(1, keepdims=True), atol=1e-12)
    with pytest.raises(ValueError, match="scale must be one of"):
        parameter_free(x, "2")


# ---------------------------------------------------------------- the "why" views


def test_queries_and_keys_reproduce_the_models_weights(model):
    """The neuron view's inputs are the model's own: softmax over j of Σ_d scale·q_i[d]·k_j[d]
    is the weight the encoder returned, and the value norms are ‖v_j W_o^h‖ of its modules."""
    from selfattention import viz
    from selfattention.apps.explain import encode_words

    [enc] = encode_words(model, [["the", "bank", "of", "the", "river"]])
    n_layers, n_heads, n, d = enc.queries.shape
    assert enc.keys.shape == (n_layers, n_heads, n, d) and enc.value_norms.shape[:2] == (6, 12)
    for layer in (0, 5):
        for i in (1, 2):
            scores = np.stack(
                [
                    viz.neuron_products(enc.queries[layer], enc.keys[layer], i, j, scale=enc.scale)
                    for j in range(n)
                ]
            ).sum(-1)  # (j, H)
            e = np.exp(scores - scores.max(0))
            np.testing.assert_allclose((e / e.sum(0)).T, enc.weights[layer, :, i], atol=1e-5)
    assert np.all(enc.value_norms > 0)


def test_long_sentence_pages_the_grid_and_filters_apply(model, glove, tmp_path):
    from selfattention.apps.explain import ExplainConfig, explain, write_outputs

    long = " ".join(["the bank of the river was wide and calm"] * 8) + "."  # 73 tokens
    config = ExplainConfig(sentences=(long, "the bank."), layers="0,5", heads="0-3")
    result = explain(config, model=model, glove=glove)
    written = [p.name for p in write_outputs(result, tmp_path)]
    assert "grid_1_layer_0.png" in written and "grid_1_layer_5.png" in written
    assert "grid_1_layer_1.png" not in written and "grid_2.png" in written
    assert "flow.png" not in written  # 73 tokens > 64: flow refused, rollout still in the report
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    seq = data["sequences"][0]
    assert seq["layers"] == [0, 5] and seq["heads"] == [0, 1, 2, 3]
    assert seq["neuron"] is not None and seq["vnorm"] is not None and seq["flow"] is None
    assert "up to 24 tokens" in seq["flowNote"]


def test_bad_layers_flag_is_a_one_line_usage_error(tmp_path):
    rc, _, err = _run("The bank.", "--layers", "0-x", "--out", str(tmp_path / "o"))
    assert rc == 2 and err.startswith("error: --layers") and err.count("\n") == 1, err
