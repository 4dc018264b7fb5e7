"""selfattention.apps.bench and ``selfattention bench``: the FLOP count, the targets, the config's
checks, and the command's exit codes (impossible options, a run where every cell failed)."""

from __future__ import annotations

import json

import pytest

from selfattention.apps import bench
from selfattention.apps.bench import BenchConfig, interleaved
from selfattention.cli import main


def test_flop_count_and_targets():
    """The benchmark's FLOP count (keys actually attended) and its target bookkeeping."""
    assert bench.keys_attended(5, 1) == 2 + 3 + 3 + 3 + 2
    assert bench.keys_attended(4, None) == 16
    assert bench.flops("window-train", 5, 2, 3) == 3.5 * 4 * 2 * 3 * 25  # ±128 covers all 5
    rows = [
        dict(suite="window", method="window", n=16384, seconds=1.0),
        dict(suite="window", method="sdpa-band", n=16384, seconds=10.0),
        dict(suite="window", method="flex", n=16384, seconds=0.5),
    ]
    found = {t["target"]: t for t in bench.targets(rows)}
    assert found["window n=16384 fwd: / SDPA band ≤ 0.05"]["met"] is False  # 0.1 > 0.05
    assert found["… / compiled FlexAttention ≤ 1.0"]["measured"] == 2.0
    table = bench.tables([{**r, "flops": 1e9, "peak_mb": 1.0} for r in rows])
    assert "| 16384 | window | 1 | 0.1 |" in table


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(threads=0), ["--threads", "got 0", ">= 1"]),
        (dict(sizes=(-5,)), ["--sizes", "[-5]", "n >= 1"]),
        (dict(sizes=(8, 0)), ["--sizes", "[8, 0]"]),
        (dict(repeat=0), ["--repeat", "got 0"]),
        (dict(heads=-1), ["--heads", "got -1"]),
        (dict(head_dim=0), ["--head-dim", "got 0"]),
        (dict(timeout=0.0), ["--timeout", "> 0"]),
        (dict(suites=()), ["--suites", "dense"]),
        (dict(suites=("dense", "sparse")), ["--suites", "got sparse"]),
        (dict(worlds=(2, 0)), ["--worlds", "[2, 0]", ">= 1"]),
        (dict(worlds=()), ["--worlds", "got []"]),
    ],
)
def test_config_names_the_impossible_option(kwargs, words):
    with pytest.raises(ValueError) as info:
        BenchConfig(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_plan_respects_the_limits():
    plan = BenchConfig(suites=("dense",), sizes=(16, 10_000)).plan()
    assert ("dense", "math", 16) in plan and ("dense", "math", 10_000) not in plan  # > 8192
    assert ("dense", "sdpa", 10_000) in plan
    quick = BenchConfig(quick=True, suites=("relu-sum",)).plan()
    assert quick[0] == ("relu-sum", "chunked-relu", 2048)


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--sizes", "-5"], ["--repeat", "0"]])
def test_cli_refuses_impossible_options_before_running(argv, tmp_path, capsys, monkeypatch):
    """Bug: `bench --threads 0` / `--sizes -5` ran every cell, each failed, and exited 0."""
    monkeypatch.setattr(bench, "run_cell", lambda spec, timeout: pytest.fail("ran a cell"))
    assert main(["bench", *argv, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and argv[0] in err and len(err.splitlines()) == 1


def test_cli_out_at_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_cell", lambda spec, timeout: pytest.fail("ran a cell"))
    (tmp_path / "f").write_text("x")
    assert main(["bench", "--suites", "dense", "--out", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_cli_exits_non_zero_when_every_cell_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_cell", lambda spec, timeout: {"error": "RuntimeError: boom"})
    argv = ["bench", "--suites", "dense", "--sizes", "8", "--out", str(tmp_path)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "every attention cell failed (first: RuntimeError: boom)" in captured.err
    assert json.loads((tmp_path / "results.json").read_text())["results"][0]["error"]


def test_cli_end_to_end_on_a_tiny_run(tmp_path, capsys):
    """Real cells in forked processes: n = 16, one head of 4, one thread."""
    argv = ["bench", "--suites", "dense", "--sizes", "16", "--threads", "1", "--repeat", "1",
            "--heads", "1", "--head-dim", "4", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dense          n=16      sdpa" in out and "wrote" in out
    data = json.loads((tmp_path / "results.json").read_text())
    sdpa = next(r for r in data["results"] if r["method"] == "sdpa")
    assert sdpa["seconds"] > 0 and sdpa["max_abs_err"] < 1e-5
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "results.md", "time_vs_n.png"}


def test_cli_unknown_suite_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_cell", lambda spec, timeout: pytest.fail("ran a cell"))
    assert main(["bench", "--suites", "window-ceilin", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "got window-ceilin" in err and len(err.splitlines()) == 1


def test_interleaved_suites_plan_one_cell_per_size():
    plan = BenchConfig(suites=("window-ceiling", "gqa"), sizes=(64,)).plan()
    assert plan == [("window-ceiling", "interleaved", 64), ("gqa", "interleaved", 64)]
    assert BenchConfig(quick=True, suites=("decode",)).plan() == [("decode", "interleaved", 1024)]


def test_packed_lengths_cover_n():
    for n in (1, 7, 64, 8192):
        lengths = interleaved.packed_lengths(n)
        assert sum(lengths) == n and min(lengths) >= 1


def test_ceiling_targets():
    """The issue's window targets come from the interleaved suite's rows at n = 16384."""
    rows = [
        dict(suite="window-ceiling", method="matmul", n=16384, seconds=1.0, flops=100e9),
        dict(suite="window-ceiling", method="window", n=16384, seconds=1.0, flops=70e9),
        dict(suite="window-ceiling", method="window fwd+bwd", n=16384, seconds=3.5, flops=1.0),
        dict(suite="window-ceiling", method="flex", n=16384, seconds=2.0, flops=1.0),
        dict(suite="window-ceiling", method="local-attention", n=16384, seconds=4.0, flops=1.0),
    ]
    found = {t["target"]: t for t in bench.targets(rows)}
    pct = found["window n=16384 fwd: % of the matmul rate ≥ 65"]
    assert pct["measured"] == pytest.approx(70.0) and pct["met"] is True
    assert found["window n=16384 fwd: / flex ≤ 0.8 (interleaved)"]["met"] is True  # 0.5
    assert found["… / local-attention ≤ 0.2 (interleaved)"]["met"] is False  # 0.25
    assert found["window n=16384: fwd+bwd / fwd ≤ 3"]["measured"] == 3.5


def _no_flex(q, k, v):
    raise ImportError("no flex here")  # compiling it costs ~20 s: not in a unit test


@pytest.mark.parametrize("suite", list(interleaved.INTERLEAVED))
def test_interleaved_suite_at_tiny_size(suite, monkeypatch):
    """Every interleaved suite runs end to end (a forked cell) at a tiny size: one row per
    method, each timed (or an error row for a missing peer), results equal to the reference."""
    monkeypatch.setattr(interleaved, "_flex", _no_flex)
    config = BenchConfig(suites=(suite,), sizes=(48,), threads=1, repeat=1, heads=4, head_dim=8)
    result = bench.run(config)
    rows = [r for r in result.results if r["suite"] == suite]
    assert len(rows) >= 2, rows
    timed = [r for r in rows if "seconds" in r]
    assert all(r["seconds"] > 0 and r["n"] == 48 for r in timed)
    errors = {r["method"]: r["error"] for r in rows if "error" in r}
    if suite == "window-ceiling":
        assert errors == {"flex": "ImportError: no flex here"}
        methods = {r["method"] for r in timed}
        assert {"matmul", "window", "window fwd+bwd"} <= methods
        assert next(r for r in timed if r["method"] == "window")["max_abs_err"] < 1e-5
    else:
        assert not errors
        assert timed[0]["max_abs_err"] < 1e-5
    assert f"| 48 | {timed[0]['method']} |" in bench.tables(result.results)


def test_ring_suite_on_loopback(tmp_path, capsys):
    """`bench --suites ring` spawns gloo groups of 1 and 2 processes on 127.0.0.1: bytes are
    counted (0 on one process, > 0 on two), the window's bytes do not grow with n and stay under
    (left + right)·2·d·4, and the side-by-side against sa.attention is timed."""
    argv = ["bench", "--suites", "ring", "--sizes", "1024", "2048", "--worlds", "1", "2",
            "--repeat", "1", "--head-dim", "16", "--timeout", "60",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert not [r for r in rows if "error" in r], rows
    sweep = {(r["world"], r["kind"], r["n"]): r for r in rows if "kind" in r}
    assert len(sweep) == 2 * 3 * 2 + 2  # P, kind, n, and one ring step's transfer alone at P = 2
    assert sweep[(2, "one ring step", 2048)]["sent_bytes"] == 1024 * 2 * 16 * 4
    assert all(r["sent_bytes"] == 0 for (p, _, _), r in sweep.items() if p == 1)
    for n in (1024, 2048):  # the ring sends the other rank's k and v: n/2 · 2 · d · 4 bytes
        assert sweep[(2, "full", n)]["sent_bytes"] == n // 2 * 2 * 16 * 4
    window = {sweep[(2, "window", n)]["sent_bytes"] for n in (1024, 2048)}
    assert len(window) == 1 and 0 < window.pop() <= 512 * 2 * 16 * 4
    side = [r for r in rows if r["method"].startswith("side-by-side")]
    assert len(side) == 2 and all(r["seconds"] > 0 and r["n"] == 2048 for r in side)
    assert "| 2 | 2048 | window |" in out and "ring window: bytes per rank" in out


def test_ring_suite_ends_when_ranks_do_not_report():
    """A group that does not answer within the timeout is killed: error rows, never a hang."""
    from selfattention.apps.bench import ring

    rows = ring._sweep(2, [64], 8, 1, timeout=0.5)
    assert rows == [dict(n=64, method="P=2", world=2, error=rows[0]["error"])]
    assert "killed" in rows[0]["error"] or "Error" in rows[0]["error"]


def test_ring_plan_and_targets():
    plan = BenchConfig(suites=("ring",), sizes=(4096, 16384), worlds=(1, 2)).plan()
    assert plan[-1] == ("ring", "side-by-side", 16384) and ("ring", "P=2", 4096) in plan
    assert BenchConfig(quick=True, suites=("ring",)).plan()[-1] == ("ring", "side-by-side", 2048)
    rows = [
        dict(suite="ring", method="side-by-side ring 2 procs x 1 thread", n=16384, seconds=1.2),
        dict(suite="ring", method="side-by-side sa.attention 2 threads", n=16384, seconds=1.0),
        dict(suite="ring", method="window P=4", kind="window", n=4096, sent_bytes=262144,
             head_dim=64, world=4, seconds=0.1, peak_mb=1.0),
    ]  # fmt: skip
    found = {t["target"]: t for t in bench.targets(rows)}
    side = found["ring full n=16384: 2 procs x 1 thread / sa.attention 2 threads ≤ 1.3"]
    assert side["measured"] == pytest.approx(1.2) and side["met"] is True
    assert found["ring window: bytes per rank / ((left + right)·2·d·4) ≤ 1"]["measured"] == 1.0


@pytest.mark.parametrize("argv", [["--worlds", "0"], ["--worlds", "2", "-1"]])
def test_cli_ring_bad_option_is_one_line(argv, tmp_path, capsys):
    assert main(["bench", "--suites", "ring", *argv, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--worlds" in err and len(err.splitlines()) == 1
