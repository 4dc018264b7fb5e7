"""Speech: wav reading, log-mel frames, truncated attention over frames, the CLI, on tiny wavs
written by the tests (a tone, chirps, silence), never the real clips."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention.apps import speech
from selfattention.apps.measure import PeakRSS
from selfattention.cli import main


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, width: int = 2,
              channels: int = 1) -> Path:  # fmt: skip
    """PCM wav via the stdlib; samples in [-1, 1], (n,) or (n, channels)."""
    scale = {1: 127, 2: 32767, 4: 2**31 - 1}[width]
    ints = np.round(np.asarray(samples) * scale)
    if width == 1:  # 8-bit wav is unsigned
        data = (ints + 128).astype(np.uint8).tobytes()
    else:
        data = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(data)
    return path


def tone(freq: float, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    """A pocketsphinx-shaped folder: librivox/ and cards/ with two short clips each."""
    root = tmp_path_factory.mktemp("speechdata")
    for voice, names, freqs in (("librivox", ("a-0001", "a-0002"), (300, 500)),
                                ("cards", ("001", "002"), (1200, 2000))):  # fmt: skip
        folder = root / voice
        folder.mkdir()
        for name, f in zip(names, freqs, strict=True):
            write_wav(folder / f"{name}.wav", tone(f, 0.5))
        lines = [f"<s> words of {n} </s> ({n})" for n in names]
        trans = "transcription" if voice == "librivox" else "cards.transcription"
        (folder / trans).write_text("\n".join(lines) + "\n")
    return root


def test_read_wav_mono_and_stereo(tmp_path):
    x = tone(440, 0.25)
    samples, rate = speech.read_wav(write_wav(tmp_path / "m.wav", x))
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == x.shape
    np.testing.assert_allclose(samples, x, atol=1.0 / 32767)
    both = np.stack([x, np.zeros_like(x)], axis=1)
    stereo, _ = speech.read_wav(write_wav(tmp_path / "s.wav", both, channels=2))
    np.testing.assert_allclose(stereo, x / 2, atol=1.0 / 32767)


def _float_wav(path: Path) -> Path:
    """An IEEE-float (format 3) wav, which the stdlib wave module cannot read."""
    data = np.zeros(160, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 16000 * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_bad_wavs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="must be 16-bit PCM, got 8-bit"):
        speech.read_wav(write_wav(tmp_path / "8bit.wav", tone(440, 0.1), width=1))
    with pytest.raises(ValueError, match="must be 16-bit PCM, got 32-bit"):
        speech.read_wav(write_wav(tmp_path / "32bit.wav", tone(440, 0.1), width=4))
    with pytest.raises(ValueError, match="not a 16-bit PCM wav file"):
        speech.read_wav(_float_wav(tmp_path / "float.wav"))
    with pytest.raises(ValueError, match="must be sampled at 16000 Hz, got 8000 Hz"):
        speech.read_wav(write_wav(tmp_path / "8k.wav", tone(440, 0.1, 8000), rate=8000))
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(ValueError, match="not a 16-bit PCM wav file"):
        speech.read_wav(text)
    with pytest.raises(ValueError, match="does not exist"):
        speech.read_wav(tmp_path / "missing.wav")


def test_mel_filterbank_shape_and_peaks():
    fb = speech.mel_filterbank(512, 40, 16000)
    assert fb.shape == (257, 40) and float(fb.min()) == 0.0 and float(fb.max()) <= 1.0
    peaks = fb.argmax(0)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # centres rise with the band index
    assert bool((fb.sum(0) > 0).all())  # no empty filter


def test_log_mel_frames_and_tone_band():
    frames = speech.log_mel(tone(1000, 1.0))
    assert frames.shape == (101, 80)  # 1 + 16000 // 160
    centre = speech.mel_filterbank(512, 80, 16000).argmax(0) * 16000 / 512  # Hz per band
    band = int(frames[10:90].mean(0).argmax())
    assert abs(float(centre[band]) - 1000) < 80  # the loudest band is the one around 1 kHz
    with pytest.raises(ValueError, match="one channel"):
        speech.log_mel(np.zeros((2, 1000)))
    with pytest.raises(ValueError, match="need more than 256 samples"):
        speech.log_mel(np.zeros(100))


def test_band_weights_stay_in_the_window():
    frames = speech.log_mel(np.concatenate([tone(300, 0.3), tone(2000, 0.3)]))
    _, w = speech.band_weights(frames, (3, 1))
    n = len(frames)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    outside = (j < i - 3) | (j > i + 1)
    assert float(w[outside].abs().max()) == 0.0
    torch.testing.assert_close(w.sum(-1), torch.ones(n))
    _, full = speech.band_weights(frames, None)
    # Full attention: a 300 Hz frame draws mostly on the other 300 Hz frames, far ones included.
    assert float(full[5, : n // 2].sum()) > 0.9


def test_load_clips_and_join(speech_dir):
    clips = speech.load_clips(speech_dir)
    assert [c.voice for c in clips] == ["librivox", "librivox", "cards", "cards"]
    assert clips[0].transcript == "words of a-0001" and clips[0].seconds == 0.5
    frames = speech.join_frames(clips, 500)  # 4 clips of 51 frames, repeated
    assert frames.shape == (500, 80)
    torch.testing.assert_close(frames[:51], speech.log_mel(speech.read_wav(clips[0].path)[0]))
    torch.testing.assert_close(frames[204:255], frames[:51])
    with pytest.raises(ValueError, match=r"no \.wav clips"):
        speech.load_clips(speech_dir / "librivox")


def test_measure_rows_in_process_and_subprocess(speech_dir, tmp_path):
    frames = speech.join_frames(speech.load_clips(speech_dir), 300)
    np.save(tmp_path / "f.npy", frames.numpy())
    rows = [
        speech.measure(300, b, w, repeats=1, frames_file=tmp_path / "f.npy")
        for b, w in (("sdpa", None), ("window", (8, 8)), ("math", (8, 8)))
    ]
    assert [r["backend"] for r in rows] == ["sdpa", "window", "math"]
    assert all(r["time_s"] > 0 and "peak_extra_mib" in r for r in rows)
    row = speech.measure_in_subprocess(
        300, "window", (8, 8), threads=1, repeats=1, frames_file=str(tmp_path / "f.npy")
    )
    assert row["frames"] == 300 and row["window"] == [8, 8] and row["threads"] == 1


def test_peak_probe_counts_the_work_not_what_came_before():
    ballast = torch.ones(64 * 2**20)  # 256 MiB touched, then freed: not part of the work
    del ballast
    with PeakRSS() as probe:
        kept = torch.ones(32 * 2**20)  # 128 MiB touched inside the block
    assert 128 * 2**20 <= probe.extra < 144 * 2**20
    assert probe.extra_bytes() >= probe.extra  # the high-water mark only rises until reset
    del kept


def test_measure_memory_is_the_call_not_the_loading(tmp_path):
    """Memory used before the timed calls is not counted; math's n×n per head is, window's
    band stays within a few times its inputs and output."""
    n, heads, head_dim = 2048, 4, 16
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.standard_normal((500, 80)).astype(np.float32))
    loading = torch.ones(96 * 2**20)  # 384 MiB touched and freed: stands in for loading
    del loading
    kw = {"heads": heads, "head_dim": head_dim, "repeats": 1, "frames_file": tmp_path / "f.npy"}
    window = speech.measure(n, "window", (32, 32), **kw)["peak_extra_mib"]
    full = speech.measure(n, "math", None, **kw)["peak_extra_mib"]
    weights_mib = heads * n * n * 4 / 2**20  # 64 MiB: one (1, h, n, n) float32 tensor
    io_mib = 4 * heads * n * head_dim * 4 / 2**20  # q, k, v and the output: 2 MiB
    assert full >= weights_mib
    assert window < 4 * io_mib + 8
    assert window < full / 8


def test_scaling_table_skips_what_cannot_fit(speech_dir):
    config = speech.ScalingConfig(
        minutes=(0.02,), window=(4, 4), backends=("math", "window"), memory_budget_gib=1e-6
    )
    seen = []
    rows = speech.scaling_table(config, root=speech_dir, progress=seen.append)
    assert seen == rows
    assert "skipped" in rows[0] and "GiB for the weights" in rows[0]["skipped"]
    assert rows[1]["backend"] == "window" and rows[1]["time_s"] > 0
    table = speech.markdown_table(rows)
    assert "| 1 s | 120 |" in table and "not run: needs" in table


def test_speech_cli(speech_dir, tmp_path, capsys):
    assert main(["speech", "info", "--data-dir", str(speech_dir)]) == 0
    assert "cards" in capsys.readouterr().out
    assert main(["speech", "voices", "--data-dir", str(speech_dir)]) == 0
    assert '"leave_one_clip_out": "4/4"' in capsys.readouterr().out
    out = tmp_path / "band.png"
    argv = ["speech", "band", "--clip", "0002", "--window", "4", "--data-dir", str(speech_dir)]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.stat().st_size > 5000
    wav = write_wav(tmp_path / "x.wav", tone(440, 0.3))
    assert main(["speech", "features", str(wav), "--out", str(tmp_path / "x.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape == (31, 80)
    bad = write_wav(tmp_path / "bad.wav", tone(440, 0.1), width=1)
    capsys.readouterr()
    assert main(["speech", "features", str(bad)]) == 1
    assert "must be 16-bit PCM" in capsys.readouterr().err
    assert main(["speech", "band", "--clip", "nope", "--data-dir", str(speech_dir)]) == 1
    assert main(["speech", "bench", "--window", "1", "2", "3"]) == 2


def test_scaling_config_names_the_bad_option():
    for kwargs, words in (
        (dict(minutes=(-1.0,)), "minutes (--minutes) must be > 0"),
        (dict(minutes=()), "minutes (--minutes)"),
        (dict(window=(4, -1)), "window (--window) takes LEFT [RIGHT] frames >= 0"),
        (dict(backends=("math", "fast")), "backends (--backends) must be among"),
        (dict(threads=0), "threads (--threads) must be an integer >= 1, got 0"),
        (dict(heads=0), "heads (--heads)"),
        (dict(memory_budget_gib=0.0), "memory_budget_gib (--budget-gib) must be > 0"),
    ):
        with pytest.raises(ValueError) as info:
            speech.ScalingConfig(**kwargs)
        assert words in str(info.value)


def _no_installs(monkeypatch):
    """Any process started (pip, apt-get, ...) fails the test."""
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"started a process: {args}")

    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, refuse)


@pytest.mark.parametrize(
    "argv",
    [["info"], ["voices"], ["band", "--clip", "0002"], ["bench", "--minutes", "0.01"]],
)
def test_missing_data_is_one_line_naming_data_fetch(argv, monkeypatch, tmp_path, capsys):
    """Bug: `speech info` (read-only) ran apt-get install when the clips were missing."""
    from selfattention.apps import datasets

    _no_installs(monkeypatch)

    def require(name):
        raise datasets.missing(name, "pocketsphinx-testdata is not installed")

    monkeypatch.setattr(datasets, "require", require)
    out = ["--out", str(tmp_path / ("b.png" if argv[0] == "band" else "o"))] if argv[0] in (
        "band", "bench") else []  # fmt: skip
    assert main(["speech", *argv, *out]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: speech:") and err.endswith("selfattention data fetch speech")
    assert "\n" not in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["features", "missing.wav"], 1, "does not exist"),
        (["features", "{wav}", "--mels", "0"], 2, "--mels must be >= 1"),
        (["features", "{wav}", "--out", "{tmp}"], 2, "is a folder"),
        (["band", "--window", "-2", "--out", "{tmp}/b.png"], 2, "--window takes LEFT"),
        (["band", "--out", "{tmp}"], 2, "is a folder"),
        (["bench", "--threads", "0", "--out", "{tmp}/o"], 2, "--threads"),
        (["bench", "--minutes", "-1", "--out", "{tmp}/o"], 2, "--minutes"),
        (["bench", "--backends", "fast", "--out", "{tmp}/o"], 2, "--backends"),
        (["bench", "--out", "{wav}"], 2, "is a file"),
        ([], 2, "choose one of: info, features"),
    ],
)
def test_bad_input_is_one_line(argv, code, message, tmp_path, capsys):
    wav = write_wav(tmp_path / "x.wav", tone(440, 0.3))
    argv = [a.format(wav=wav, tmp=tmp_path) for a in argv]
    assert main(["speech", *argv]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_broken_wav_in_the_data_dir_is_one_line(speech_dir, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(speech_dir, root)
    (root / "cards" / "003.wav").write_text("not audio")
    assert main(["speech", "info", "--data-dir", str(root)]) == 1
    assert "003.wav is not a readable wav file" in capsys.readouterr().err
