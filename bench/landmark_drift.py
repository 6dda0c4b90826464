"""68-point error of the landmark tracker on real photos moved like a listener's head (``docs/architecture.md``).

``python -m bench.landmark_drift --faces DIR`` reads dlib's ``examples/faces`` (the photos and their 68-point
``training_with_face_landmarks.xml`` / ``testing_with_face_landmarks.xml``, from dlib's source repository), makes
a clip of each annotated face (the photo enlarged so the face is ~:data:`FACE_PX` px, then moved and zoomed
frame by frame, the annotated points moved with it) and prints, per face, the median and 90th-percentile error
of the tracker (``FaceTracker(landmarks=True)``, the landmarks modality's) and of a fresh detection + fit on
every frame, as a fraction of the eye distance (outer corners, points 36 and 45).

:func:`moving_clip` is what the unit test uses on the astronaut photo (scikit-image).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

FACE_PX = 120  # face box side in the clips
N_FRAMES = 100
LEFT_EYE, RIGHT_EYE = 36, 45  # outer eye corners (iBUG 68-point scheme)


def read_annotations(xml_path: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image, box (x0, y0, x1, y1), points (68, 2)) for every box with 68 parts in a dlib imglab XML."""
    found = []
    for image in ET.parse(xml_path).getroot().iter("image"):
        for box in image.iter("box"):
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            if len(parts) != 68:
                continue
            left, top = float(box.get("left")), float(box.get("top"))
            rect = np.array([left, top, left + float(box.get("width")), top + float(box.get("height"))])
            points = np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
            found.append((xml_path.parent / image.get("file"), rect, points))
    return found


def face_patch(grey: np.ndarray, box: np.ndarray, points: np.ndarray, margin: float = 0.6
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The annotated face alone: its box grown by ``margin`` a side (group photos hold other faces, which a
    tracker may rightly follow instead), with box and points in the patch's pixels."""
    size = box[2] - box[0]
    x0, y0 = (max(0, int(v - margin * size)) for v in box[:2])
    x1, y1 = int(min(grey.shape[1], box[2] + margin * size)), int(min(grey.shape[0], box[3] + margin * size))
    offset = np.array([x0, y0], dtype=np.float64)
    return np.ascontiguousarray(grey[y0:y1, x0:x1]), box - np.tile(offset, 2), points - offset


def moving_clip(grey: np.ndarray, box: np.ndarray, points: np.ndarray, *, n_frames: int = N_FRAMES,
                size: tuple[int, int] = (480, 360), face_px: int = FACE_PX,
                shift_px: float = 40.0, zoom: float = 0.12) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, true points) pairs: the face enlarged to ``face_px``, then moved (+-``shift_px``) and zoomed
    (+-``zoom``) smoothly, a head turning and leaning; the points follow the same affine map."""
    width, height = size
    base = face_px / max(box[2] - box[0], 1.0)
    centre = (box[:2] + box[2:]) / 2.0
    for index in range(n_frames):
        phase = 2 * np.pi * index / n_frames
        scale = base * (1.0 + zoom * np.sin(2 * phase))
        dx, dy = shift_px * np.sin(phase), 0.5 * shift_px * np.sin(3 * phase)
        matrix = np.array([[scale, 0.0, width / 2 + dx - scale * centre[0]],
                           [0.0, scale, height / 2 + dy - scale * centre[1]]])
        frame = cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=128)
        yield frame, points @ matrix[:, :2].T + matrix[:, 2]


def error(found: np.ndarray | None, truth: np.ndarray) -> float:
    """Mean point distance over the eye distance (NaN when nothing was found)."""
    if found is None:
        return float("nan")
    eyes = float(np.linalg.norm(truth[LEFT_EYE] - truth[RIGHT_EYE]))
    return float(np.linalg.norm(found - truth, axis=1).mean() / max(eyes, 1e-6))


def errors(frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-frame error of the tracker and of a fresh detection + fit on every frame."""
    from shared.face_tracking import FaceTracker, detect_faces, fit_landmarks

    tracker = FaceTracker(landmarks=True)
    tracked, fresh = [], []
    for frame, truth in frames:
        tracked.append(error(tracker.update(frame).landmarks, truth))
        boxes = detect_faces(frame)
        fresh.append(error(fit_landmarks(frame, boxes[0]) if len(boxes) else None, truth))
    return {"tracker": np.array(tracked), "fresh": np.array(fresh), "detections": np.array([tracker.detections])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.landmark_drift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, required=True, help="dlib's examples/faces folder")
    parser.add_argument("--min-face", type=float, default=40.0, help="skip annotated faces smaller than this (px)")
    args = parser.parse_args(argv)
    rows = []
    for xml_name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for image, box, points in read_annotations(args.faces / xml_name):
            if box[2] - box[0] < args.min_face or not image.is_file():
                continue
            patch, box, points = face_patch(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), box, points)
            result = errors(list(moving_clip(patch, box, points)))
            rows.append((image.name, int(box[2] - box[0]), result))
    print("| photo | face px | tracker median | tracker p90 | fresh median | fresh p90 | HOG runs (tracker) |")
    print("|---|---|---|---|---|---|---|")
    for name, face, r in rows:
        t, f = r["tracker"], r["fresh"]
        print(f"| {name} | {face} | {np.nanmedian(t):.3f} | {np.nanpercentile(t, 90):.3f} | {np.nanmedian(f):.3f} | "
              f"{np.nanpercentile(f, 90):.3f} | {int(r['detections'][0])} |")
    every_t = np.concatenate([r["tracker"] for *_, r in rows])
    every_f = np.concatenate([r["fresh"] for *_, r in rows])
    print(f"| all {len(rows)} faces | | {np.nanmedian(every_t):.3f} | {np.nanpercentile(every_t, 90):.3f} | "
          f"{np.nanmedian(every_f):.3f} | {np.nanpercentile(every_f, 90):.3f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
