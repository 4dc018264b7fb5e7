"""The shipped speech clips (the ``speech`` data set, or any folder of the same shape) and what a
plain average of their frames already tells apart."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfattention.apps.speech.features import log_mel, read_wav

__all__ = ["Clip", "join_frames", "load_clips", "voice_check"]


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
    if root is None:  # located, never installed: DataUnavailable names the fetch command
        from selfattention.apps import datasets

        root = datasets.require("speech")
    clips = []
    for voice in voices:
        folder = Path(root) / voice
        texts = _transcripts(folder)
        for path in sorted(folder.glob("*.wav")):
            try:
                with wave.open(str(path), "rb") as f:
                    seconds = f.getnframes() / f.getframerate()
            except (wave.Error, EOFError) as e:
                raise ValueError(f"{path} is not a readable wav file ({e})") from e
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
