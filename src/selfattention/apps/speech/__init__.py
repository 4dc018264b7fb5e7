"""Truncated self-attention over real speech: wav → log-mel frames → attention within a window.

Speech is a very long sequence of short frames: one every 10 ms, 6,000 a minute. Full
self-attention compares every frame with every other, O(n²) in time and memory; truncated
attention lets frame i see only frames i-left … i+right, O(n·(left+right)). This module reads
16-bit PCM wav files with the standard library, computes log-mel frames with torch, and measures
full against truncated attention as the input grows from seconds to minutes.

    samples, rate = read_wav(path)                   # float32 in [-1, 1], 16000
    frames = log_mel(samples, rate)                  # (n, 80), one row per 10 ms
    out, w = band_weights(frames, window=(32, 32))   # parameter-free attention over the frames

Legend: n frames, m mel bands, h heads, d head_dim.

The package: ``features`` (wav reading, log-mel frames), ``clips`` (the shipped clips),
``figures`` (parameter-free attention over frames and its picture), ``scaling`` (time and memory
of full vs truncated attention, ``ScalingConfig``), ``stream`` (the frames pushed through a
streaming window in 10/100 ms chunks: real-time factor and latency, ``StreamConfig``). Clips
come from the ``speech`` data set (``datasets.require``: located, never installed) or an
explicit folder.
"""

from __future__ import annotations

from selfattention.apps.speech.clips import Clip, join_frames, load_clips, voice_check
from selfattention.apps.speech.features import (
    SAMPLE_RATE,
    log_mel,
    mel_filterbank,
    read_wav,
    standardise,
)
from selfattention.apps.speech.figures import band_figure, band_weights
from selfattention.apps.speech.scaling import (
    ScalingConfig,
    format_row,
    full_attention_bytes,
    markdown_table,
    measure,
    measure_in_subprocess,
    scaling_table,
)
from selfattention.apps.speech.stream import (
    StreamConfig,
    format_stream_table,
    stream_frames,
    stream_table,
)

__all__ = [
    "SAMPLE_RATE",
    "Clip",
    "ScalingConfig",
    "StreamConfig",
    "band_figure",
    "band_weights",
    "format_row",
    "format_stream_table",
    "full_attention_bytes",
    "join_frames",
    "load_clips",
    "log_mel",
    "markdown_table",
    "measure",
    "measure_in_subprocess",
    "mel_filterbank",
    "read_wav",
    "scaling_table",
    "standardise",
    "stream_frames",
    "stream_table",
    "voice_check",
]
