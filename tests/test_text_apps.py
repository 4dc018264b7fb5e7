"""selfattention.apps.text: corpus readers, vocabularies, the encoder, and tiny training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selfattention.apps.text import corpus
from selfattention.apps.text.model import TextModel, TextModelConfig, case_class
from selfattention.apps.text.vocab import Vocab
from selfattention.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TAGGED = FIXTURES / "tagged_tiny.txt"
POLARITY = FIXTURES / "polarity_tiny.csv"
GLOVE = FIXTURES / "glove_tiny.txt"


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- readers ---------------------------------------------------------------------------------


def test_read_tagged():
    sents = corpus.read_tagged(TAGGED)
    assert len(sents) == 400
    assert sents[1] == [("The", "DT"), ("saw", "NN"), ("is", "VBZ"), ("big", "JJ"), (".", ".")]
    assert ("1/2", "CD") in sents[3]  # the tag follows the last slash


def test_read_polarity_handles_bom_quotes_and_line_breaks():
    texts, labels = corpus.read_polarity(POLARITY)
    assert len(texts) == 240 and labels.count(1) == 120 and labels.count(0) == 120
    assert texts[0] == 'the film is great and " funny " .'


def test_bad_corpus_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no tagged sentence"):
        corpus.read_tagged(tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text("The/DT cat/NN\nThe cat/NN\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: token 'The' is not of the form word/TAG"):
        corpus.read_tagged(tmp_path / "bad.txt")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="holds no labelled sentence"):
        corpus.read_polarity(tmp_path / "empty.csv")
    (tmp_path / "bad.csv").write_text('"1","good"\n"0","meh"\n')
    with pytest.raises(ValueError, match="row 2 has label '0', expected 1 or -1"):
        corpus.read_polarity(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        corpus.read_tagged(tmp_path / "none.txt")


def test_split_is_fixed_and_disjoint():
    parts = corpus.split_indices(25)
    assert parts["dev"] == [8, 18] and parts["test"] == [9, 19]
    assert sorted(parts["train"] + parts["dev"] + parts["test"]) == list(range(25))


def test_tokenize():
    assert corpus.tokenize("John's car didn't start, sadly.") == [
        "John", "'s", "car", "did", "n't", "start", ",", "sadly", ".",
    ]  # fmt: skip


# -- vocab and model ---------------------------------------------------------------------------


def test_vocab():
    v = Vocab.build(["b", "a", "b", "c"], min_count=1, extra=["z"])
    assert v.itos == ["<pad>", "<unk>", "b", "a", "c", "z"]
    assert v.encode(["a", "nope"]) == [3, 1]
    assert Vocab.from_json(v.to_json()).itos == v.itos
    tags = Vocab.build(["NN"], specials=(), unk=None)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tags.id("VB")


def test_case_classes():
    assert [case_class(w) for w in ["dog", "Dog", "USA", "1999", ","]] == [1, 2, 3, 4, 5]


def test_model_shapes_and_padding_do_not_leak():
    torch.manual_seed(0)
    cfg = TextModelConfig(
        task="tag", num_labels=5, vocab_size=30, trainable_words=20, glove_dim=4, num_chars=10,
        case_dim=3, dim=16, heads=2, layers=1, ff_dim=32, dropout=0.0,
    )  # fmt: skip
    model = TextModel(cfg).eval()
    words = torch.tensor([[5, 25, 7, 0, 0], [3, 4, 5, 6, 7]])  # id 25: GloVe-only word
    chars = torch.randint(1, 10, (2, 5, 4))
    case = torch.ones(2, 5, dtype=torch.long)
    logits, weights = model(words, chars, case, return_weights=True)
    assert logits.shape == (2, 5, 5) and len(weights) == 1 and weights[0].shape == (2, 2, 5, 5)
    assert torch.all(weights[0][0, :, :, 3:] == 0)  # padding is never attended to
    # Changing what sits in the padding does not change the real tokens' outputs.
    chars2 = chars.clone()
    chars2[0, 3:] = 7
    torch.testing.assert_close(model(words, chars2, case)[0, :3], logits[0, :3])
    with pytest.raises(ValueError, match="dim=16 must be divisible by heads=3"):
        TextModelConfig(task="tag", num_labels=2, vocab_size=5, trainable_words=5, dim=16, heads=3)
    with pytest.raises(ValueError, match="pass chars"):
        model(words)


def test_classifier_pooling_ignores_padding():
    torch.manual_seed(0)
    for pooling in ("mean", "max", "mean+max", "attention"):
        cfg = TextModelConfig(
            task="classify", num_labels=2, vocab_size=12, trainable_words=12, dim=8, heads=2,
            layers=1, ff_dim=16, dropout=0.0, pooling=pooling,
        )  # fmt: skip
        model = TextModel(cfg).eval()
        short = model(torch.tensor([[4, 5, 6]]))
        padded = model(torch.tensor([[4, 5, 6, 0, 0]]))
        torch.testing.assert_close(short, padded)


# -- training runs -----------------------------------------------------------------------------

POS_SMALL = ["--data", str(TAGGED), "--glove-path", str(GLOVE), "--dim", "32", "--heads", "2",
             "--layers", "1", "--batch-size", "16", "--lr", "5e-3", "--dropout", "0.1",
             "--no-progress", "--threads", "1"]  # fmt: skip


def test_pos_learns_context_and_beats_the_baseline(tmp_path, capsys):
    ckpt = tmp_path / "pos"
    assert main(["train", "pos", "-c", str(ckpt), "--epochs", "8", "--patience", "8",
                 *POS_SMALL]) == 0  # fmt: skip
    metrics = json.loads((ckpt / "metrics.json").read_text())
    losses = [r["train_loss"] for r in metrics["history"]]
    assert losses[-1] < 0.3 * losses[0]
    # "run", "book", "saw", ... are nouns after a determiner and verbs after a pronoun: the most
    # frequent tag per word gets one of the two wrong, attention over the context gets both.
    assert metrics["baseline_accuracy"] < 0.95
    assert metrics["test_accuracy"] > metrics["baseline_accuracy"] + 0.03
    assert (ckpt / "attention.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    with pytest.raises(SystemExit):  # evaluate takes the data options only, not model sizes
        main(["evaluate", "pos", "-c", str(ckpt), *POS_SMALL[:4]])
    assert "unrecognized arguments: --glove-path" in capsys.readouterr().err
    assert main(["evaluate", "pos", "-c", str(ckpt), *POS_SMALL[:2], "--threads", "1"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert main(["predict", "pos", "-c", str(ckpt), "I want to book a car ."]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("I/PRP want/VBP to/TO book/VB")
    # A truncated checkpoint gives a clear error that names the file.
    (weights,) = ckpt.glob("model-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["predict", "pos", "-c", str(ckpt), "a saw"]) == 1
    assert f"{weights.name} is truncated or corrupt" in capsys.readouterr().err


def test_pos_resume(tmp_path):
    ckpt = tmp_path / "pos"
    args = ["train", "pos", "-c", str(ckpt), "--data", str(TAGGED), "--limit", "120",
            "--no-glove", *POS_SMALL[4:]]  # fmt: skip
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    history = json.loads((ckpt / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_polarity_trains_and_predicts(tmp_path, capsys):
    ckpt = tmp_path / "pol"
    common_args = ["--data", str(POLARITY), "--glove-path", str(GLOVE)]
    assert (
        main(
            [
                "train",
                "polarity",
                "-c",
                str(ckpt),
                *common_args,
                "--dim",
                "16",
                "--heads",
                "2",
                "--epochs",
                "8",
                "--lr",
                "5e-3",
                "--dropout",
                "0.1",
                "--ensemble",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((ckpt / "metrics.json").read_text())
    assert metrics["split"] == {"train": 192, "dev": 24, "test": 24}
    losses = [r["train_loss"] for r in metrics["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["test_accuracy"] >= 0.9
    assert 0.0 <= metrics["baseline_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["predict", "polarity", "-c", str(ckpt), "the film is dull and boring ."]) == 0
    assert capsys.readouterr().out.startswith("negative\t")
    assert main(["predict", "polarity", "-c", str(ckpt)]) == 1
    assert "nothing to predict" in capsys.readouterr().err


def test_polarity_ensemble_round_trip(tmp_path, capsys):
    from selfattention.apps.text import common
    from selfattention.apps.text.model import Ensemble

    ckpt = tmp_path / "ens"
    args = ["--data", str(POLARITY), "--glove-path", str(GLOVE), "--dim", "16", "--heads", "2",
            "--epochs", "3", "--lr", "5e-3", "--dropout", "0.1", "--no-progress"]  # fmt: skip
    assert main(["train", "polarity", "-c", str(ckpt), "--ensemble", "3", *args]) == 0
    metrics = json.loads((ckpt / "metrics.json").read_text())
    assert metrics["ensemble"] == 3 and [m["seed"] for m in metrics["members"]] == [0, 1, 2]
    # Member 0 is the single model of the same seed, trained the same way.
    assert main(["train", "polarity", "-c", str(tmp_path / "one"), "--ensemble", "1", *args]) == 0
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert metrics["members"][0]["test_accuracy"] == single["test_accuracy"]
    assert metrics["members"][0]["dev_accuracy"] == single["dev_accuracy"]

    model, config = common.load_model(ckpt)
    assert isinstance(model, Ensemble) and len(model.members) == 3
    state = model.state_dict()
    assert "glove" in state and not any(k.endswith(".glove") for k in state)  # saved once
    assert all(m.glove is model.glove for m in model.members)
    # The members differ (other seeds), and the ensemble averages their probabilities.
    inputs, _ = common.batches([config["encoder"]("a dull film .".split(), 0)], 1, task="classify")[
        0
    ]
    inputs = {"words": inputs["words"]}
    probs = torch.stack([torch.softmax(m(**inputs), -1) for m in model.members])
    assert not torch.allclose(probs[0], probs[1])
    torch.testing.assert_close(torch.softmax(model(**inputs), -1), probs.mean(0))

    # evaluate on the saved ensemble reproduces the numbers measured at the end of training.
    assert main(["evaluate", "polarity", "-c", str(ckpt), *args[:4]]) == 0
    again = json.loads((ckpt / "test_metrics.json").read_text())
    assert again["test_accuracy"] == metrics["test_accuracy"]
    capsys.readouterr()
    assert main(["predict", "polarity", "-c", str(ckpt), "the film is dull and boring ."]) == 0
    label, prob, _ = capsys.readouterr().out.split("\t")
    assert label in ("negative", "positive") and 0.5 <= float(prob) <= 1.0
    with pytest.raises(ValueError, match="ensemble size"):
        Ensemble(model.config, 0)


def test_cli_reports_missing_inputs(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    assert main(["train", "pos", "-c", str(tmp_path / "x"), "--data", str(tmp_path / "empty.txt"),
                 "--no-glove", "--no-progress"]) == 1  # fmt: skip
    assert "holds no tagged sentence" in capsys.readouterr().err
    assert main(["evaluate", "polarity", "-c", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "name a task" in capsys.readouterr().err


@pytest.mark.pretrained
def test_pretrained_classifier_on_minilm():
    from selfattention.apps.text import polarity
    from selfattention.pretrained import load_bert

    bert = load_bert()
    model = polarity.PretrainedClassifier(bert).eval()
    part = [("a gorgeous , witty film".split(), 1), ("dull".split(), 0)]
    ((inputs, targets),) = polarity.bert_batches(bert, part, 8, None)
    assert targets.tolist() == [1, 0]
    logits, weights = model(**inputs, return_weights=True)
    assert logits.shape == (2, 2) and len(weights) == bert.config.num_layers
    # Padding must not change the short sentence's prediction.
    alone = model(**polarity.bert_batches(bert, part[1:], 8, None)[0][0])
    torch.testing.assert_close(alone, logits[1:], atol=1e-5, rtol=1e-5)


# -- the apps API (no argparse, no printing) and the CLI's failures (issue 9) --------------------


def test_apps_take_configs_and_data(tmp_path):
    from selfattention.apps.text import pos

    data = pos.load_data(TAGGED, limit=120)
    assert {k: len(v) for k, v in data.items()} == {"train": 96, "dev": 12, "test": 12}
    config = pos.PosConfig(dim=16, heads=2, layers=1, epochs=1, glove=False, batch_size=16)
    metrics = pos.train(config, data, tmp_path / "pos")
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_run"] == 1
    assert pos.evaluate(tmp_path / "pos", data)["test_accuracy"] == metrics["test_accuracy"]
    tagged = pos.predict(tmp_path / "pos", ["The saw is big .", "  "])
    assert [w for w, _ in tagged[0]] == ["The", "saw", "is", "big", "."] and tagged[1] == []
    with pytest.raises(ValueError, match="PosConfig: dim=16 must be divisible by heads=3"):
        pos.PosConfig(dim=16, heads=3)
    with pytest.raises(ValueError, match=r"PosConfig: dropout must be a number in \[0, 1\)"):
        pos.PosConfig(dropout=1.5)
    src = Path(pos.__file__).parent
    for path in [*src.glob("*.py"), *src.glob("polarity/*.py")]:
        text = path.read_text()
        assert "argparse" not in text and "print(" not in text, path.name


def test_polarity_config_defaults_follow_the_model():
    from selfattention.apps.text.polarity import PolarityConfig

    assert (PolarityConfig().epochs, PolarityConfig().ensemble) == (30, 10)
    tuned = PolarityConfig(pretrained=True)
    assert (tuned.epochs, tuned.patience, tuned.lr, tuned.ensemble) == (3, 2, 4e-5, 1)
    with pytest.raises(ValueError, match="ensembles are for the encoder trained here"):
        PolarityConfig(pretrained=True, ensemble=3)
    with pytest.raises(ValueError, match="pooling must be one of"):
        PolarityConfig(pooling="sum")


def test_ctrl_c_while_training_exits_130_naming_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    from selfattention.apps.text import common

    ckpt = tmp_path / "pos"
    calls = [0]
    real = common.tag_loss

    def loss(logits, targets):
        if torch.is_grad_enabled():  # training, not the dev evaluation
            calls[0] += 1
            if calls[0] == 9:  # in the second epoch (6 batches of 16 an epoch)
                raise KeyboardInterrupt
        return real(logits, targets)

    monkeypatch.setattr(common, "tag_loss", loss)
    args = ["train", "pos", "-c", str(ckpt), "--data", str(TAGGED), "--limit", "120",
            "--no-glove", *POS_SMALL[4:]]  # fmt: skip
    assert main([*args, "--epochs", "3"]) == 130
    err = capsys.readouterr().err
    assert err == (
        f"interrupted: last checkpoint: {ckpt / 'last'} (epoch 1; best weights in {ckpt}); "
        "continue with --resume\n"
    )
    monkeypatch.setattr(common, "tag_loss", real)
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    history = json.loads((ckpt / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_resume_with_other_model_options_names_them(tmp_path, capsys):
    ckpt = tmp_path / "pos"
    args = ["train", "pos", "-c", str(ckpt), "--data", str(TAGGED), "--limit", "120",
            "--no-glove", "--no-progress", "--threads", "1", "--layers", "1",
            "--batch-size", "16"]  # fmt: skip
    assert main([*args, "--dim", "16", "--heads", "2", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--dim", "32", "--heads", "4", "--epochs", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot resume from")
    assert "model.dim is 16 there, 32 here" in err and "model.heads is 2 there, 4 here" in err
    assert "Traceback" not in err


def test_cli_rejects_impossible_options(tmp_path, capsys):
    for bad in (["--threads", "0"], ["--epochs", "0"], ["--lr", "-1"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as info:
            main(["train", "pos", "-c", str(tmp_path), "--data", str(TAGGED), *bad])
        assert info.value.code == 2
        assert f"argument {bad[0]}: expected a" in capsys.readouterr().err
    assert main(["train", "pos", "-c", str(tmp_path), "--data", str(TAGGED), "--dim", "30",
                 "--heads", "4"]) == 1  # fmt: skip
    assert "dim=30 must be divisible by heads=4" in capsys.readouterr().err
