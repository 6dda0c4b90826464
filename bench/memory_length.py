"""Peak memory of the audio and speech-recognition preparation against video length (1, 5, 30 minutes).

    python -m bench.memory_length [--minutes 1,5,30] [--stages audio,text] [--clips-dir var/bench/clips]

Whole 1280x720 jobs of 30 minutes take too long to generate and run on a small machine, and the audio and
text modalities only read the audio track: so this measures their ``prepare`` (decode + high-pass + STFT
slices; decode + speech recognition) alone, each in a fresh child process, on clips made of a tiny video
(64x36) and the speech of the 1-minute benchmark clip repeated to the length asked for. Each row is the
child's peak resident memory (``ru_maxrss``) and its peak before ``prepare`` ran (imports, the speech
model loaded): what ``prepare`` itself adds must not grow with the length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
stage, video = sys.argv[1], Path(sys.argv[2])
from shared.modalities.base import get_modality
modality = get_modality(stage)
params = modality.default_params()
try:  # the process's ASR and decoding settings, as the pipeline passes them (older code read them itself)
    from shared.settings import get_settings as _settings
    params.update(modality.runtime_params(_settings()))
except (ImportError, AttributeError):
    pass
if stage == "audio":
    params.update(feature_mean=[0.0] * 129, feature_std=[1.0] * 129)
else:
    from shared.asr import assemble_whisper_model, words_for_audio
    from shared.settings import get_settings
    import numpy as np
    words_for_audio(np.zeros(16000, np.float32), source="whisper",
                    whisper_model_dir=assemble_whisper_model(get_settings().whisper_model_dir))  # model loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu = time.process_time()
windows = modality.prepare(video, subject=1, params=params)
print(json.dumps({"before_mib": before, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": time.process_time() - cpu, "windows": len(windows)}))
"""


def long_clip(clips_dir: Path, minutes: float, source: Path) -> Path:
    """A ``minutes``-long MP4: 64x36 grey video at 25 fps + ``source``'s audio repeated (AAC 16 kHz mono)."""
    path = clips_dir / f"audio_{minutes:g}min.mp4"
    if path.is_file():
        return path
    from shared.media import read_audio

    speech = read_audio(source)
    total = int(round(minutes * 60 * 16000))
    partial = path.with_suffix(".partial.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(partial), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 36, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        grey = np.full((36, 64, 3), 128, np.uint8)
        for _ in range(int(round(minutes * 60 * 25))):
            for packet in video.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        step = 1024
        for start in range(0, total, step):
            samples = speech[np.arange(start, min(start + step, total)) % speech.size].astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    partial.replace(path)
    return path


def measure(stage: str, video: Path, code: Path | None = None) -> dict[str, float]:
    from shared.settings import get_settings

    env = {**os.environ, "EMPATHY_LOG_LEVEL": "WARNING", "EMPATHY_ASR_SOURCE": "whisper",
           "EMPATHY_WHISPER_MODEL_DIR": str(Path(get_settings().whisper_model_dir).resolve())}
    root = (code or Path(__file__).resolve().parent.parent).resolve()
    env["PYTHONPATH"] = str(root)  # `python -c` puts its working directory first on sys.path: run it in `root`
    done = subprocess.run([sys.executable, "-c", CHILD, stage, str(video.resolve())], capture_output=True, text=True,
                          env=env, cwd=root, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{stage} on {video} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,5,30")
    parser.add_argument("--stages", default="audio,text")
    parser.add_argument("--clips-dir", type=Path, default=Path("var/bench/clips"))
    parser.add_argument("--code", type=Path, default=None,
                        help="source tree the children import shared/ from (default: this one; e.g. an older "
                             "checkout, for before/after numbers)")
    parser.add_argument("--source", type=Path, default=None,
                        help="clip whose audio is repeated (default: the 1-minute benchmark clip, made if missing)")
    args = parser.parse_args(argv)
    source = args.source
    if source is None:
        from bench.run import ensure_clip

        source = ensure_clip(args.clips_dir.resolve(), 60.0, (1280, 720))[0]
    lengths = [float(m) for m in args.minutes.split(",") if m.strip()]
    print("| stage | video | peak MiB before prepare | peak MiB | added by prepare | CPU s |\n|---|---|---|---|---|---|")
    for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
        for minutes in lengths:
            r = measure(stage, long_clip(args.clips_dir, minutes, source), args.code)
            print(f"| {stage} | {minutes:g} min | {r['before_mib']:.0f} | {r['peak_mib']:.0f} | "
                  f"{r['peak_mib'] - r['before_mib']:.0f} | {r['cpu_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
