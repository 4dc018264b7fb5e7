"""From a wav file to log-mel frames: 16-bit PCM read with the standard library, a 25 ms Hann
window every 10 ms, mel filters, log. Legend: n frames, m mel bands, F frequency bins."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["SAMPLE_RATE", "log_mel", "mel_filterbank", "read_wav", "standardise"]

SAMPLE_RATE = 16000


def read_wav(path: str | Path, expected_rate: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Samples (n,) float32 in [-1, 1] and the sample rate of a 16-bit PCM wav file.

    Stereo files are averaged to mono. Raises ValueError naming the file when it cannot be read,
    is not a RIFF/WAVE file, is not 16-bit PCM, or (with ``expected_rate``) has another rate.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"wav file {path} does not exist")
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            comp, frames = f.getcomptype(), f.getnframes()
            raw = f.readframes(frames)
    except wave.Error as e:
        # wave raises "unknown format: 3" for IEEE float and similar for other codecs.
        raise ValueError(
            f"{path} is not a 16-bit PCM wav file ({e}); convert it, e.g. "
            f"`sox {path.name} -b 16 -e signed-integer out.wav`"
        ) from e
    except (EOFError, OSError) as e:
        raise ValueError(f"cannot read wav file {path}: {e}") from e
    if comp != "NONE" or width != 2:
        raise ValueError(
            f"{path} must be 16-bit PCM, got {8 * width}-bit samples (compression {comp!r})"
        )
    if expected_rate is not None and rate != expected_rate:
        raise ValueError(f"{path} must be sampled at {expected_rate} Hz, got {rate} Hz")
    usable = len(raw) - len(raw) % (2 * channels)  # a truncated last frame is dropped
    x = np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels)
    return (x.astype(np.float32).mean(axis=1) / 32768.0), rate


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> Tensor:  # fmt: skip
    """Triangular mel filters (n_fft//2 + 1, n_mels), HTK mel scale mel(f) = 2595·log10(1 + f/700).

    Filter k rises linearly from mel point k to k+1 and falls to k+2, on n_mels + 2 points equally
    spaced in mel between fmin and fmax (default sample_rate / 2).
    """
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels < 1:
        raise ValueError(f"n_mels (--mels) must be an integer >= 1, got {n_mels!r}")
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2}, got {fmin}, {fmax}")
    mel = lambda f: 2595.0 * torch.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    lo, hi = (
        mel(torch.tensor(fmin, dtype=torch.float64)),
        mel(torch.tensor(fmax, dtype=torch.float64)),
    )
    edges = hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))  # (m + 2,)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (m,) each
    up = (freqs[:, None] - left) / (centre - left)
    down = (right - freqs[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()  # (F, m)


def log_mel(
    samples: np.ndarray | Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = 80,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
) -> Tensor:
    """Log-mel frames (n, n_mels): a 25 ms Hann window every 10 ms, power spectrum, mel filters,
    log(· + 1e-6). n = 1 + len(samples) // hop (centred frames, reflect padding)."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if x.ndim != 1:
        raise ValueError(f"samples must be one channel (n,), got shape {tuple(x.shape)}")
    win = round(sample_rate * win_ms / 1000)
    hop = round(sample_rate * hop_ms / 1000)
    n_fft = 1 << (win - 1).bit_length()  # next power of two: 400 -> 512
    if len(x) <= n_fft // 2:
        raise ValueError(f"need more than {n_fft // 2} samples for one frame, got {len(x)}")
    spec = torch.stft(
        x, n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win),
        center=True, pad_mode="reflect", return_complex=True,
    )  # (F, n)  # fmt: skip
    power = spec.abs().pow(2).T  # (n, F)
    return torch.log(power @ mel_filterbank(n_fft, n_mels, sample_rate) + 1e-6)  # (n, m)


def standardise(frames: Tensor) -> Tensor:
    """Each mel band to zero mean and unit variance over time (per-utterance normalisation)."""
    return (frames - frames.mean(0)) / (frames.std(0) + 1e-5)
