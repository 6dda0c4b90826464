"""Per-frame preprocessing cost of the face, landmarks and body modalities (milliseconds per 25 fps frame).

Run ``python -m bench.vision_preprocess [--seconds 10] [--repeat 2]``; it prints a Markdown table. Clips are
synthetic listeners (the astronaut's face on a drawn body) at 640x360 and 1280x720, so HOG, the shape
predictor and the crops work on a real face. Each number is the fastest of ``--repeat`` runs of the
modality's ``prepare`` (decode + tracking + crops + windows index), divided by the clip's frame count; the
decode-only row is the floor that :func:`shared.media.iter_frames` alone costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shared.media import iter_frames
from shared.modalities.base import get_modality
from synthetic import generate_clip

SIZES = ((640, 360), (1280, 720))
MODALITIES = ("face", "landmarks", "body")


def best_of(repeat: int, run: callable) -> tuple[float, object]:
    """Fastest wall time of ``repeat`` calls (the least disturbed run on a shared machine) and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the fastest is reported")
    args = parser.parse_args(argv)
    rows = ["| frame size | step | ms/frame | detections (HOG runs) | frames |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in SIZES:
            clip = generate_clip(Path(tmp) / f"{width}x{height}", 1, 1, duration_s=args.seconds, width=width,
                                 height=height, seed=0)
            seconds, count = best_of(args.repeat, lambda c=clip: sum(1 for _ in iter_frames(c.video, gray=True)))
            rows.append(f"| {width}x{height} | decode (grey) | {1000 * seconds / count:.2f} | - | {count} |")
            for name in MODALITIES:
                modality = get_modality(name)
                seconds, windows = best_of(args.repeat, lambda m=modality, c=clip: m.prepare(
                    c.video, subject=1, params={**m.default_params(), "predict_every": 1}))
                detections = windows.info.get("detections", "-")
                rows.append(f"| {width}x{height} | {name} | {1000 * seconds / windows.n_frames:.2f} | {detections} | "
                            f"{windows.n_frames} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
