"""selfattention.apps.ladder and ``selfattention ladder``: the config's checks, and user text
(the words) printed as typed, never read as rich markup."""

from __future__ import annotations

import numpy as np
import pytest

from selfattention.apps.ladder import LadderConfig, climb, parse_vectors
from selfattention.cli import main


def test_parse_vectors_and_config():
    assert parse_vectors("1,0 0,1 1,1") == ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0))
    config = LadderConfig(words=("a", "b"), vectors=((1.0, 2.0), (3.0, 4.0)), rungs=(3, 1))
    assert config.x.shape == (2, 2) and config.x.dtype == np.float64
    assert [number for number, _ in climb(config)] == [3, 1]
    with pytest.raises(ValueError, match="--vectors must look like '1,0 0,1 1,1', got '1,x'"):
        parse_vectors("1,x")
    with pytest.raises(ValueError, match="--vectors needs 3 vectors of one size"):
        LadderConfig(words=("a", "b", "c"), vectors=((1.0,), (2.0, 3.0), (1.0,)))
    with pytest.raises(ValueError, match="--vectors must be finite"):
        LadderConfig(words=("a",), vectors=((float("nan"),),))
    with pytest.raises(ValueError, match=r"--rung must be in 1\.\.7, got \[0, 8\]"):
        LadderConfig(rungs=(0, 8))


@pytest.mark.parametrize("word", ["bank [on Monday]", "the [/] bank", "[bold]money[/bold]"])
def test_words_in_square_brackets_print_as_typed(word, capsys):
    """Bug: words were rich markup: "[/]" crashed with MarkupError, "[on Monday]" vanished."""
    assert main(["ladder", "--words", word, "river", "x", "--rung", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count(word) >= 4  # the X table's row, and row + column of S and W


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vectors", "1,0 [/]"], "--vectors must look like"),
        (["--vectors", "1,0 0,1"], "--vectors needs 3 vectors"),
        (["--rung", "9"], "--rung must be in 1..7, got [9]"),
        (["--digits", "-1"], "--digits must be in 0..12, got -1"),
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["ladder", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {err[len('error: ') :]}" and message in err and "\n" not in err
