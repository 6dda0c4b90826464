"""``empathy synth``: generate a synthetic OMG-Empathy-layout data set."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from shared.logs import add_log_format_argument, configure_logging
from shared.settings import get_settings

logger = logging.getLogger(__name__)


def _int_list(text: str) -> list[int]:
    """'1,2,5-7' -> [1, 2, 5, 6, 7]."""
    values: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                values.extend(range(lo, hi + 1))
            elif part:
                values.append(int(part))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers like '1,2,5-7'") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers >= 1")
    return values


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 640x360") from exc
    if width % 2 or height % 2 or width < 160 or height < 120:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be even and at least 160x120")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empathy synth",
        description="Generate Videos/, Annotations/ and Transcripts/ of a synthetic OMG-Empathy-layout data set.",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: EMPATHY_DATA_DIR)")
    parser.add_argument("--subjects", type=_int_list, default=[1, 2, 3, 4], help="listeners, e.g. 1,2,3-4")
    parser.add_argument("--stories", type=_int_list, default=[1, 2, 3], help="stories, e.g. 1-3")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per clip (whole 25 fps frames)")
    parser.add_argument("--layout", choices=("single", "omg"), default="single",
                        help="single: the listener alone; omg: the real recordings' side-by-side frame, storyteller "
                        "(another real face, larger, talking) left and listener right (default size 2560x720)")
    parser.add_argument("--size", type=_size, default=None,
                        help="frame size WxH (default 640x360; 2560x720 with --layout omg)")
    parser.add_argument("--seed", type=int, default=0, help="everything is deterministic for a seed")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (one clip each)")
    parser.add_argument("--preset", default=None, help="x264 preset (default: EMPATHY_SYNTH_X264_PRESET)")
    add_log_format_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    from synthetic.dataset import generate_dataset
    from synthetic.speech import SpeechError

    settings = get_settings()
    out = args.out if args.out is not None else settings.data_dir
    width, height = args.size or ((2560, 720) if args.layout == "omg" else (640, 360))
    started = time.perf_counter()
    try:
        clips = generate_dataset(
            out,
            subjects=tuple(args.subjects),
            stories=tuple(args.stories),
            duration_s=args.duration,
            width=width,
            height=height,
            seed=args.seed,
            workers=args.workers,
            preset=args.preset or settings.synth_x264_preset,
            layout=args.layout,
        )
    except (ValueError, SpeechError) as exc:
        print(f"empathy synth: {exc}")
        return 2
    seconds = time.perf_counter() - started
    clip_seconds = len(clips) * args.duration
    print(
        f"generated {len(clips)} clips ({clip_seconds:.0f} s of video at {width}x{height}) in {out} "
        f"in {seconds:.1f} s ({seconds / clip_seconds:.3f} s per clip-second)"
    )
    return 0
