"""selfattention.apps.training: seeds, the fit loop, checkpoints, metrics."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from selfattention.apps import training as T
from selfattention.apps.training import loop
from selfattention.pretrained import CheckpointError


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 4, generator=g)
    y = (x[:, 0] - x[:, 2] > 0).long()

    def train(epoch):
        idx = list(range(160))
        random.Random(epoch).shuffle(idx)
        return [(x[idx[i : i + 32]], y[idx[i : i + 32]]) for i in range(0, 160, 32)]

    return train, [(x[160:], y[160:])]


def _model():
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def _loss(out, t):
    return nn.functional.cross_entropy(out, t)


def _metric(out, t):
    return int((out.argmax(-1) == t).sum()), t.numel()


def _fit(model, out_dir, epochs, meta=None, **kw):
    train, dev = _problem()
    config = T.FitConfig(out_dir, epochs=epochs, lr=0.02, patience=kw.pop("patience", 10), **kw)
    return T.fit(
        model, train, dev, config, loss_fn=_loss, metric_fn=_metric, meta=meta or {"width": 16}
    )


def test_fit_learns_and_saves_the_best(tmp_path):
    T.set_seed(1)
    model = _model()
    h = _fit(model, tmp_path / "run", 8)
    losses = [r["train_loss"] for r in h.rows]
    assert losses[-1] < 0.5 * losses[0]
    assert h.best_dev_accuracy >= 0.9
    best = max(r["dev_accuracy"] for r in h.rows)
    assert h.best_dev_accuracy == best
    state, config = T.load_checkpoint(tmp_path / "run")
    assert config == {"width": 16}
    # On return the model holds the best weights, which are the saved ones.
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v)
    extra = T.read_checkpoint_extra(tmp_path / "run")
    assert extra["epoch"] == h.best_epoch
    assert h.to_dict()["epochs_run"] == 8 and h.to_dict()["history"][0]["epoch"] == 1


def test_seed_makes_runs_repeatable(tmp_path):
    T.set_seed(3)
    a = _fit(_model(), tmp_path / "a", 3)
    T.set_seed(3)
    b = _fit(_model(), tmp_path / "b", 3)
    assert [r["train_loss"] for r in a.rows] == [r["train_loss"] for r in b.rows]


def test_resume_continues_exactly(tmp_path):
    T.set_seed(5)
    straight = _model()
    full = _fit(straight, tmp_path / "straight", 5)
    T.set_seed(5)
    _fit(_model(), tmp_path / "split", 2)
    resumed = _model()  # fresh weights: everything must come from the checkpoint
    again = _fit(resumed, tmp_path / "split", 5, resume=True)
    assert [r["train_loss"] for r in again.rows] == pytest.approx(
        [r["train_loss"] for r in full.rows], rel=1e-6
    )
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_early_stopping_on_dev(tmp_path):
    train, dev = _problem()
    h = T.fit(
        _model(),
        train,
        dev,
        T.FitConfig(tmp_path, epochs=20, lr=0.01, patience=2),
        loss_fn=_loss,
        metric_fn=lambda out, t: (0, t.numel()),  # dev accuracy never improves after epoch 1
    )
    assert h.stopped == "patience"
    assert h.epochs_run == 3
    assert h.best_epoch == 1


def test_time_limit_stops_inside_an_epoch(tmp_path, monkeypatch):
    clock = iter(range(10**6))  # a fake clock: each reading is one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    h = _fit(_model(), tmp_path, 50, time_limit=8.0)
    assert h.stopped == "time_limit"
    assert 1 <= h.epochs_run < 3  # cut short inside an epoch, which is still scored and saved
    T.load_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="before the first batch"):
        _fit(_model(), tmp_path / "none", 5, time_limit=0.0)


def test_fit_with_no_training_batches_says_so(tmp_path):
    _, dev = _problem()
    for empty in ([], lambda epoch: []):
        with pytest.raises(ValueError, match="train_batches yielded no examples"):
            T.fit(
                _model(),
                empty,
                dev,
                T.FitConfig(tmp_path, epochs=3, lr=0.01, patience=2),
                loss_fn=_loss,
                metric_fn=_metric,
            )


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="epochs must be a positive int, got 0"):
        _fit(_model(), tmp_path, 0)
    for bad in ({"lr": float("nan")}, {"patience": 0}, {"time_limit": -1}, {"grad_clip": 0}):
        with pytest.raises(ValueError, match=f"FitConfig: {next(iter(bad))} must be"):
            T.FitConfig(tmp_path, **bad)
    with pytest.raises(TypeError, match="seed"):
        T.set_seed("1")


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    T.save_checkpoint(tmp_path, model, {"a": [1, 2]}, extra={"epoch": 2}, optimizer=opt)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[0] for n in names] == ["config.json", "model", "optimizer"]
    state, config = T.load_checkpoint(tmp_path)
    assert config == {"a": [1, 2]}
    assert set(state) == set(model.state_dict())
    fresh = torch.optim.AdamW(_model().parameters(), lr=0.5)
    T.load_optimizer(tmp_path, fresh)
    assert fresh.param_groups[0]["lr"] == 0.1
    torch.testing.assert_close(
        fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_truncated_checkpoint_names_the_file(tmp_path):
    T.save_checkpoint(tmp_path, _model(), {})
    (weights,) = tmp_path.glob("model-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(T.CheckpointError, match=r"model-\w+\.safetensors.*truncated or corrupt"):
        T.load_checkpoint(tmp_path)


def test_corrupt_bytes_are_caught_by_the_digest(tmp_path):
    T.save_checkpoint(tmp_path, _model(), {})
    (weights,) = tmp_path.glob("model-*.safetensors")
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # same length, one tensor value changed: only the SHA-256 can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(T.CheckpointError, match=r"model-\w+\.safetensors"):
        T.load_checkpoint(tmp_path)


def test_missing_or_garbled_files(tmp_path):
    with pytest.raises(T.CheckpointError, match="does not exist"):
        T.load_checkpoint(tmp_path / "nowhere")
    T.save_checkpoint(tmp_path, _model(), {})
    (tmp_path / "config.json").write_text('{"a": ')
    with pytest.raises(T.CheckpointError, match=r"config\.json.*truncated or corrupt"):
        T.load_checkpoint(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(T.CheckpointError, match=r"config\.json is missing"):
        T.load_checkpoint(tmp_path)
    assert issubclass(T.CheckpointError, ValueError)
    assert T.CheckpointError is CheckpointError  # one type for every checkpoint the library reads


def test_write_metrics_plain_json(tmp_path):
    path = T.write_metrics(
        tmp_path / "m" / "metrics.json",
        {"acc": torch.tensor(0.5), "n": np.int64(3), "bad": math.nan, "v": np.arange(2)},
    )
    assert json.loads(path.read_text()) == {"acc": 0.5, "n": 3, "bad": None, "v": [0, 1]}


# -- issue 9: atomic checkpoints, Ctrl-C, resume with other options ------------------------------


def _interrupting(k):
    """Wrap the file-system steps a save takes (write + fsync, rename, delete) so that the
    k-th of them raises KeyboardInterrupt instead of running."""
    calls = [0]

    def wrap(fn):
        def wrapped(*args, **kwargs):
            if calls[0] == k:
                raise KeyboardInterrupt("simulated")
            calls[0] += 1
            return fn(*args, **kwargs)

        return wrapped

    return wrap


def _trained_pair():
    torch.manual_seed(0)
    old, new = _model(), _model()
    optimizers = []
    for model, lr in ((old, 0.1), (new, 0.2)):
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        optimizers.append(opt)
    return (old, optimizers[0]), (new, optimizers[1])


def test_an_interrupt_at_any_step_of_a_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    import os
    import pathlib

    (old, old_opt), (new, new_opt) = _trained_pair()
    seen = []
    for k in range(200):
        ckpt = tmp_path / str(k)
        T.save_checkpoint(ckpt, old, {"v": 1}, extra={"epoch": 1}, optimizer=old_opt)
        wrap = _interrupting(k)
        completed = True
        with monkeypatch.context() as m:
            # Every write is flushed with os.fsync before its rename; interrupting at each
            # fsync, rename and delete covers every gap between two steps.
            m.setattr(os, "fsync", wrap(os.fsync))
            m.setattr(os, "replace", wrap(os.replace))
            m.setattr(pathlib.Path, "unlink", wrap(pathlib.Path.unlink))
            try:
                T.save_checkpoint(ckpt, new, {"v": 2}, extra={"epoch": 2}, optimizer=new_opt,
                                  tensors={"rng": {"torch": torch.get_rng_state()}})  # fmt: skip
            except KeyboardInterrupt:
                completed = False
        # Whatever the step, the folder holds one whole checkpoint: the old one or the new one.
        state, config = T.load_checkpoint(ckpt)
        model, opt, epoch = (old, old_opt, 1) if config["v"] == 1 else (new, new_opt, 2)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(state[name], value)
        assert T.read_checkpoint_extra(ckpt) == {"epoch": epoch}
        fresh = torch.optim.AdamW(_model().parameters(), lr=0.5)
        T.load_optimizer(ckpt, fresh)
        assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        seen.append(config["v"])
        # The next save works and sweeps what the interrupted one left behind.
        T.save_checkpoint(ckpt, old, {"v": 3})
        assert sorted(p.name.split("-")[0] for p in ckpt.iterdir()) == ["config.json", "model"]
        if completed:
            break
    assert completed, "the save never completed"
    assert seen == sorted(seen) and seen[0] == 1 and seen[-1] == 2  # old ... old, new ... new
    assert seen.count(1) >= 6  # at least: 3 tensor files written and renamed before the commit


def test_write_metrics_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    import os

    path = T.write_metrics(tmp_path / "metrics.json", {"acc": 0.5})
    with monkeypatch.context() as m:
        m.setattr(os, "replace", _interrupting(0)(os.replace))
        with pytest.raises(KeyboardInterrupt):
            T.write_metrics(path, {"acc": 0.9})
    assert json.loads(path.read_text()) == {"acc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def _interrupt_at(epoch, step):
    """A loss that raises KeyboardInterrupt at training step ``step`` of ``epoch`` (1-based)."""
    calls = [0]

    def loss(out, t):
        if torch.is_grad_enabled():  # a training step, not the dev evaluation
            calls[0] += 1
            if calls[0] == (epoch - 1) * 5 + step:  # 5 training batches an epoch
                raise KeyboardInterrupt
        return _loss(out, t)

    return loss


def test_ctrl_c_names_the_last_checkpoint(tmp_path):
    train, dev = _problem()
    config = T.FitConfig(tmp_path / "run", epochs=5, lr=0.02)
    with pytest.raises(KeyboardInterrupt, match="no checkpoint was written yet"):
        T.fit(_model(), train, dev, config, loss_fn=_interrupt_at(1, 2), metric_fn=_metric)
    with pytest.raises(KeyboardInterrupt) as info:
        T.fit(_model(), train, dev, config, loss_fn=_interrupt_at(3, 2), metric_fn=_metric)
    assert str(info.value) == (
        f"last checkpoint: {tmp_path / 'run' / 'last'} (epoch 2; best weights in "
        f"{tmp_path / 'run'})"
    )
    # ... and resuming from there continues with epoch 3.
    h = T.fit(_model(), train, dev, T.FitConfig(tmp_path / "run", epochs=3, lr=0.02, resume=True),
              loss_fn=_loss, metric_fn=_metric)  # fmt: skip
    assert [r["epoch"] for r in h.rows] == [1, 2, 3]


def test_resume_with_other_options_names_them(tmp_path):
    _fit(_model(), tmp_path, 1, meta={"width": 16, "layers": 1})
    wider = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    with pytest.raises(T.CheckpointMismatch) as info:
        _fit(wider, tmp_path, 2, meta={"width": 32, "layers": 1}, resume=True)
    message = str(info.value)
    assert "width is 16 there, 32 here" in message and "layers" not in message
    assert "\n" not in message
    # Same options but other shapes (a caller that does not record its sizes): still one line.
    with pytest.raises(T.CheckpointMismatch, match="the model differs"):
        _fit(wider, tmp_path, 2, meta={"width": 16, "layers": 1}, resume=True)
    with pytest.raises(T.CheckpointError, match="holds no checkpoint of an earlier run"):
        _fit(_model(), tmp_path / "fresh", 2, resume=True)


@pytest.mark.slow
def test_train_images_prints_a_line_per_epoch(tmp_path, capsys):
    """The images adapter passes the same epoch printer as pos and polarity (and none with
    --no-progress)."""
    from selfattention.cli import main

    argv = ["train", "images", "--dataset", "digits", "--limit", "100", "--dim", "16",
            "--depth", "1", "--heads", "2", "--epochs", "2", "--no-baseline"]  # fmt: skip
    assert main([*argv, "-c", str(tmp_path / "a")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1", "epoch 2"]
    assert "train loss" in lines[0] and "| dev loss" in lines[0]
    assert main([*argv, "-c", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "epoch 1:" not in capsys.readouterr().out
