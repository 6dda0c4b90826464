"""The OMG-Empathy data layout: clip discovery, label CSVs, transcripts and the story split.

The real release keeps ``Subject_<s>_Story_<k>.mp4`` under ``Videos/`` and the matching ``.csv`` under
``Annotations/`` inside ``Training``/``Validation``/``Test`` folders; our synthetic set uses the same names
(plus ``Transcripts/``). Every consumer (training, evaluation, the generator's own tests) reads the data
through this module so that a naming or format mistake fails here, once, with a clear message.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

LABEL_HEADER = "valence"
_CLIP_NAME = re.compile(r"^Subject_(\d+)_Story_(\d+)$")
# Folders (relative to a video's folder) where the real and the synthetic layouts keep annotations/transcripts.
_LABEL_DIRS = (".", "../Annotations", "../annotations")
_TRANSCRIPT_DIRS = (".", "../Transcripts", "../transcripts")


class LabelError(ValueError):
    """A label CSV is missing, malformed, or does not match its video."""


class TranscriptError(ValueError):
    """A transcript JSON file is missing or malformed."""


@dataclass(frozen=True)
class Clip:
    """One listener (subject) hearing one story: the unit of training, evaluation and the story split."""

    subject: int
    story: int
    video: Path
    labels: Path | None
    transcript: Path | None

    @property
    def name(self) -> str:
        return clip_name(self.subject, self.story)


@dataclass(frozen=True)
class Word:
    """A spoken word with its time span in seconds from the start of the video."""

    text: str
    start: float
    end: float


def clip_name(subject: int, story: int) -> str:
    """The file stem the data set uses for a subject/story pair."""
    return f"Subject_{subject}_Story_{story}"


def parse_clip_name(name: str | Path) -> tuple[int, int]:
    """(subject, story) from a clip name or file name such as ``Subject_3_Story_7.mp4``."""
    stem = Path(name).name
    if "." in stem:
        stem = stem.split(".", 1)[0]
    match = _CLIP_NAME.match(stem)
    if match is None:
        raise ValueError(f"{str(name)!r} is not an OMG-Empathy clip name (expected 'Subject_<s>_Story_<k>')")
    return int(match.group(1)), int(match.group(2))


def _find_beside(video: Path, folders: Sequence[str], suffix: str) -> Path | None:
    for folder in folders:
        candidate = (video.parent / folder / (video.stem + suffix)).resolve()
        if candidate.is_file():
            return candidate
    return None


def find_labels(video: str | Path) -> Path | None:
    """The annotation CSV of a video in either layout (beside it or in a sibling ``Annotations`` folder)."""
    return _find_beside(Path(video), _LABEL_DIRS, ".csv")


def find_transcript(video: str | Path) -> Path | None:
    """The transcript JSON of a video in either layout (beside it or in a sibling ``Transcripts`` folder)."""
    return _find_beside(Path(video), _TRANSCRIPT_DIRS, ".json")


def discover(root: str | Path) -> list[Clip]:
    """Every ``Subject_<s>_Story_<k>.mp4`` under ``root`` (recursively), with its labels and transcript.

    Labels/transcripts are looked up beside the video and in sibling ``Annotations``/``Transcripts``
    folders; a clip without them gets ``None`` (test videos of the real release have no labels).
    Files whose names do not follow the convention are skipped with a warning rather than guessed at.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"data set folder {str(root_path)!r} does not exist")
    clips: dict[tuple[int, int], Clip] = {}
    for video in sorted(root_path.rglob("*.mp4")):
        try:
            subject, story = parse_clip_name(video.name)
        except ValueError:
            logger.warning("skipping video with a non OMG-Empathy name", extra={"path": str(video)})
            continue
        key = (subject, story)
        if key in clips:
            raise ValueError(
                f"{clip_name(subject, story)} appears twice under {str(root_path)!r}: "
                f"{clips[key].video} and {video.resolve()}"
            )
        clips[key] = Clip(
            subject=subject,
            story=story,
            video=video.resolve(),
            labels=find_labels(video),
            transcript=find_transcript(video),
        )
    return [clips[key] for key in sorted(clips)]


def read_labels(csv_path: str | Path) -> np.ndarray:
    """Per-frame valence from an annotation CSV (header ``valence``, one float per line) as float32."""
    path = Path(csv_path)
    if not path.is_file():
        raise LabelError(f"label file {str(path)!r} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise LabelError(f"label file {str(path)!r} is empty (expected a '{LABEL_HEADER}' header)")
    header = rows[0]
    if LABEL_HEADER not in header:  # exactly: the challenge's scorer reads the column "valence" by name
        near = [cell for cell in header if cell.strip().lower() == LABEL_HEADER]
        hint = (f"; {near[0]!r} is not '{LABEL_HEADER}': the official calculateCCC.py is case- and space-sensitive"
                if near else "")
        raise LabelError(f"label file {str(path)!r} has header {rows[0]!r}, expected a column named exactly "
                         f"'{LABEL_HEADER}'{hint}")
    column = header.index(LABEL_HEADER)
    values = np.empty(len(rows) - 1, dtype=np.float32)
    for i, row in enumerate(rows[1:]):
        try:
            values[i] = float(row[column])
        except (ValueError, IndexError) as exc:
            raise LabelError(f"label file {str(path)!r} line {i + 2}: {row!r} is not a number") from exc
    if values.size == 0:
        raise LabelError(f"label file {str(path)!r} has a header but no values")
    if not np.all(np.isfinite(values)):
        raise LabelError(f"label file {str(path)!r} contains non-finite values")
    return values


def write_labels(csv_path: str | Path, values: Iterable[float]) -> None:
    """Write a per-frame valence curve in the data set's CSV format (header ``valence``)."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise LabelError(f"labels must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise LabelError("labels contain NaN or infinite values")
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [LABEL_HEADER] + [f"{value:.6f}" for value in array]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check_labels(clip: Clip, n_frames: int) -> np.ndarray:
    """The clip's labels, after checking there is exactly one per 25 fps frame of its video."""
    if clip.labels is None:
        raise LabelError(f"{clip.name} has no annotation CSV (looked beside {clip.video})")
    labels = read_labels(clip.labels)
    if labels.size != n_frames:
        raise LabelError(
            f"{clip.name}: {labels.size} labels in {clip.labels} but the video has {n_frames} frames at 25 fps"
        )
    return labels


def split_by_story(clips: Iterable[Clip], val_story: int) -> tuple[list[Clip], list[Clip]]:
    """(train, validation): every clip of ``val_story`` validates, the rest trains (paper: Story 2;
    ``EMPATHY_VAL_STORY``, read by the training entry points)."""
    train: list[Clip] = []
    val: list[Clip] = []
    for clip in clips:
        (val if clip.story == val_story else train).append(clip)
    return train, val


def read_transcript(path: str | Path) -> list[Word]:
    """Words with times from our plain transcript JSON ``{"words": [{"word", "start", "end"}, ...]}``."""
    file = Path(path)
    if not file.is_file():
        raise TranscriptError(f"transcript {str(file)!r} does not exist")
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"transcript {str(file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("words"), list):
        raise TranscriptError(f"transcript {str(file)!r} must be an object with a 'words' list")
    words: list[Word] = []
    for i, item in enumerate(payload["words"]):
        try:
            word = Word(text=str(item["word"]), start=float(item["start"]), end=float(item["end"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TranscriptError(
                f"transcript {str(file)!r} word {i}: {item!r} needs 'word', numeric 'start' and 'end'"
            ) from exc
        if word.end < word.start:
            raise TranscriptError(f"transcript {str(file)!r} word {i}: end {word.end} is before start {word.start}")
        words.append(word)
    return words


def write_transcript(path: str | Path, words: Iterable[Word]) -> None:
    """Write words in the plain transcript JSON format :func:`read_transcript` reads."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    payload = {"words": [{"word": w.text, "start": round(w.start, 4), "end": round(w.end, 4)} for w in words]}
    file.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
