"""Distributed training (apps.training.ddp + fit under a process group) on loopback.

Every multi-process test spawns its ranks with torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT=a free port), waits at most DEADLINE seconds
and then kills what is left, so that a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import selfattention as sa
from selfattention.apps import training
from selfattention.apps.training import ddp

DEADLINE = 60.0  # seconds any group of spawned ranks may take
REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# spawning ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, out: str, fn, args) -> None:
    """One rank: torchrun's environment, one thread, stdout/stderr to files, the result (or
    the error) to ``out/rank{r}.pt``; the exit code says which."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    folder = Path(out)
    sys.stdout = open(folder / f"rank{rank}.out", "w")
    sys.stderr = open(folder / f"rank{rank}.err", "w")
    try:
        value = fn(rank, world, *args)
    except BaseException as exc:
        err = {"type": type(exc).__name__, "message": str(exc), "tb": traceback.format_exc()}
        torch.save({"ok": False, "error": err}, folder / f"rank{rank}.pt")
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(1)  # skip interpreter teardown: the test waits for this process
    torch.save({"ok": True, "value": value}, folder / f"rank{rank}.pt")
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def _spawn(world: int, fn, *args, out: Path, wait_for=None, deadline: float = DEADLINE):
    """Run ``fn(rank, world, *args)`` on ``world`` ranks -> (results by rank, seconds).

    Waits for the ranks in ``wait_for`` (default: all), at most ``deadline`` seconds, then
    kills every rank still running. A rank that reported nothing is missing from the result.
    """
    out.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_entry, args=(r, world, port, str(out), fn, args), daemon=True)
        for r in range(world)
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    waited = [procs[r] for r in (range(world) if wait_for is None else wait_for)]
    for p in waited:
        p.join(max(0.1, deadline - (time.monotonic() - t0)))
    seconds = time.monotonic() - t0
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    results = {}
    for r in range(world):
        path = out / f"rank{r}.pt"
        if path.is_file():
            results[r] = torch.load(path, weights_only=False)
            results[r]["exitcode"] = procs[r].exitcode
            results[r]["stdout"] = (out / f"rank{r}.out").read_text()
            results[r]["stderr"] = (out / f"rank{r}.err").read_text()
    return results, seconds


def _ok(results: dict, world: int) -> list:
    for r in range(world):
        assert r in results, f"rank {r} reported nothing (killed at the deadline?)"
        assert results[r]["ok"], f"rank {r}: {results[r]['error']['tb']}"
    return [results[r]["value"] for r in range(world)]


# ---------------------------------------------------------------------------------------------
# a small float64 problem for fit


class _Tiny(nn.Module):
    """Self-attention over 5 tokens, mean-pooled, 3 classes: (b, 5, 8) -> (b, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = sa.nn.SelfAttention(8, heads=2, dtype=torch.float64)
        self.head = nn.Linear(8, 3, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x).mean(1))


def _data(n: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, 8, generator=g, dtype=torch.float64)
    return x, (x[:, 0, 0] > 0).long() + (x[:, 1, 0] > 0).long()


def _loss(out, t):
    return nn.functional.cross_entropy(out, t)


def _metric(out, t):
    return int((out.argmax(-1) == t).sum()), t.numel()


def _fit_tiny(checkpoint: Path, parts: int, epochs: int = 2, loss_fn=_loss, **kw):
    """fit on 8 training examples cut into ``parts`` equal batches (one epoch = those batches
    in order), 7 dev examples in 3 uneven batches."""
    torch.manual_seed(0)
    model = _Tiny()
    x, y = _data(15)
    step = 8 // parts
    train = [(x[i : i + step], y[i : i + step]) for i in range(0, 8, step)]
    dev = [(x[8:11], y[8:11]), (x[11:13], y[11:13]), (x[13:], y[13:])]
    config = training.FitConfig(checkpoint, epochs=epochs, lr=0.05, **kw)
    history = training.fit(model, train, dev, config, loss_fn=loss_fn, metric_fn=_metric)
    return model, history


def _ddp_fit(rank: int, world: int, checkpoint: str):
    with training.process_group(timeout=30) as device:
        assert device == torch.device("cpu") and ddp.world_size() == world
        model, history = _fit_tiny(Path(checkpoint), parts=world)
        main = training.is_main_process()
    return {"state": model.state_dict(), "rows": history.rows, "main": main}


# ---------------------------------------------------------------------------------------------
# without processes


def test_shard_is_disjoint_and_padded_like_distributed_sampler():
    items = list(range(7))
    shares = [ddp.shard(items, r, 3, pad=False) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for share in shares for x in share) == items
    padded = [ddp.shard(items, r, 3, pad=True) for r in range(3)]
    assert padded == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]  # every rank takes ceil(7/3) steps
    assert ddp.shard(range(2), 2, 4, pad=True) == [0]  # fewer items than ranks: wrap around
    assert ddp.shard([], 1, 2, pad=True) == []


def test_a_single_process_run_is_unchanged(monkeypatch, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not ddp.launched()
    with training.process_group() as device:
        assert device is None and not torch.distributed.is_initialized()
        assert isinstance(ddp.current(), ddp.Local)
        assert ddp.rank() == 0 and ddp.world_size() == 1 and training.is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not ddp.launched()  # torchrun --nproc-per-node 1: no group needed
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        ddp.launched()
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0, got 0"):
        with training.process_group(timeout=0):
            pass


def test_communication_failures_are_recognised():
    gone = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:1")
    assert ddp.is_comm_error(gone)
    assert ddp.is_comm_error(RuntimeError("Timed out waiting 4000ms for recv operation"))
    assert not ddp.is_comm_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not ddp.is_comm_error(ValueError("Connection closed"))


def test_the_cli_reports_a_failed_peer_in_one_line(monkeypatch, capsys):
    from selfattention.cli import main, train

    def fail(args):
        raise ddp.DistributedError("rank 0 of 2: training failed: another training process ...")

    monkeypatch.setattr(train.images, "train", fail)
    assert main(["train", "images", "--dataset", "digits"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: rank 0 of 2: training failed: another training process ..."]


# ---------------------------------------------------------------------------------------------
# several processes


@pytest.mark.slow
def test_two_processes_with_half_batches_match_one_process(tmp_path):
    """2 ranks x batch 4 = 1 process x batch 8, two AdamW steps with clipping (float64)."""
    single, single_history = _fit_tiny(tmp_path / "single", parts=1)
    results, _ = _spawn(2, _ddp_fit, str(tmp_path / "ddp"), out=tmp_path / "run")
    values = _ok(results, 2)
    # the best weights (every rank holds rank 0's) and the last state rank 0 saved
    last, _ = training.load_checkpoint(tmp_path / "ddp" / "last")
    single_last, _ = training.load_checkpoint(tmp_path / "single" / "last")
    torch.manual_seed(0)
    start = _Tiny().state_dict()
    for name, want in single.state_dict().items():
        for value in values:
            torch.testing.assert_close(value["state"][name], want, rtol=0, atol=1e-6)
        torch.testing.assert_close(last[name], single_last[name], rtol=0, atol=1e-6)
        assert not torch.equal(single_last[name], start[name])  # training moved it
    # the metrics reduced over the ranks are the single process's
    for row, want in zip(values[0]["rows"], single_history.rows, strict=True):
        for key in ("train_loss", "train_accuracy", "dev_loss", "dev_accuracy"):
            assert row[key] == pytest.approx(want[key], abs=1e-9), key
    assert [v["main"] for v in values] == [True, False]


def _dropout_draws(rank: int, world: int):
    with training.process_group(timeout=30):
        training.set_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
        net = ddp.current().wrap(model)
        return net(torch.ones(3, 4)).detach()


@pytest.mark.slow
def test_each_rank_draws_its_own_dropout_masks(tmp_path):
    """Seeded alike (the same model on every rank), the ranks then drop different units, and
    a second run with the same seed draws the same masks again."""
    runs = []
    for attempt in range(2):
        results, _ = _spawn(2, _dropout_draws, out=tmp_path / f"run{attempt}")
        runs.append(_ok(results, 2))
    zero = [[(out == 0) for out in run] for run in runs]
    assert not torch.equal(zero[0][0], zero[0][1])  # rank 0 and rank 1 differ
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)  # reproducible


def _cli(rank: int, world: int, argv: list[str]):
    from selfattention.cli import main

    return main(argv)


@pytest.mark.slow
def test_train_images_on_two_ranks_writes_one_checkpoint_that_evaluate_reads(tmp_path, capsys):
    from selfattention.cli import main

    ckpt = tmp_path / "ck"
    argv = ["train", "images", "--dataset", "digits", "--limit", "200", "--dim", "16",
            "--depth", "1", "--heads", "2", "--batch-size", "32", "--no-baseline",
            "--checkpoint", str(ckpt)]  # fmt: skip
    results, _ = _spawn(2, _cli, [*argv, "--epochs", "1"], out=tmp_path / "a")
    assert _ok(results, 2) == [0, 0]
    assert json.loads(results[0]["stdout"].split("epoch 1:")[1].split("\n", 1)[1])["vit"]
    assert results[1]["stdout"] == ""  # rank 1 prints nothing
    names = sorted(p.name for p in ckpt.iterdir())  # one checkpoint, written once
    assert names[:3] == ["config.json", "last", "metrics.json"] and len(names) == 4
    assert names[3].startswith("model-") and names[3].endswith(".safetensors")
    assert training.read_checkpoint_extra(ckpt / "last")["epoch"] == 1
    # --resume: every rank reads the same checkpoint and goes on to epoch 2
    results, _ = _spawn(2, _cli, [*argv, "--epochs", "2", "--resume"], out=tmp_path / "b")
    assert _ok(results, 2) == [0, 0]
    assert "epoch 2:" in results[0]["stdout"] and "epoch 1:" not in results[0]["stdout"]
    assert training.read_checkpoint_extra(ckpt / "last")["epoch"] == 2
    capsys.readouterr()
    assert main(["evaluate", "images", "--checkpoint", str(ckpt), "--limit", "200"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["test_accuracy"] <= 1


def _fit_fault(rank: int, world: int, checkpoint: str, how: str):
    calls = []

    def loss(out, t):
        calls.append(1)
        if rank == 1 and len(calls) == 3:  # in the second epoch
            if how == "raise":
                raise ValueError("rank 1 broke")
            time.sleep(3 * DEADLINE)  # alive but silent: the others must time out
        return _loss(out, t)

    with training.process_group(timeout=5 if how == "hang" else 20):
        _fit_tiny(Path(checkpoint), parts=world, epochs=5, loss_fn=loss)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "hang"])
def test_a_failing_rank_makes_the_others_stop_with_an_error(tmp_path, how):
    results, seconds = _spawn(
        2, _fit_fault, str(tmp_path / "ck"), how, out=tmp_path / "run", wait_for=[0]
    )
    assert seconds < DEADLINE
    assert results[0]["exitcode"] == 1 and not results[0]["ok"]
    err = results[0]["error"]
    assert err["type"] == "DistributedError", err["tb"]
    assert err["message"].startswith("rank 0 of 2: ")
    assert ("5 s" in err["message"]) == (how == "hang")
    if how == "raise":
        assert results[1]["error"]["message"] == "rank 1 broke"
    # the epoch before the fault was saved, loadable
    assert training.read_checkpoint_extra(tmp_path / "ck" / "last")["epoch"] == 1


@pytest.mark.slow
def test_ctrl_c_under_torchrun_ends_every_process(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed beside this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "selfattention", "train", "images", "--dataset", "digits", "--limit", "300",
           "--dim", "16", "--depth", "1", "--heads", "2", "--epochs", "500", "--no-baseline",
           "--checkpoint", str(tmp_path / "ck")]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    training_runs = threading.Event()

    def watch() -> None:  # reads stdout to its end, so that the pipe never fills
        for line in proc.stdout:
            if line.startswith("epoch 2:"):  # an epoch has been saved
                training_runs.set()

    errors: list[str] = []
    readers = [
        threading.Thread(target=watch, daemon=True),
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        assert training_runs.wait(DEADLINE), "no epoch line within the deadline"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(DEADLINE)
        for reader in readers:  # the pipes close when every process holding them has ended
            reader.join(DEADLINE / 2)
            assert not reader.is_alive(), "a worker outlived torchrun"
        err = "".join(errors)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, err  # rank 0 alone says where to resume
    assert "last checkpoint: " in lines[0] and lines[0].endswith("continue with --resume")
    assert training.read_checkpoint_extra(tmp_path / "ck" / "last")["epoch"] >= 1
