"""The floor of a real job: one decode of the video plus speech recognition alone, on one core.

    python -m bench.floor VIDEO            # prints one JSON line

Every real job must at least decode the video once (the vision modalities read every frame; grey, as
they use it) and recognise its speech (real listener videos come without a transcript). Nothing else a
job does is unavoidable, so the benchmark states each run's CPU time as a multiple of this. It runs pinned
to one core, with FFmpeg and CTranslate2 at one thread, so the number is CPU work, not a parallel speed-up;
the speech model is loaded before timing (a running worker has it loaded).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.floor VIDEO", file=sys.stderr)
        return 2
    video = Path(args[0])
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ["EMPATHY_DECODE_THREADS"] = "1"
    from shared.asr import WhisperOptions, assemble_whisper_model, whisper_model, whisper_words_stream
    from shared.media import iter_audio, iter_frames
    from shared.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    options = replace(WhisperOptions.from_settings(settings), threads=1)
    model_dir = assemble_whisper_model(settings.whisper_model_dir)
    whisper_model(model_dir, options)
    cpu, wall = time.process_time(), time.perf_counter()
    frames = sum(1 for _ in iter_frames(video, gray=True))
    decode_cpu, decode_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    words = whisper_words_stream(iter_audio(video), model_dir=model_dir, options=options)
    asr_cpu, asr_wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"frames": frames, "words": len(words), "decode_cpu_s": decode_cpu, "decode_wall_s": decode_wall,
                      "asr_cpu_s": asr_cpu, "asr_wall_s": asr_wall}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
