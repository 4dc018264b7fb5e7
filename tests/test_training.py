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


def _fit(model, out_dir, epochs, **kw):
    train, dev = _problem()
    return T.fit(
        model,
        train,
        dev,
        loss_fn=_loss,
        metric_fn=_metric,
        epochs=epochs,
        lr=0.02,
        patience=kw.pop("patience", 10),
        out_dir=out_dir,
        progress=False,
        config={"width": 16},
        **kw,
    )


def test_fit_learns_and_saves_the_best(tmp_path):
    T.set_seed(1)
    model = _model()
    h = _fit(model, tmp_path / "run", 8)
    losses = [r["train_loss"] for r in h["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert h["best_dev_accuracy"] >= 0.9
    best = max(r["dev_accuracy"] for r in h["history"])
    assert h["best_dev_accuracy"] == best
    state, config = T.load_checkpoint(tmp_path / "run")
    assert config == {"width": 16}
    # On return the model holds the best weights, which are the saved ones.
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v)
    extra = T.read_checkpoint_extra(tmp_path / "run")
    assert extra["epoch"] == h["best_epoch"]


def test_seed_makes_runs_repeatable(tmp_path):
    T.set_seed(3)
    a = _fit(_model(), tmp_path / "a", 3)
    T.set_seed(3)
    b = _fit(_model(), tmp_path / "b", 3)
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_continues_exactly(tmp_path):
    T.set_seed(5)
    straight = _model()
    full = _fit(straight, tmp_path / "straight", 5)
    T.set_seed(5)
    _fit(_model(), tmp_path / "split", 2)
    resumed = _model()  # fresh weights: everything must come from the checkpoint
    again = _fit(resumed, tmp_path / "split", 5, resume=True)
    assert [r["train_loss"] for r in again["history"]] == pytest.approx(
        [r["train_loss"] for r in full["history"]], rel=1e-6
    )
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_early_stopping_on_dev(tmp_path):
    train, dev = _problem()
    h = T.fit(
        _model(),
        train,
        dev,
        loss_fn=_loss,
        metric_fn=lambda out, t: (0, t.numel()),  # dev accuracy never improves after epoch 1
        epochs=20,
        lr=0.01,
        patience=2,
        out_dir=tmp_path,
        progress=False,
    )
    assert h["stopped"] == "patience"
    assert h["epochs_run"] == 3
    assert h["best_epoch"] == 1


def test_time_limit_stops_inside_an_epoch(tmp_path, monkeypatch):
    clock = iter(range(10**6))  # a fake clock: each reading is one second later
    monkeypatch.setattr(T.time, "perf_counter", lambda: float(next(clock)))
    h = _fit(_model(), tmp_path, 50, time_limit=8.0)
    assert h["stopped"] == "time_limit"
    assert 1 <= h["epochs_run"] < 3  # cut short inside an epoch, which is still scored and saved
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
                loss_fn=_loss,
                metric_fn=_metric,
                epochs=3,
                lr=0.01,
                patience=2,
                out_dir=tmp_path,
                progress=False,
            )


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        _fit(_model(), tmp_path, 0)
    with pytest.raises(TypeError, match="seed"):
        T.set_seed("1")


def test_checkpoint_round_trip_with_optimizer(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    T.save_checkpoint(tmp_path, model, {"a": [1, 2]}, extra={"epoch": 2}, optimizer=opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]
    state, config = T.load_checkpoint(tmp_path)
    assert config == {"a": [1, 2]}
    assert set(state) == set(model.state_dict())
    fresh = torch.optim.AdamW(_model().parameters(), lr=0.5)
    T._load_optimizer(tmp_path, fresh)
    assert fresh.param_groups[0]["lr"] == 0.1
    torch.testing.assert_close(
        fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_truncated_checkpoint_names_the_file(tmp_path):
    T.save_checkpoint(tmp_path, _model(), {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(T.CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        T.load_checkpoint(tmp_path)


def test_corrupt_bytes_are_caught_by_the_digest(tmp_path):
    T.save_checkpoint(tmp_path, _model(), {})
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # same length, one tensor value changed: only the SHA-256 can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(T.CheckpointError, match=r"model\.safetensors"):
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
