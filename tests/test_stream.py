"""Streaming window attention: chunks in, the offline window's outputs out (``right`` frames
late), memory bounded whatever the stream length; and ``selfattention speech stream`` on tiny
generated wavs."""

from __future__ import annotations

import pytest
import torch

from selfattention.apps import speech
from selfattention.cli import main
from selfattention.nn import (
    ALiBi,
    LearnedPositions,
    RotaryPositions,
    SelfAttention,
    SinusoidalPositions,
    WindowStream,
)
from test_speech import _no_installs, tone, write_wav

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
POSITIONS = {
    "none": lambda h, d: None,
    "rotary": lambda h, d: RotaryPositions(d),
    "alibi": lambda h, d: ALiBi(h),
}
CHUNKS = [1, 4, 10, 3, 7, 50, 1, 27, 2]  # 105 frames, awkward sizes on purpose


def _run(stream: WindowStream, x: torch.Tensor, chunks: list[int]) -> list[torch.Tensor]:
    outs, t = [], 0
    with torch.no_grad():
        for c in chunks:
            outs.append(stream.push(x[:, t : t + c]))
            t += c
        outs.append(stream.flush())
    return outs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("positions", sorted(POSITIONS))
@pytest.mark.parametrize(
    ("window", "causal"), [((5, 3), False), ((7, 0), False), ((0, 2), False), ((4, 9), True)]
)
def test_chunks_equal_offline_window_attention(dtype, positions, window, causal):
    torch.manual_seed(0)
    heads, head_dim = 4, 6
    attn = SelfAttention(
        20,
        heads,
        head_dim=head_dim,
        window=window,
        causal=causal,
        positions=POSITIONS[positions](heads, head_dim),
        dtype=dtype,
    ).eval()
    x = torch.randn(2, sum(CHUNKS), 20, dtype=dtype)
    with torch.no_grad():
        offline = attn(x)
    got = torch.cat(_run(attn.stream(), x, CHUNKS), dim=1)
    assert got.shape == offline.shape
    assert float((got - offline).abs().max()) <= TOL[dtype]


def test_outputs_come_right_frames_late_and_flush_ends_the_stream():
    attn = SelfAttention(8, 2, window=(2, 3)).eval()
    stream = attn.stream()
    x = torch.randn(1, 12, 8)
    with torch.no_grad():
        sizes = [stream.push(x[:, t : t + 2]).shape[1] for t in range(0, 12, 2)]
        assert sizes == [0, 1, 2, 2, 2, 2]  # 3 frames of look-ahead
        assert stream.pending == 3
        assert stream.flush().shape == (1, 3, 8)
        assert stream.flush() is None  # flush reset the stream
        assert stream.push(x[:, :4]).shape == (1, 1, 8)  # a new stream starts at frame 0


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_additive_positions_at_the_absolute_offset(encoding):
    torch.manual_seed(1)
    pos = (
        SinusoidalPositions(16, max_len=256)
        if encoding == "sinusoidal"
        else LearnedPositions(256, 16)
    )
    attn = SelfAttention(16, 2, window=(4, 2)).eval()
    x = torch.randn(1, 60, 16)
    with torch.no_grad():
        offline = attn(pos(x))
        stream, outs, t = attn.stream(), [], 0
        for c in (7, 13, 1, 39):
            outs.append(stream.push(pos(x[:, t : t + c], offset=t)))
            t += c
        outs.append(stream.flush())
    assert float((torch.cat(outs, 1) - offline).abs().max()) <= 1e-6


def test_memory_is_bounded_over_a_long_stream():
    left, right, chunk = 16, 4, 10
    attn = SelfAttention(8, 2, window=(left, right), positions=RotaryPositions(4)).eval()
    stream = attn.stream()
    bound = left + right + chunk
    with torch.no_grad():
        for _ in range(1000):  # 10,000 frames
            stream.push(torch.randn(1, chunk, 8))
            assert stream.cache.held <= bound
            assert stream.cache.capacity <= 2 * bound
            assert stream.pending <= right
    assert stream.cache.length == 10_000 and stream.emitted == 10_000 - right


def test_bad_streams_name_the_argument():
    attn = SelfAttention(8, 2, window=(2, 1)).eval()
    stream = attn.stream()
    with pytest.raises(ValueError, match="chunk must have dim=8 features"):
        stream.push(torch.randn(1, 4, 7))
    stream.push(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="chunk must continue the stream: batch 1"):
        stream.push(torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="finite left and right"):
        SelfAttention(8, 2).stream()
    with pytest.raises(ValueError, match="finite left and right"):
        SelfAttention(8, 2, causal=True).stream()
    with pytest.raises(ValueError, match="finite left and right"):
        SelfAttention(8, 2, window=(None, 2)).stream()


# -- selfattention speech stream -------------------------------------------------------------


@pytest.fixture
def librivox_dir(tmp_path):
    """A --data-dir with two short generated clips in librivox/."""
    folder = tmp_path / "speechdata" / "librivox"
    folder.mkdir(parents=True)
    write_wav(folder / "a-0001.wav", tone(300, 0.4))
    write_wav(folder / "a-0002.wav", tone(700, 0.3))
    return folder.parent


def test_stream_table_reports_rtf_latency_and_equality(librivox_dir):
    config = speech.StreamConfig(chunk_ms=(10, 100), window=(8, 4), heads=2, head_dim=8)
    rows = speech.stream_table(config, root=librivox_dir)
    assert [r["chunk_ms"] for r in rows] == [10, 100]
    for r in rows:
        assert r["frames"] == 72  # 41 + 31 frames of 10 ms
        assert r["rtf"] > 0 and r["latency_p95_ms"] >= r["latency_median_ms"] > 0
        assert r["delay_ms"] == r["chunk_ms"] + 40  # the chunk plus 4 frames of look-ahead
        assert r["max_error"] <= 1e-5
    assert "real-time factor" in speech.format_stream_table(rows)


def test_speech_stream_cli(librivox_dir, capsys):
    argv = ["speech", "stream", "--data-dir", str(librivox_dir), "--window", "8", "4"]
    assert main([*argv, "--chunk-ms", "10", "100", "--heads", "2", "--head-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out and "| 10 " in out and "| 100 " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunk-ms", "15"], "chunk_ms (--chunk-ms) must be positive multiples of 10"),
        (["--window", "-1"], "--window takes LEFT"),
        (["--heads", "0"], "heads (--heads) must be an integer >= 1"),
    ],
)
def test_speech_stream_bad_options_are_one_line(argv, message, librivox_dir, capsys):
    assert main(["speech", "stream", "--data-dir", str(librivox_dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_speech_stream_without_data_names_data_fetch(monkeypatch, capsys):
    from selfattention.apps import datasets

    _no_installs(monkeypatch)

    def require(name):
        raise datasets.missing(name, "pocketsphinx-testdata is not installed")

    monkeypatch.setattr(datasets, "require", require)
    assert main(["speech", "stream"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: speech:") and err.endswith("selfattention data fetch speech")
    assert "\n" not in err


def test_a_huge_window_does_not_preallocate_it():
    attn = SelfAttention(8, 2, window=(10**12, 10**12)).eval()
    stream = attn.stream()
    x = torch.randn(1, 30, 8)
    with torch.no_grad():
        assert stream.push(x).shape == (1, 0, 8)  # all 30 frames wait for their look-ahead
        got = stream.flush()
        assert float((got - attn(x)).abs().max()) <= 1e-6
