"""`selfattention viz`: plain subparsers, light to build, and one-line errors for bad input.

(`viz image` end to end, on a tiny trained checkpoint, is in tests/test_vision.py.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from selfattention import viz
from selfattention.cli import main


@pytest.fixture
def attention_json(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.random((2, 2, 3, 3))
    w /= w.sum(-1, keepdims=True)
    return viz.dump_json(tmp_path / "attention.json", [{"name": "s", "tokens": list("abc"),
                                                       "weights": w}])  # fmt: skip


def _one_line_error(capsys, argv: list[str], code: int, *needles: str) -> None:
    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_building_the_parser_imports_neither_matplotlib_nor_the_vision_app():
    """`selfattention --help` and `viz json` parsing stay light: the heavy imports happen in
    the run functions."""
    code = (
        "import sys\n"
        "from selfattention.cli import build_parser\n"
        "p = build_parser()\n"
        "p.parse_args(['viz', 'json', 'a.json'])\n"
        "p.parse_args(['viz', 'image', '--index', '1', '2', '--patch', '1,2'])\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'matplotlib'\n"
        "         or m.startswith('selfattention.apps.vision.')\n"
        "         and m != 'selfattention.apps.vision.config']\n"
        "assert not heavy, heavy\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_viz_image_options():
    from selfattention.cli import build_parser

    args = build_parser().parse_args(["viz", "image", "-i", "3", "4", "-p", "2,1", "-o", "x"])
    assert (args.viz_command, args.index, args.patch, str(args.out)) == (
        "image",
        [3, 4],
        "2,1",
        "x",
    )
    assert str(args.checkpoint) == "results/images" and args.threads == 1


def test_viz_without_what_prints_help_and_exits_2(capsys):
    assert main(["viz"]) == 2
    assert "json" in capsys.readouterr().err


def test_viz_json_out_at_a_file_is_one_line(attention_json, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line_error(capsys, ["viz", "json", str(attention_json), "--out", str(a_file)], 2,
                    f"--out {a_file} is a file")  # fmt: skip
    assert a_file.read_text() == "x"


def test_viz_json_bad_inputs_are_one_line(tmp_path, capsys):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)))
    _one_line_error(capsys, ["viz", "json", str(binary), "--out", str(tmp_path / "o")], 2,
                    str(binary), "not a text file")  # fmt: skip
    _one_line_error(capsys, ["viz", "json", str(tmp_path), "--out", str(tmp_path / "o")], 2,
                    str(tmp_path))  # fmt: skip
    _one_line_error(capsys, ["viz", "json", str(tmp_path / "nope.json")], 2, "no such file")
    assert not (tmp_path / "o").exists()  # nothing is created for bad input


def test_viz_image_missing_or_foreign_checkpoint(tmp_path, capsys):
    out = tmp_path / "o"
    _one_line_error(capsys, ["viz", "image", "-c", str(tmp_path / "none"), "--out", str(out)],
                    1, "none", "does not exist")  # fmt: skip
    _one_line_error(capsys, ["viz", "image", "-c", str(tmp_path), "--out", str(out)],
                    1, "config.json")  # fmt: skip
    assert not out.exists()  # the output folder is made only once the checkpoint is loaded
    _one_line_error(capsys, ["viz", "image", "--threads", "0", "-c", str(tmp_path)], 1,
                    "--threads must be at least 1, got 0")  # fmt: skip
