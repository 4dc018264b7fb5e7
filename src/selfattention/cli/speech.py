"""``selfattention speech``: truncated self-attention over real speech (log-mel frames, 10 ms hop).

    selfattention speech info                      # the shipped clips, durations, transcripts
    selfattention speech features FILE.wav         # log-mel frames of any 16 kHz 16-bit wav
    selfattention speech band --out band.png       # full vs truncated weights on a real clip
    selfattention speech bench --minutes 0.5 1 5   # time and memory, full vs truncated
    selfattention speech stream --chunk-ms 10 100  # streaming: real-time factor, latency

The clips come from the ``speech`` data set (located, never installed: when it is missing the
command says to run ``selfattention data fetch speech``) or ``--data-dir``. The computation is
:mod:`selfattention.apps.speech`.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from selfattention.apps import speech
from selfattention.cli._common import EXIT_USAGE, error, one_line
from selfattention.cli._files import out_file, out_folder, write_bytes, write_text

__all__ = ["add_arguments", "run"]

WHAT = ("info", "features", "band", "voices", "bench", "stream")


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

    p = sub.add_parser(
        "stream", help="the LibriVox frames through a streaming window, chunk by chunk"
    )
    p.add_argument(
        "--chunk-ms", type=int, nargs="+", default=[10, 100], help="chunk lengths (default: 10 100)"
    )
    p.add_argument("--window", type=int, nargs="+", default=[32, 32], metavar="FRAMES")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--data-dir", type=Path, help=root_help)


def run(args: argparse.Namespace) -> int:
    command = args.speech_command
    if command is None:
        error(f"choose one of: {', '.join(WHAT)}")
        return EXIT_USAGE
    try:  # bad options are usage errors, found before any work
        config = _bench_config(args) if command == "bench" else None
        if command == "stream":
            config = _stream_config(args)
        if command == "features":
            _check_features(args)
        elif command == "band":
            _check_band(args)
    except ValueError as e:
        error(one_line(e))
        return EXIT_USAGE
    if command == "info":
        return _info(args)
    if command == "features":
        return _features(args)
    if command == "band":
        return _band(args)
    if command == "voices":
        print(json.dumps(speech.voice_check(speech.load_clips(args.data_dir)), indent=2))
        return 0
    assert config is not None
    if command == "stream":
        return _stream(args, config)
    return _bench(args, config)


def _info(args: argparse.Namespace) -> int:
    clips = speech.load_clips(args.data_dir)
    for c in clips:
        print(f"{c.voice:<9} {c.name:<44} {c.seconds:5.2f} s  {c.transcript}")
    total = sum(c.seconds for c in clips)
    print(f"{len(clips)} clips, {total:.1f} s ({total * 100:.0f} frames of 10 ms)")
    return 0


def _check_features(args: argparse.Namespace) -> None:
    if args.mels < 1:
        raise ValueError(f"--mels must be >= 1, got {args.mels}")
    if args.out is not None:
        out_file(args.out)


def _features(args: argparse.Namespace) -> int:
    for k, path in enumerate(args.wav):
        samples, rate = speech.read_wav(path)
        frames = speech.log_mel(samples, rate, n_mels=args.mels)
        print(f"{path}: {len(samples) / rate:.2f} s -> {tuple(frames.shape)} log-mel frames")
        if k == 0 and args.out:
            buf = io.BytesIO()
            np.save(buf, frames.numpy())
            write_bytes(args.out, buf.getvalue())
            print(f"saved {args.out}")
    return 0


def _check_band(args: argparse.Namespace) -> None:
    _window(args.window)
    out_file(args.out)


def _band(args: argparse.Namespace) -> int:
    from selfattention import viz

    clips = speech.load_clips(args.data_dir)
    chosen = [c for c in clips if c.name.endswith(args.clip)]
    if len(chosen) != 1:
        names = ", ".join(c.name for c in clips)
        raise ValueError(f"--clip {args.clip!r} must name exactly one clip; clips: {names}")
    fig = speech.band_figure(chosen[0], _window(args.window))
    print(viz.save(fig, args.out, dpi=90))
    return 0


def _bench_config(args: argparse.Namespace) -> speech.ScalingConfig:
    config = speech.ScalingConfig(
        minutes=tuple(args.minutes),
        window=_window(args.window),
        backends=tuple(args.backends),
        threads=args.threads,
        memory_budget_gib=args.budget_gib,
        heads=args.heads,
        head_dim=args.head_dim,
    )
    out_folder(args.out)
    return config


def _bench(args: argparse.Namespace, config: speech.ScalingConfig) -> int:
    rows = speech.scaling_table(
        config, root=args.data_dir, progress=lambda row: print(speech.format_row(row), flush=True)
    )
    write_text(args.out / "bench.json", json.dumps(rows, indent=2) + "\n")
    table = speech.markdown_table(rows)
    write_text(args.out / "bench.md", table + "\n")
    print(table)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


def _stream_config(args: argparse.Namespace) -> speech.StreamConfig:
    return speech.StreamConfig(
        chunk_ms=tuple(args.chunk_ms),
        window=_window(args.window),
        heads=args.heads,
        head_dim=args.head_dim,
        threads=args.threads,
    )


def _stream(args: argparse.Namespace, config: speech.StreamConfig) -> int:
    rows = speech.stream_table(config, root=args.data_dir)
    r = rows[0]
    print(
        f"{r['frames']} LibriVox frames ({r['seconds']:.1f} s), window {config.window}, "
        f"{config.heads} heads x {config.head_dim}, {config.threads} thread(s)"
    )
    print(speech.format_stream_table(rows))
    return 0
