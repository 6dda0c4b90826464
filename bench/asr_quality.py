"""Word error rate and CPU time of faster-whisper settings on recordings with known words.

    python -m bench.asr_quality [--data data/synthetic] [--extra VIDEO:TRANSCRIPT ...] [--configs a,b]

Each configuration (:data:`CONFIGS`) recognises every recording once, in this process, one after the other;
the table gives the word error rate over all recordings together (tokens as the lexicons see them,
:func:`shared.lexicon.tokenize`), and the CPU seconds (all threads) and wall seconds per minute of audio.
The model is loaded before timing. Recordings: the clips of an OMG-Empathy-layout folder that have a
transcript (one per story: the same story is the same speech for every listener), plus ``--extra`` pairs.
No real recorded speech with a transcript ships with the project or its installed packages; the synthetic
clips are espeak-ng speech, so these numbers compare settings on clean synthetic speech only.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.asr import (
    WhisperOptions,
    assemble_whisper_model,
    whisper_model,
    whisper_words_stream,
    word_error_rate,
)
from shared.data import discover, read_transcript
from shared.lexicon import tokenize
from shared.media import iter_audio
from shared.settings import get_settings

BASE = WhisperOptions(beam_size=1, vad=False, batch_size=1, fallback=True, threads=0, chunk_s=1e9)
CONFIGS: dict[str, WhisperOptions] = {
    "before: greedy, int8, whole track": BASE,
    "beam 5 (faster-whisper's default), int8, whole track": replace(BASE, beam_size=5),
    "+ VAD (faster-whisper's Silero)": replace(BASE, vad=True),
    "+ VAD + batched (8)": replace(BASE, vad=True, batch_size=8),
    "+ VAD + 120 s chunks, no temperature fallback (defaults)": WhisperOptions(),
    "defaults, 1 thread (with fallback, as measured)": replace(WhisperOptions(), threads=1, fallback=True),
    "before, 4 threads (CTranslate2's default, what the code did)": replace(BASE, threads=4),
    "120 s pieces, no VAD (with fallback, as measured)": replace(WhisperOptions(), vad=False, fallback=True),
    "defaults with temperature fallback": replace(WhisperOptions(), fallback=True),
}


def recordings(data: Path | None, extra: list[str]) -> list[tuple[str, Path, list[str]]]:
    out: list[tuple[str, Path, list[str]]] = []
    seen: set[int] = set()
    for clip in discover(data) if data else []:
        if clip.transcript is None or clip.story in seen:
            continue
        seen.add(clip.story)
        out.append((clip.video.name, clip.video, [t for w in read_transcript(clip.transcript) for t in tokenize(w.text)]))
    for pair in extra:
        video, _, transcript = pair.partition(":")
        out.append((Path(video).name, Path(video),
                    [t for w in read_transcript(Path(transcript)) for t in tokenize(w.text)]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=get_settings().data_dir)
    parser.add_argument("--extra", action="append", default=[], help="VIDEO:TRANSCRIPT_JSON (repeatable)")
    parser.add_argument("--configs", default="", help="comma list of configuration numbers (1-based; default all)")
    args = parser.parse_args(argv)
    items = recordings(args.data if args.data.is_dir() else None, args.extra)
    audio = {name: np.concatenate(list(iter_audio(video))) for name, video, _ in items}
    minutes = sum(a.size for a in audio.values()) / 16000 / 60
    model_dir = assemble_whisper_model(get_settings().whisper_model_dir)
    chosen = [int(c) for c in args.configs.split(",") if c.strip()] or range(1, len(CONFIGS) + 1)
    print(f"{len(items)} recordings, {minutes:.1f} min of audio, {sum(len(r) for _, _, r in items)} reference words")
    print("| settings | WER % | CPU s per audio minute | wall s per audio minute |\n|---|---|---|---|")
    for number in chosen:
        label, options = list(CONFIGS.items())[number - 1]
        whisper_model(model_dir, options)  # loaded before timing
        errors = 0.0
        total = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for name, _, reference in items:
            chunks = [a for a in np.array_split(audio[name], max(1, audio[name].size // 160000))]  # 10 s chunks
            words = whisper_words_stream(chunks, model_dir=model_dir, options=options)
            errors += word_error_rate(reference, [t for w in words for t in tokenize(w.text)]) * len(reference)
            total += len(reference)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"| {label} | {100 * errors / total:.1f} | {cpu / minutes:.2f} | {wall / minutes:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
