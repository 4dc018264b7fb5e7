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
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from selfattention.apps.measure import PeakRSS
from selfattention.functional import attention

__all__ = [
    "Clip",
    "band_figure",
    "band_weights",
    "join_frames",
    "load_clips",
    "log_mel",
    "measure",
    "measure_in_subprocess",
    "mel_filterbank",
    "read_wav",
    "scaling_table",
    "voice_check",
]

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


@dataclass(frozen=True)
class Clip:
    """One recording: ``voice`` is the folder it ships in (librivox or cards)."""

    name: str
    voice: str
    path: Path
    transcript: str
    seconds: float


def _transcripts(folder: Path) -> dict[str, str]:
    out = {}
    for name in ("transcription", f"{folder.name}.transcription"):
        f = folder / name
        if f.exists():
            for line in f.read_text().splitlines():
                if "(" in line:
                    text, _, key = line.rpartition("(")
                    words = [w for w in text.split() if w not in ("<s>", "</s>")]
                    out[key.strip(" )")] = " ".join(words)
    return out


def load_clips(root: str | Path | None = None, voices: tuple[str, ...] = ("librivox", "cards")
               ) -> list[Clip]:  # fmt: skip
    """The shipped clips under ``root`` (default: the ``speech`` data set), sorted by name."""
    if root is None:
        from selfattention.apps import datasets

        root = datasets.fetch("speech")
    clips = []
    for voice in voices:
        folder = Path(root) / voice
        texts = _transcripts(folder)
        for path in sorted(folder.glob("*.wav")):
            with wave.open(str(path), "rb") as f:
                seconds = f.getnframes() / f.getframerate()
            clips.append(Clip(path.stem, voice, path, texts.get(path.stem, ""), seconds))
    if not clips:
        raise ValueError(f"no .wav clips found under {root} in {voices}")
    return clips


def join_frames(clips: list[Clip], n_frames: int) -> Tensor:
    """(n_frames, 80): the clips' log-mel frames joined end to end, repeated until long enough."""
    parts = [log_mel(read_wav(c.path)[0]) for c in clips]
    one_pass = torch.cat(parts)  # (sum of clip frames, 80)
    reps = -(-n_frames // len(one_pass))
    return one_pass.repeat(reps, 1)[:n_frames]


def standardise(frames: Tensor) -> Tensor:
    """Each mel band to zero mean and unit variance over time (per-utterance normalisation)."""
    return (frames - frames.mean(0)) / (frames.std(0) + 1e-5)


def band_weights(
    frames: Tensor, window: tuple[int, int] | None, heads: int = 1
) -> tuple[Tensor, Tensor]:
    """Parameter-free self-attention over standardised frames (Q = K = V = X), math backend.

        W = softmax(X Xᵀ / √m  on  j ∈ [i - left, i + right]),   Y = W X

    Returns Y (n, m) and W (n, n): which frames each frame draws on. window None = full.
    """
    x = standardise(frames)[None, None].expand(1, heads, -1, -1)  # (1, h, n, m)
    out, w = attention(x, x, x, window=window, return_weights=True, backend="math")
    return out[0, 0], w[0, 0]


# ---------------------------------------------------------------------------------------------
# time and memory of full vs truncated attention, each measurement in a fresh process


def measure(
    n_frames: int,
    backend: str,
    window: tuple[int, int] | None,
    heads: int = 4,
    head_dim: int = 16,
    repeats: int = 3,
    root: str | Path | None = None,
    frames_file: str | Path | None = None,
) -> dict:
    """Time and extra peak memory of one attention call over ``n_frames`` real frames.

    The frames (the clips joined, repeated to length; or the (k, 80) array in ``frames_file``,
    repeated) are projected to q, k, v (1, heads, n, head_dim) by a fixed random linear map; only
    ``attention(q, k, v, window=..., backend=...)`` is timed (best of ``repeats``, no grad).
    Memory is what the calls hold at once beyond their inputs: the resident high-water mark is
    reset after the inputs are built and free heap is returned to the system
    (``measure.PeakRSS(release=True)``), then read after the calls, so loading and projecting
    the frames does not count; the output does. ``measure_in_subprocess`` gives the clean
    reading.
    """
    if frames_file is not None:
        base = torch.from_numpy(np.load(frames_file))
        frames = base.repeat(-(-n_frames // len(base)), 1)[:n_frames]
    else:
        frames = join_frames(load_clips(root), n_frames)
    frames = standardise(frames)  # (n, 80)
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(3, frames.shape[1], heads * head_dim, generator=g) / math.sqrt(80)
    q, k, v = (
        (frames @ proj[t]).view(1, n_frames, heads, head_dim).transpose(1, 2).contiguous()
        for t in range(3)
    )  # each (1, h, n, d)
    del frames, proj
    with torch.no_grad():
        small = q[:, :, :256], k[:, :, :256], v[:, :, :256]
        attention(*small, window=window, backend=backend)  # warm-up: kernels, thread pool
        del small
        # From here on: the calls only. Free heap left by loading goes back to the system
        # first, or the calls would reuse it unseen.
        memory = PeakRSS(release=True)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = attention(q, k, v, window=window, backend=backend)
            best = min(best, time.perf_counter() - t0)
            del out
        extra = memory.extra_bytes()
    return {
        "frames": n_frames,
        "seconds_of_audio": n_frames / 100,
        "backend": backend,
        "window": list(window) if window else None,
        "heads": heads,
        "head_dim": head_dim,
        "time_s": best,
        "peak_extra_mib": extra / 2**20,
        "threads": torch.get_num_threads(),
    }


def measure_in_subprocess(
    n_frames: int, backend: str, window: tuple[int, int] | None, threads: int = 2,
    timeout: float = 600.0, **kwargs,
) -> dict:  # fmt: skip
    """``measure`` in a fresh Python process (clean peak-memory reading); failures come back as
    ``{"error": ...}`` (out of memory, timeout)."""
    args = {"n_frames": n_frames, "backend": backend, "window": window, **kwargs}
    code = (
        f"import json, sys, torch; torch.set_num_threads({int(threads)}); "
        "from selfattention.apps.speech import measure; "
        "a = json.loads(sys.argv[1]); w = a.pop('window'); "
        "print(json.dumps(measure(window=tuple(w) if w else None, **a)))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(args, default=str)],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"frames": n_frames, "seconds_of_audio": n_frames / 100, "backend": backend,
                "window": window, "error": f"timeout after {timeout:.0f} s"}  # fmt: skip
    if done.returncode != 0:
        why = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip()[-300:]
        return {"frames": n_frames, "seconds_of_audio": n_frames / 100, "backend": backend,
                "window": window, "error": why}  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def full_attention_bytes(n_frames: int, heads: int, backend: str) -> int:
    """A lower bound on what full attention holds at once: the math path materialises the scores
    and the weights, 2·h·n² float32; torch's fused CPU kernel (sdpa, no mask) works in blocks."""
    return 2 * heads * n_frames * n_frames * 4 if backend == "math" else 0


def scaling_table(
    minutes: list[float],
    window: tuple[int, int] = (32, 32),
    backends: tuple[str, ...] = ("math", "sdpa", "window"),
    threads: int = 2,
    memory_budget_gib: float = 8.0,
    time_budget_s: float = 120.0,
    heads: int = 4,
    head_dim: int = 16,
    root: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """One row per (audio length, backend): full attention ("math", "sdpa") and truncated
    ("window") over the real clips joined and repeated, each measured in a fresh process.

    Not run, with the reason in the row: full attention whose weights alone exceed
    ``memory_budget_gib``, and any run that the previous length predicts (time ∝ n² for full,
    ∝ n for truncated) to take more than ``time_budget_s``.
    """
    import tempfile

    rows: list[dict] = []
    last: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = Path(tmp) / "frames.npy"
        clips = load_clips(root)
        np.save(frames_file, torch.cat([log_mel(read_wav(c.path)[0]) for c in clips]).numpy())
        for m in sorted(minutes):
            n = round(m * 60 * 100)
            for backend in backends:
                win = window if backend == "window" else None
                base = {"frames": n, "seconds_of_audio": n / 100, "backend": backend}
                need = full_attention_bytes(n, heads, backend)
                prev = last.get(backend)
                power = 1 if win else 2
                guess = prev["time_s"] * (n / prev["frames"]) ** power if prev else 0.0
                if need > memory_budget_gib * 2**30:
                    row = {**base, "skipped": f"needs {need / 2**30:.0f} GiB for the weights "
                           f"(> {memory_budget_gib:g} GiB budget)"}  # fmt: skip
                elif guess > time_budget_s:
                    row = {**base, "skipped": f"would take ~{guess:.0f} s "
                           f"(> {time_budget_s:g} s budget)"}  # fmt: skip
                else:
                    row = measure_in_subprocess(
                        n, backend, win, threads=threads, heads=heads, head_dim=head_dim,
                        frames_file=str(frames_file), timeout=max(60.0, 5 * time_budget_s),
                    )  # fmt: skip
                    if "time_s" in row:
                        last[backend] = row
                rows.append(row)
                if progress:
                    print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    name = {"math": "full (math)", "sdpa": "full (sdpa)", "window": "truncated (window)"}.get(
        row["backend"], row["backend"]
    )
    if row.get("window") and row["backend"] != "window":
        name = f"truncated ({row['backend']})"
    head = f"{row['seconds_of_audio'] / 60:6.2f} min {row['frames']:>7} frames  {name:<20}"
    if "skipped" in row:
        return f"{head} not run: {row['skipped']}"
    if "error" in row:
        return f"{head} failed: {row['error']}"
    return f"{head} {row['time_s'] * 1000:10.1f} ms {row['peak_extra_mib']:10.1f} MiB"


def markdown_table(rows: list[dict]) -> str:
    """The scaling table as Markdown: one row per length, time and memory per backend."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    names = {"math": "full, math", "sdpa": "full, sdpa", "window": "truncated, window"}
    head = "| audio | frames | " + " | ".join(f"{names.get(b, b)}" for b in backends) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(backends)]
    for n in dict.fromkeys(r["frames"] for r in rows):
        cells = []
        for b in backends:
            r = next(r for r in rows if r["frames"] == n and r["backend"] == b)
            if "skipped" in r:
                cells.append("not run: " + r["skipped"].split(" (")[0])
            elif "error" in r:
                cells.append("failed")
            else:
                t = r["time_s"]
                took = f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"
                cells.append(f"{took} / {r['peak_extra_mib']:.0f} MiB")
        secs = n / 100
        audio = f"{secs:.0f} s" if secs < 60 else f"{secs / 60:g} min"
        lines.append(f"| {audio} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def band_figure(clip: Clip, window: tuple[int, int] = (32, 32), frames: int | None = None):
    """Log-mel frames of ``clip`` above the full and the truncated attention weights over them
    (parameter-free, ``band_weights``); ``frames`` keeps only the first so many."""
    from selfattention.viz.figures import new_figure

    mel = log_mel(read_wav(clip.path)[0])[:frames]  # (n, 80)
    _, full = band_weights(mel, None)
    _, band = band_weights(mel, window)
    n = len(mel)
    fig = new_figure(12.0, 5.4)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 3.2), hspace=0.35, wspace=0.18)
    top = fig.add_subplot(grid[0, :])
    top.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma",
               extent=(0, n / 100, 0, mel.shape[1]))  # fmt: skip
    top.set_xlabel("seconds")
    top.set_ylabel("mel band")
    top.set_title(f'{clip.voice}/{clip.name}: "{clip.transcript}"', fontsize=9)
    for k, (w, label) in enumerate(
        ((full, "full attention: every frame sees all n"),
         (band, f"truncated: frame i sees i-{window[0]} … i+{window[1]}"))
    ):  # fmt: skip
        ax = fig.add_subplot(grid[1, k])
        vmax = float(torch.quantile(w[w > 0].flatten()[:1_000_000], 0.99))
        im = ax.imshow(w.numpy(), cmap="viridis", vmin=0, vmax=vmax, extent=(0, n, n, 0))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("key frame j (10 ms)")
        ax.set_ylabel("query frame i")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return fig


def voice_check(clips: list[Clip]) -> dict:
    """Why the shipped speech does not support an honest speaker task.

    Each clip is reduced to one vector, its mean log-mel frame (no model, no attention), and
    classified by the nearest voice centroid of the other clips (leave one clip out). If that
    trivial average already separates the voices, a trained model's accuracy on these clips
    says nothing about attention. ``high_band_mean`` (mel bands 60-79, about 4.5-8 kHz) shows
    what it picks up: the recording channel, not the voice.
    """
    means = torch.stack([log_mel(read_wav(c.path)[0]).mean(0) for c in clips])  # (clips, 80)
    voices = [c.voice for c in clips]
    correct = 0
    for i in range(len(clips)):
        rest = [j for j in range(len(clips)) if j != i]
        centroids = {
            v: means[[j for j in rest if voices[j] == v]].mean(0)
            for v in sorted(set(voices[j] for j in rest))
        }
        guess = min(centroids, key=lambda v: float((means[i] - centroids[v]).norm()))
        correct += guess == voices[i]
    per_voice = {
        v: {
            "clips": voices.count(v),
            "seconds": sum(c.seconds for c in clips if c.voice == v),
            "high_band_mean": float(means[[k for k, u in enumerate(voices) if u == v], 60:].mean()),
            "low_band_mean": float(means[[k for k, u in enumerate(voices) if u == v], :20].mean()),
        }
        for v in sorted(set(voices))
    }
    return {"leave_one_clip_out": f"{correct}/{len(clips)}", "voices": per_voice}
