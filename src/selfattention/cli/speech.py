"""``selfattention speech``: truncated self-attention over real speech (log-mel frames, 10 ms hop).

selfattention speech info                      # the shipped clips, durations, transcripts
selfattention speech features FILE.wav         # log-mel frames of any 16 kHz 16-bit wav
selfattention speech band --out band.png       # full vs truncated weights on a real clip
selfattention speech bench --minutes 0.5 1 5   # time and memory, full vs truncated
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def _window(values: list[int]) -> tuple[int, int]:
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 0:
        raise ValueError(f"--window takes LEFT [RIGHT] frames >= 0, got {values}")
    return int(values[0]), int(values[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="speech_command", metavar="WHAT")
    root_help = "pocketsphinx test-data directory (default: the 'speech' data set)"

    p = sub.add_parser("info", help="list the shipped clips")
    p.add_argument("--data-dir", type=Path, help=root_help)

    p = sub.add_parser("features", help="log-mel frames of a 16 kHz 16-bit PCM wav")
    p.add_argument("wav", type=Path, nargs="+")
    p.add_argument("--mels", type=int, default=80, help="mel bands (default: 80)")
    p.add_argument("--out", type=Path, help="save the frames of the first file as .npy")

    p = sub.add_parser("band", help="PNG: full vs truncated attention weights on a real clip")
    p.add_argument("--clip", default="0880", help="a clip name or its end (default: 0880)")
    p.add_argument("--window", type=int, nargs="+", default=[32, 32], metavar="FRAMES")
    p.add_argument("--out", type=Path, default=Path("results/speech/speech_band.png"))
    p.add_argument("--data-dir", type=Path, help=root_help)

    p = sub.add_parser("voices", help="can a per-clip average spectrum tell the voices apart?")
    p.add_argument("--data-dir", type=Path, help=root_help)

    p = sub.add_parser("bench", help="time and peak memory of full vs truncated attention")
    p.add_argument(
        "--minutes",
        type=float,
        nargs="+",
        default=[0.1, 0.5, 1, 2, 5, 10, 30],
        help="audio lengths in minutes (clips joined and repeated; default: 0.1 ... 30)",
    )
    p.add_argument("--window", type=int, nargs="+", default=[32, 32], metavar="FRAMES")
    p.add_argument("--backends", nargs="+", default=["math", "sdpa", "window"])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    p.add_argument(
        "--budget-gib",
        type=float,
        default=8.0,
        help="do not run full attention whose weights need more than this (default: 8)",
    )
    p.add_argument("--out", type=Path, default=Path("results/speech"))
    p.add_argument("--data-dir", type=Path, help=root_help)


def run(args: argparse.Namespace) -> int:
    from selfattention.apps import speech
    from selfattention.apps.datasets import DataUnavailable

    command = getattr(args, "speech_command", None)
    if command is None:
        print("error: choose one of: info, features, band, bench, voices", file=sys.stderr)
        return 2
    try:
        commands = {"info": _info, "features": _features, "band": _band, "bench": _bench,
                    "voices": _voices}  # fmt: skip
        return commands[command](args, speech)
    except (ValueError, DataUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _info(args, speech) -> int:
    clips = speech.load_clips(args.data_dir)
    for c in clips:
        print(f"{c.voice:<9} {c.name:<44} {c.seconds:5.2f} s  {c.transcript}")
    total = sum(c.seconds for c in clips)
    print(f"{len(clips)} clips, {total:.1f} s ({total * 100:.0f} frames of 10 ms)")
    return 0


def _features(args, speech) -> int:
    import numpy as np

    for k, path in enumerate(args.wav):
        samples, rate = speech.read_wav(path)
        frames = speech.log_mel(samples, rate, n_mels=args.mels)
        print(f"{path}: {len(samples) / rate:.2f} s -> {tuple(frames.shape)} log-mel frames")
        if k == 0 and args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            np.save(args.out, frames.numpy())
            print(f"saved {args.out}")
    return 0


def _band(args, speech) -> int:
    from selfattention import viz

    clips = [c for c in speech.load_clips(args.data_dir) if c.name.endswith(args.clip)]
    if len(clips) != 1:
        names = ", ".join(c.name for c in speech.load_clips(args.data_dir))
        raise ValueError(f"--clip {args.clip!r} must name exactly one clip; clips: {names}")
    fig = speech.band_figure(clips[0], _window(args.window))
    print(viz.save(fig, args.out, dpi=90))
    return 0


def _voices(args, speech) -> int:
    result = speech.voice_check(speech.load_clips(args.data_dir))
    print(json.dumps(result, indent=2))
    return 0


def _bench(args, speech) -> int:
    rows = speech.scaling_table(
        args.minutes,
        window=_window(args.window),
        backends=tuple(args.backends),
        threads=args.threads,
        memory_budget_gib=args.budget_gib,
        heads=args.heads,
        head_dim=args.head_dim,
        root=args.data_dir,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = speech.markdown_table(rows)
    (args.out / "bench.md").write_text(table + "\n")
    print(table)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0
