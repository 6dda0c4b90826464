"""What a result says about each module beyond its curve: face coverage, the model used and its training data.

A module that reports ``ok`` with NaN on half of the frames misleads as much as one that draws a curve from
noise: :func:`face_coverage` gives, for the modalities that follow the listener's face, the share of frames
with a face and the spans without one (in the result document's ``modalities.<name>.quality.face`` and, for
spans over :data:`LOST_NOTE_S`, in the job's notes). :func:`model_description` says what each model is and
what it learnt from (``quality.model``), so a curve from models trained on the bundled synthetic data set is
never taken for one trained on real recordings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

AMBIGUITY_PREFIX = "listener ambiguous:"  # the job says it once (shared.pipeline.listener_notes)
LOST_NOTE_S = 1.0  # a face lost for longer than this is named in the job's notes
SYNTHETIC_WARNING = ("trained on the bundled SYNTHETIC data set (a warped photo and a synthetic voice): it checks the "
                     "plumbing, it does not read real listeners; real use needs training on licensed data "
                     "(empathy train)")


def missing_spans(missing: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs where ``missing`` is true, in order."""
    flags = np.asarray(missing, dtype=bool)
    if not flags.any():
        return []
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def face_coverage(missing: np.ndarray, fps: float) -> dict[str, Any]:
    """``{"coverage", "frames_with_face", "n_frames", "spans_without_s"}``: spans as [start_s, end_s] pairs."""
    flags = np.asarray(missing, dtype=bool)
    n = int(flags.size)
    spans = [[round(a / fps, 2), round(b / fps, 2)] for a, b in missing_spans(flags)]
    seen = int(n - flags.sum())
    return {"coverage": round(seen / n, 4) if n else 0.0, "frames_with_face": seen, "n_frames": n,
            "spans_without_s": spans}


def window_quality(windows: Any, fps: float) -> dict[str, Any]:
    """The figures a modality's windows carry about its input (face coverage for face-tracking modalities)."""
    info = getattr(windows, "info", {}) or {}
    if "faces_in_region" not in info:  # only the modalities that track the listener's face say this
        return {}
    return {"face": face_coverage(windows.missing, fps)}


def coverage_note(results: Mapping[str, Any]) -> str:
    """One sentence for the job when the face was lost for more than :data:`LOST_NOTE_S` (once per job).

    Face and landmarks follow the same face with trackers of their own; the first of them (canonical order)
    speaks for both, naming every module that measured the coverage.
    """
    tracked = [(name, r.quality["face"]) for name, r in results.items()
               if isinstance(getattr(r, "quality", None), dict) and r.quality.get("face")]
    if not tracked:
        return ""
    names = ", ".join(name for name, _ in tracked)
    face = tracked[0][1]
    long_spans = [s for s in face["spans_without_s"] if s[1] - s[0] > LOST_NOTE_S]
    if not long_spans:
        return ""
    spans = ", ".join(f"{a:g}-{b:g} s" for a, b in long_spans[:5]) + (" ..." if len(long_spans) > 5 else "")
    return (f"face lost for more than {LOST_NOTE_S:g} s ({names}): a face on {face['frames_with_face']} of "
            f"{face['n_frames']} frames ({face['coverage']:.0%}); no face {spans}: those modules have no value "
            "there")


def model_description(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What a model is and what it was trained on, from its metadata (``quality.model`` in the result)."""
    trained_on = str(metadata.get("trained_on") or "")
    if not trained_on:
        source = str(metadata.get("dataset_source") or "")
        if source == "synthetic" or metadata.get("bundled"):
            trained_on = SYNTHETIC_WARNING
        elif metadata.get("dataset_hash"):
            trained_on = f"the data set with hash {metadata['dataset_hash']} (empathy train)"
        else:
            trained_on = "unknown (no training record in the model's metadata)"
    return {"version": metadata.get("version"), "trained_on": trained_on,
            "zero_training": bool(metadata.get("zero_training", False))}


def models_note(results: Mapping[str, Any]) -> str:
    """One sentence naming the modules whose models learnt the synthetic world (empty when none did)."""
    synthetic = [name for name, r in results.items()
                 if (getattr(r, "quality", None) or {}).get("model", {}).get("trained_on") == SYNTHETIC_WARNING]
    if not synthetic:
        return ""
    return (f"{', '.join(synthetic)}: models {SYNTHETIC_WARNING}; for a reading of real faces without training: "
            "EMPATHY_MODALITY_PLUGINS=shared.modalities.zero_training (the expression modality, README)")


def unique_notes(notes: Sequence[str]) -> list[str]:
    """Each sentence once, in order."""
    out: list[str] = []
    for note in notes:
        if note and note not in out:
            out.append(note)
    return out
