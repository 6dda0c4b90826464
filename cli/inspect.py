"""``empathy inspect VIDEO``: decode a video the way every modality will and summarise what it holds.

It is the first thing to run on a new data set (real or synthetic): it shows that frames and audio decode to
the 25 fps / 16 kHz grids the models expect, that the annotation CSV has one value per frame, and, per second,
how brightness, loudness and valence move together.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import LabelError, find_labels, read_labels
from shared.logs import add_log_format_argument, configure_logging

logger = logging.getLogger(__name__)

# Frames are shrunk before averaging: brightness needs no detail and a 2560x720 original decodes faster so.
_THUMB = (160, 90)


@dataclass
class Summary:
    """Per-frame and per-second measurements of one video (and its labels, when known)."""

    duration_s: float
    fps: int
    sample_rate: int
    brightness: np.ndarray  # per 25 fps frame, mean gray level 0..255
    audio: np.ndarray | None  # mono float32 samples, None without an audio stream
    labels: np.ndarray | None
    labels_path: Path | None

    def per_second(self, values: np.ndarray, rate: int) -> np.ndarray:
        seconds = int(np.ceil(values.size / rate))
        return np.array([values[i * rate : (i + 1) * rate].mean() for i in range(seconds)])

    def audio_rms_per_second(self) -> np.ndarray:
        if self.audio is None:
            return np.zeros(0)
        return np.sqrt(self.per_second(self.audio.astype(np.float64) ** 2, self.sample_rate))


def summarise(video: Path, labels_path: Path | None) -> Summary:
    """Decode ``video`` with :mod:`shared.media` and measure it."""
    from shared import media

    info = media.probe(video)
    fps = 25
    brightness = np.array([float(frame.mean()) for frame in media.iter_frames(video, gray=True, size=_THUMB)])
    audio = media.read_audio(video, sample_rate=16000) if info.has_audio else None
    labels = read_labels(labels_path) if labels_path is not None else None
    return Summary(
        duration_s=info.duration_s,
        fps=fps,
        sample_rate=16000,
        brightness=brightness,
        audio=audio,
        labels=labels,
        labels_path=labels_path,
    )


def report(video: Path, summary: Summary) -> str:
    """The text `empathy inspect` prints."""
    lines = [
        f"video        {video}",
        f"duration     {summary.duration_s:.3f} s",
        f"frames       {summary.brightness.size} at {summary.fps} fps",
    ]
    if summary.audio is None:
        lines.append("audio        none")
    else:
        lines.append(
            f"audio        {summary.audio.size} samples at {summary.sample_rate} Hz mono, "
            f"RMS {float(np.sqrt(np.mean(summary.audio.astype(np.float64) ** 2))):.4f}"
        )
    if summary.labels is not None:
        values = summary.labels
        match = "matches the frames" if values.size == summary.brightness.size else (
            f"MISMATCH: {summary.brightness.size} frames"
        )
        lines.append(
            f"labels       {summary.labels_path} ({values.size} values, {match})\n"
            f"valence      mean {values.mean():+.3f}  std {values.std():.3f}  "
            f"min {values.min():+.3f}  max {values.max():+.3f}"
        )
    else:
        lines.append("labels       none found (give --labels CSV)")
    brightness = summary.per_second(summary.brightness, summary.fps)
    rms = summary.audio_rms_per_second()
    valence = summary.per_second(summary.labels, summary.fps) if summary.labels is not None else np.zeros(0)
    lines.append("")
    lines.append("second  brightness  audio_rms  valence")
    for i in range(brightness.size):
        r = f"{rms[i]:9.4f}" if i < rms.size else "        -"
        v = f"{valence[i]:+7.3f}" if i < valence.size else "      -"
        lines.append(f"{i:6d}  {brightness[i]:10.1f}  {r}  {v}")
    return "\n".join(lines)


def plot(summary: Summary, out: Path, title: str) -> None:
    """Brightness, loudness and valence over time, one panel each, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 + (summary.labels is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.2 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    t = np.arange(summary.brightness.size) / summary.fps
    axes[0].plot(t, summary.brightness, lw=0.8)
    axes[0].set_ylabel("brightness")
    if summary.audio is not None:
        hop = summary.sample_rate // summary.fps
        n = summary.audio.size // hop
        frame_rms = np.sqrt(np.mean(summary.audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
        axes[1].plot(np.arange(n) / summary.fps, frame_rms, lw=0.8, color="tab:orange")
    axes[1].set_ylabel("audio RMS")
    if summary.labels is not None:
        axes[2].plot(np.arange(summary.labels.size) / summary.fps, summary.labels, lw=0.8, color="tab:green")
        axes[2].set_ylabel("valence")
        axes[2].set_ylim(-1.05, 1.05)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="empathy inspect",
        description="Decode a video at 25 fps / 16 kHz and summarise its frames, audio and valence labels.",
    )
    parser.add_argument("video", type=Path)
    parser.add_argument("--labels", type=Path, default=None, help="annotation CSV (default: found beside the video)")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of brightness, loudness and valence")
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    from shared.media import MediaError

    labels_path = args.labels if args.labels is not None else find_labels(args.video)
    try:
        summary = summarise(args.video, labels_path)
    except (MediaError, LabelError, FileNotFoundError) as exc:
        print(f"empathy inspect: {exc}")
        return 2
    print(report(args.video, summary))
    if args.plot is not None:
        plot(summary, args.plot, args.video.name)
        print(f"\nplot written to {args.plot}")
    return 0
