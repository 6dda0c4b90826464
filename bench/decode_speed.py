"""Decode speed of :func:`shared.media.iter_frames` (frames per second) on generated ~20 s H.264 clips.

Run ``python -m bench.decode_speed [--seconds 20] [--fps 30]``; it prints a Markdown table. The clip has
moving shapes over a gradient so that the encoder produces realistic inter frames, and is written at a
source rate other than 25 fps by default so the resampling path is the one measured.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from shared.media import iter_frames, probe

SIZES = ((640, 360), (1280, 720))


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int) -> Path:
    """A clip whose content moves every frame (a static one would decode unrealistically fast)."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = ((xx * 255 // width + yy * 128 // height) % 256).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(round(seconds * fps))):
            image = np.repeat(np.roll(background, 3 * i, axis=1)[:, :, None], 3, axis=2)
            cx = int((0.5 + 0.4 * np.sin(i / 15)) * width)
            cy = int((0.5 + 0.3 * np.cos(i / 11)) * height)
            image[max(cy - 40, 0) : cy + 40, max(cx - 60, 0) : cx + 60] = (200, 60, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def measure(path: Path, repeat: int, **kwargs: object) -> tuple[int, float]:
    """Frames yielded and the best of ``repeat`` wall times (the least disturbed run on a shared machine)."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = sum(1 for _ in iter_frames(path, **kwargs))
        best = min(best, time.perf_counter() - start)
    return count, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=30, help="source frame rate of the generated clips")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest is reported")
    args = parser.parse_args()
    cases = [
        ("gray", {"gray": True}),
        ("rgb", {"gray": False}),
        ("gray 48x48", {"gray": True, "size": (48, 48)}),
        ("gray every=5", {"gray": True, "every": 5}),
    ]
    rows = ["| source | output | frames out | seconds | frames/s (25 fps grid) | x real time |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in SIZES:
            clip = make_clip(Path(tmp) / f"clip_{width}x{height}.mp4", width, height, args.seconds, args.fps)
            info = probe(clip)
            for label, kwargs in cases:
                count, seconds = measure(clip, args.repeat, **kwargs)
                grid_fps = info.n_frames / seconds  # 25 fps slots processed per second, skipped or not
                rows.append(
                    f"| {width}x{height} @{args.fps} | {label} | {count} | {seconds:.2f} | {grid_fps:.0f} | "
                    f"{info.duration_s / seconds:.1f} |"
                )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
