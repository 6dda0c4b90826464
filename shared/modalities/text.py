"""Language modality: words with times -> 11-dim lexicon vectors -> windows of the last 100 words.

Following the paper (Sec. II-B): every recognised word becomes an 11-dimensional vector from two emotion
lexicons (:mod:`shared.lexicon`); after each word the model sees the window of the last 100 words (left
padded with zeros at the start of a video) and predicts one valence. For training, a word's target is the
mean valence over the frames it is spoken in (``Windows.label_spans``). On the frame grid each frame takes
the prediction made after the last word heard so far; frames before the first word has ended take the
first prediction (the earliest estimate there is), so no frame is left undefined. A video without any
recognised word is all missing (NaN), and fusion weighs the module out.

The listener's identity enters as ``subject = subject_index(subject, params["known_subjects"])``: a new
listener (or none given) gets index 0, the "unknown listener" row the model trains by subject dropout.
Words come from :mod:`shared.asr` (transcript file, faster-whisper or pocketsphinx): ``asr_source``,
``whisper_model_dir`` and ``whisper_options`` in the parameters, put there from ``EMPATHY_ASR_SOURCE`` and the
``EMPATHY_WHISPER_*`` settings by :meth:`TextModality.runtime_params` (absent: the documented defaults).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.data import Word
from shared.lexicon import file_sha256, load_lexicons, tokenize
from shared.modalities.base import Modality, Windows, subject_index
from shared.settings import Settings

logger = logging.getLogger(__name__)

WORDS_INPUT = "words"
SUBJECT_INPUT = "subject"


def settings_params(s: Settings) -> dict[str, Any]:
    """The preprocessing a text model takes from the settings at training time (and records in its metadata):
    rates and the lexicon choice (``EMPATHY_LEXICONS``, ``EMPATHY_LEXICON_MISSING`` and the two paths)."""
    return {
        "fps": s.fps,
        "sample_rate": s.sample_rate,
        "lexicons": s.lexicons,
        "lexicon_missing": s.lexicon_missing,
        "warriner_csv": s.warriner_csv,
        "depechemood_tsv": s.depechemood_tsv,
    }


def default_params() -> dict[str, Any]:
    """The paper's preprocessing with the documented default lexicons (the trainer adds the settings' choice)."""
    return {**settings_params(Settings()), "window_words": 100, "known_subjects": []}


def tokens_with_times(words: Sequence[Word]) -> list[Word]:
    """One entry per lexicon token: a recognised item holding several tokens ("well-being") shares its
    time span evenly among them; an item with none (punctuation) is dropped."""
    out: list[Word] = []
    for word in sorted(words, key=lambda w: (w.start, w.end)):
        tokens = tokenize(word.text)
        step = (word.end - word.start) / max(len(tokens), 1)
        for k, token in enumerate(tokens):
            out.append(Word(token, word.start + k * step, word.start + (k + 1) * step))
    return out


def _lexicon_set(params: dict[str, Any]) -> Any:
    return load_lexicons(str(params["lexicons"]), warriner_csv=params.get("warriner_csv") or None,
                         depechemood_tsv=params.get("depechemood_tsv") or None,
                         missing=str(params["lexicon_missing"]))


def word_windows(vectors: np.ndarray, length: int) -> np.ndarray:
    """(n_words, length, dims): for word i, the vectors of words i-length+1 .. i, zeros before the first."""
    n, dims = vectors.shape
    padded = np.concatenate([np.zeros((length - 1, dims), np.float32), vectors.astype(np.float32)])
    view = np.lib.stride_tricks.sliding_window_view(padded, length, axis=0)  # (n, dims, length)
    return np.ascontiguousarray(view.transpose(0, 2, 1))[:n]


def prepare_words(words: Sequence[Word], n_frames: int, subject: int, params: dict[str, Any] | None = None) -> Windows:
    """THE preparation of a word sequence, for training and inference alike."""
    p = {**default_params(), **(params or {})}
    lexset = _lexicon_set(p)
    tokens = tokens_with_times(words)
    dims = len(lexset.dims)
    length = int(p["window_words"])
    fps = float(p["fps"])
    if not tokens:
        return Windows(inputs={WORDS_INPUT: np.zeros((0, length, dims), np.float32),
                               SUBJECT_INPUT: np.zeros(0, np.int32)},
                       label_frames=np.zeros(0, np.int64), n_frames=n_frames,
                       missing=np.ones(n_frames, dtype=bool), label_spans=np.zeros((0, 2), np.int64))
    vectors = lexset.vectors([t.text for t in tokens])
    starts = np.array([min(max(int(math.floor(t.start * fps)), 0), n_frames - 1) for t in tokens], np.int64)
    ends = np.array([int(math.ceil(t.end * fps)) for t in tokens], np.int64)
    ends = np.clip(np.maximum(ends, starts + 1), 1, n_frames)
    index = subject_index(subject, p.get("known_subjects") or [])
    return Windows(
        inputs={WORDS_INPUT: word_windows(vectors, length), SUBJECT_INPUT: np.full(len(tokens), index, np.int32)},
        label_frames=ends - 1,
        n_frames=n_frames,
        label_spans=np.stack([starts, ends], axis=1),
        info={"tokens": [t.text for t in tokens]},
    )


def check_lexicon_files(params: dict[str, Any]) -> None:
    """A model trained with user-provided lexicon files must see the same files at inference."""
    for key, digest in (params.get("lexicon_sha256") or {}).items():
        path = params.get(key)
        if not path or not Path(path).is_file():
            raise FileNotFoundError(f"this text model was trained with lexicon file {key}={path!r}, which is missing")
        if file_sha256(path) != digest:
            raise ValueError(f"lexicon file {path!r} differs from the one this text model was trained with")


def recognise_words(video: Path, transcript: Path | None, p: dict[str, Any]) -> tuple[list, str, int]:
    """The words of ``video`` with their times, where they came from, and its frame count: the one way every
    word-reading modality gets them (``asr_source``: a transcript, Whisper or pocketsphinx)."""
    from shared.asr import resolve_source, words_for_audio
    from shared.media import iter_audio, probe

    defaults = Settings()
    model_dir = p.get("whisper_model_dir") or defaults.whisper_model_dir
    source = resolve_source(str(p.get("asr_source") or defaults.asr_source), transcript=transcript,
                            whisper_model_dir=model_dir)
    # ASR reads the audio as it streams (10 s chunks, recognised EMPATHY_ASR_CHUNK_S at a time): flat memory
    audio = None if source == "transcript" else iter_audio(video, sample_rate=int(p["sample_rate"]))
    words = words_for_audio(audio, source=source, transcript=transcript, sample_rate=int(p["sample_rate"]),
                            whisper_model_dir=model_dir, whisper_options=p.get("whisper_options"))
    return words, source, probe(video, fps=float(p["fps"])).n_frames


class TextModality(Modality):
    """The language modality: words (transcript or ASR) -> lexicon-vector windows -> per-frame valence."""

    name = "text"

    def default_params(self) -> dict[str, Any]:
        return default_params()

    def settings_params(self, settings: Settings) -> dict[str, Any]:
        return settings_params(settings)

    def runtime_params(self, settings: Settings) -> dict[str, Any]:
        """Where words come from (``EMPATHY_ASR_SOURCE``) and how Whisper runs (``EMPATHY_WHISPER_*``)."""
        from shared.asr import WhisperOptions

        return {"asr_source": settings.asr_source, "whisper_model_dir": str(settings.whisper_model_dir),
                "whisper_options": WhisperOptions.from_settings(settings)}

    def prepare(self, video: Path, *, subject: int, transcript: Path | None = None,
                params: dict[str, Any] | None = None) -> Windows:
        p = {**default_params(), **(params or {})}
        check_lexicon_files(p)
        words, source, n_frames = recognise_words(video, transcript, p)
        windows = prepare_words(words, n_frames, subject, p)
        windows.info["asr_source"] = source
        return windows

    def fit_params(self, windows: list[Windows], params: dict[str, Any]) -> dict[str, Any]:
        """Record a fingerprint of user-provided lexicon files, so inference can insist on the same ones."""
        digests = {key: file_sha256(params[key]) for key in ("warriner_csv", "depechemood_tsv")
                   if params.get("lexicons") == "warriner+depechemood" and params.get(key)}
        return {**params, "lexicon_sha256": digests}

    def to_frames(self, predictions: np.ndarray, windows: Windows) -> np.ndarray:
        """Frame t gets the prediction made after the last word whose span ended at or before t."""
        out = np.full(windows.n_frames, np.nan)
        if len(windows) == 0:
            return out
        predictions = np.asarray(predictions, dtype=np.float64).reshape(len(windows))
        order = np.argsort(windows.label_frames, kind="stable")
        heard_at = np.asarray(windows.label_frames)[order]
        latest = np.searchsorted(heard_at, np.arange(windows.n_frames), side="right") - 1
        return predictions[order][np.clip(latest, 0, len(order) - 1)]


MODALITY = TextModality()
