"""shared.data: clip names, label CSVs, transcripts, discovery in the real and the synthetic layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.data import (
    Clip,
    LabelError,
    TranscriptError,
    Word,
    check_labels,
    discover,
    parse_clip_name,
    read_labels,
    read_transcript,
    split_by_story,
    write_labels,
    write_transcript,
)
from shared.settings import load_settings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Subject_3_Story_7", (3, 7)),
        ("Subject_10_Story_1.mp4", (10, 1)),
        ("Subject_1_Story_2.csv", (1, 2)),
        (Path("/data/Training/Videos/Subject_4_Story_5.mp4"), (4, 5)),
    ],
)
def test_parse_clip_name_accepts_dataset_names(name: str | Path, expected: tuple[int, int]) -> None:
    assert parse_clip_name(name) == expected


@pytest.mark.parametrize(
    "name", ["subject_1_story_2", "Subject_1_Story_", "Subject_x_Story_2", "Subject_1_Story_2_extra", "clip.mp4", ""]
)
def test_parse_clip_name_rejects_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="not an OMG-Empathy clip name"):
        parse_clip_name(name)


def test_labels_round_trip_in_the_real_format(tmp_path: Path) -> None:
    values = np.array([0.0, -0.25, 0.5, 1.0, -1.0], dtype=np.float32)
    path = tmp_path / "sub" / "Subject_1_Story_1.csv"
    write_labels(path, values)
    lines = path.read_text().splitlines()
    assert lines[0] == "valence"
    assert len(lines) == 1 + values.size
    np.testing.assert_allclose(read_labels(path), values, atol=1e-6)
    assert read_labels(path).dtype == np.float32


def test_read_labels_accepts_windows_line_endings_and_blank_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"valence\r\n0.1\r\n-0.2\r\n\r\n")
    np.testing.assert_allclose(read_labels(path), [0.1, -0.2], atol=1e-6)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("arousal\n0.1\n", "header"),
        ("Valence\n0.1\n", "case- and space-sensitive"),  # the official scorer would fail on it
        (" valence\n0.1\n", "case- and space-sensitive"),
        ("valence\n", "no values"),
        ("valence\n0.1\nabc\n", "line 3"),
        ("valence\n0.1\nnan\n", "non-finite"),
    ],
)
def test_read_labels_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(LabelError, match=message):
        read_labels(path)


def test_read_labels_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="does not exist"):
        read_labels(tmp_path / "missing.csv")


def test_write_labels_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(LabelError):
        write_labels(tmp_path / "x.csv", [0.1, float("nan")])
    with pytest.raises(LabelError):
        write_labels(tmp_path / "x.csv", [])


def test_check_labels_requires_one_value_per_frame(tmp_path: Path) -> None:
    csv = tmp_path / "Subject_1_Story_1.csv"
    write_labels(csv, np.zeros(10))
    clip = Clip(subject=1, story=1, video=tmp_path / "Subject_1_Story_1.mp4", labels=csv, transcript=None)
    assert check_labels(clip, 10).size == 10
    with pytest.raises(LabelError, match="10 labels .* 11 frames"):
        check_labels(clip, 11)
    unlabelled = Clip(subject=1, story=1, video=clip.video, labels=None, transcript=None)
    with pytest.raises(LabelError, match="no annotation CSV"):
        check_labels(unlabelled, 10)


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discover_reads_the_real_release_layout(tmp_path: Path) -> None:
    for folder, story in (("Training", 1), ("Validation", 2), ("Test", 3)):
        _touch(tmp_path / folder / "Videos" / f"Subject_1_Story_{story}.mp4")
        if folder != "Test":  # the real test set ships without annotations
            _touch(tmp_path / folder / "Annotations" / f"Subject_1_Story_{story}.csv", "valence\n0\n")
    _touch(tmp_path / "Training" / "Videos" / "notes.mp4")  # not a clip name: skipped
    clips = discover(tmp_path)
    assert [(c.subject, c.story) for c in clips] == [(1, 1), (1, 2), (1, 3)]
    assert clips[0].labels == (tmp_path / "Training" / "Annotations" / "Subject_1_Story_1.csv").resolve()
    assert clips[1].labels == (tmp_path / "Validation" / "Annotations" / "Subject_1_Story_2.csv").resolve()
    assert clips[2].labels is None
    assert all(c.transcript is None for c in clips)


def test_discover_finds_labels_beside_the_video(tmp_path: Path) -> None:
    _touch(tmp_path / "Subject_2_Story_4.mp4")
    _touch(tmp_path / "Subject_2_Story_4.csv", "valence\n0\n")
    _touch(tmp_path / "Subject_2_Story_4.json", '{"words": []}')
    (clip,) = discover(tmp_path)
    assert clip.labels == (tmp_path / "Subject_2_Story_4.csv").resolve()
    assert clip.transcript == (tmp_path / "Subject_2_Story_4.json").resolve()


def test_discover_rejects_duplicates_and_missing_roots(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "Subject_1_Story_1.mp4")
    _touch(tmp_path / "b" / "Subject_1_Story_1.mp4")
    with pytest.raises(ValueError, match="appears twice"):
        discover(tmp_path)
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "nope")


def _clips(pairs: list[tuple[int, int]]) -> list[Clip]:
    return [Clip(subject=s, story=k, video=Path(f"Subject_{s}_Story_{k}.mp4"), labels=None, transcript=None) for s, k in pairs]


def test_split_by_story_holds_out_the_given_story() -> None:
    clips = _clips([(1, 1), (1, 2), (2, 2), (2, 3)])
    train, val = split_by_story(clips, val_story=2)
    assert [(c.subject, c.story) for c in val] == [(1, 2), (2, 2)]
    assert [(c.subject, c.story) for c in train] == [(1, 1), (2, 3)]
    train, val = split_by_story(clips, val_story=3)
    assert [(c.subject, c.story) for c in val] == [(2, 3)]
    _, val = split_by_story(clips, val_story=load_settings({"EMPATHY_VAL_STORY": "1"}).val_story)
    assert [(c.subject, c.story) for c in val] == [(1, 1)]


def test_transcript_round_trip(tmp_path: Path) -> None:
    words = [Word("happy", 0.5, 0.9), Word("day", 1.0, 1.25)]
    path = tmp_path / "t.json"
    write_transcript(path, words)
    assert read_transcript(path) == words
    assert json.loads(path.read_text())["words"][0] == {"word": "happy", "start": 0.5, "end": 0.9}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"items": []}', "'words' list"),
        ('{"words": [{"word": "a", "start": 1}]}', "needs 'word'"),
        ('{"words": [{"word": "a", "start": 2, "end": 1}]}', "before start"),
    ],
)
def test_read_transcript_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(TranscriptError, match=message):
        read_transcript(path)


def test_discover_reads_the_generated_set(synthetic_dataset: Path) -> None:
    clips = discover(synthetic_dataset)
    assert [(c.subject, c.story) for c in clips] == [(s, k) for s in (1, 2) for k in (1, 2, 3)]
    for clip in clips:
        assert clip.video == (synthetic_dataset / "Videos" / f"{clip.name}.mp4").resolve()
        assert clip.labels == (synthetic_dataset / "Annotations" / f"{clip.name}.csv").resolve()
        assert clip.transcript == (synthetic_dataset / "Transcripts" / f"{clip.name}.json").resolve()
        assert clip.video.stat().st_size > 10_000
    train, val = split_by_story(clips, val_story=2)
    assert {c.story for c in val} == {2} and len(val) == 2
    assert {c.story for c in train} == {1, 3} and len(train) == 4


def test_generated_csvs_have_the_real_format(synthetic_dataset: Path) -> None:
    for csv in sorted((synthetic_dataset / "Annotations").glob("*.csv")):
        lines = csv.read_text().splitlines()
        assert lines[0] == "valence", csv
        assert len(lines) == 1 + 25 * 20, csv
        values = np.array([float(line) for line in lines[1:]])
        assert values.min() >= -1.0 and values.max() <= 1.0
        assert values.std() > 0.05  # a curve, not a constant
