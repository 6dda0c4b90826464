"""``python -m bench.training``: how fast each model trains and predicts, with TensorFlow's oneDNN on and off.

    python -m bench.training                              # five models, bundled and paper size, oneDNN on and off
    python -m bench.training --modalities face,body --sizes paper
    python -m bench.training --quick --out -              # short timings, printed only

For each modality and size -- ``bundled`` (the reduced architecture and preprocessing of
:data:`training.bootstrap.SMALL_TRAINING`) and ``paper`` (the builders' defaults, :mod:`training.models`) --
one child process per oneDNN setting (``TF_ENABLE_ONEDNN_OPTS`` is read once, when TensorFlow is imported,
so it is set in the child's environment; the two settings alternate in order so that a change in the shared
machine's load does not fall on one of them only) measures, on real windows:

* **training windows/s**: the modality's own ``prepare`` on a cached synthetic 1280x720 clip (the 8 s clip
  ``empathy bench`` warms up with), its windows repeated to make an epoch; the model built, compiled and fit
  as :func:`training.trainer.train` does (Adam, loss 1 - CCC, lazy vision windows through
  :class:`training.batches.WindowBatches`, arrays through ``model.fit``), at the registry's batch size or the
  bundled one; a warm-up epoch of two batches (tracing), then a timed epoch stopped after
  ``--train-seconds`` (windows counted batch by batch). Targets are random: speed does not depend on them.
* **prediction windows/s**: the model exported as the trainer exports it and run as ``empathy analyze`` runs
  it (:class:`serving.client.LocalPredictor`, ``EMPATHY_BATCH_SIZE`` capped by ``EMPATHY_MAX_BATCH_MB``),
  one warm-up batch, then batches until ``--predict-seconds``.

Then it projects one training epoch on OMG-Empathy's training split (:class:`Corpus`: every assumption is
printed with the table), every window and every third (``train_stride`` 3, vision models), plus the
validation pass the trainer runs after each epoch. The tables are printed and written into ``--out``
(``docs/benchmarks.md``) under their own block, with the machine and its load average before and after each
measurement: the machine is shared, and other work slows every number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import Machine, describe
from bench.report import write_block
from shared.logs import add_log_format_argument, configure_logging
from shared.settings import MODALITIES, get_settings

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SIZES = ("bundled", "paper")
ONEDNN = ("on", "off")
BLOCK_KEY = "training throughput"
CLIP_SECONDS = 8.0  # the clip `empathy bench` warms up with (cached under --clips-dir)
CLIP_SIZE = (1280, 720)
STRIDE = 3  # train_stride of the projection's last column (vision models)
ARRAY_BYTES = 256 * 2**20  # array inputs (audio, text) of one timed epoch are materialised: at most this much
# The registry's batch for the paper-size body model is 128 windows of 16x128x128 through a 3D ResNet-18:
# one step takes minutes on 2 cores and GiBs of activations. Its windows/s is measured at this batch instead.
TIMING_BATCH = {("body", "paper"): 16}
PREAMBLE = ["# Benchmarks", ""]


@dataclass(frozen=True)
class Corpus:
    """OMG-Empathy's training and validation splits, as assumed for the projection (stated in the table)."""

    train_videos: int = 40
    val_videos: int = 10
    video_s: float = 300.0  # ~5 minutes each
    fps: int = 25
    words_per_s: float = 2.5  # recognised words per second of a story (text: one window per word)

    def frames(self, videos: int) -> int:
        return int(round(videos * self.video_s * self.fps))

    def windows(self, modality: str, params: dict[str, Any], videos: int) -> int | None:
        """Windows of ``videos`` videos for ``modality`` (preprocessing ``params``); None for an unknown one."""
        per_video = int(round(self.video_s * self.fps))
        if modality in ("face", "landmarks"):  # one window per frame
            return videos * per_video
        if modality == "body":  # one window per kept frame (every ``downsample``-th)
            return videos * per_video // int(params["downsample"])
        if modality == "audio":  # 8 s slices with 20 % overlap: a new slice every 6.4 s
            from shared.modalities.audio import slice_geometry
            from shared.windows import window_starts

            return videos * len(window_starts(per_video, *slice_geometry(params)))
        if modality == "text":
            return int(round(videos * self.video_s * self.words_per_s))
        return None

    def assumptions(self, params: dict[str, dict[str, Any]]) -> list[str]:
        lines = [f"OMG-Empathy's training split taken as {self.train_videos} videos x {self.video_s / 60:g} min = "
                 f"{self.frames(self.train_videos):,} frames at {self.fps} fps; its validation split (predicted "
                 f"after every epoch, every window) as {self.val_videos} videos = "
                 f"{self.frames(self.val_videos):,} frames",
                 "face and landmarks: one window per frame; text: one window per recognised word at "
                 f"{self.words_per_s:g} words/s (an assumption: a story's speech rate)"]
        if "body" in params:
            lines.append(f"body: one window per {params['body']['downsample']}th frame")
        if "audio" in params:
            from shared.modalities.audio import slice_geometry

            length, stride = slice_geometry(params["audio"])
            lines.append(f"audio: {params['audio']['slice_s']:g} s slices with {params['audio']['slice_overlap']:.0%} "
                         f"overlap, a new slice every {stride / self.fps:g} s ({length} frames, {stride} apart, "
                         "the last one ending at the video's end)")
        return lines


@dataclass
class Measurement:
    """One child process: one modality at one size with oneDNN on or off."""

    modality: str
    size: str
    onednn: str  # requested: TF_ENABLE_ONEDNN_OPTS=1 ("on") or 0 ("off")
    onednn_active: bool | None  # what TensorFlow reported in the child (None: could not ask)
    batch: int  # training batch
    predict_batch: int  # windows per model call at prediction
    parameters: int
    inputs: str  # per-window input shapes
    clip_windows: int  # windows the clip gave (repeated to make the epoch)
    train_windows: int
    train_s: float
    train_cpu_s: float
    predict_windows: int
    predict_s: float
    predict_cpu_s: float
    params: dict[str, Any] = field(default_factory=dict)  # preprocessing (for the projection)
    load_before: float = 0.0  # 1-minute load average before and after the child
    load_after: float = 0.0
    child_s: float = 0.0  # the whole child: imports, preparation, export included
    stages: dict[str, float] = field(default_factory=dict)  # seconds of each step of the child

    @property
    def train_wps(self) -> float:
        return self.train_windows / self.train_s

    @property
    def predict_wps(self) -> float:
        return self.predict_windows / self.predict_s

    @property
    def train_per_cpu_s(self) -> float:
        return self.train_windows / self.train_cpu_s if self.train_cpu_s > 0 else 0.0

    @property
    def predict_per_cpu_s(self) -> float:
        return self.predict_windows / self.predict_cpu_s if self.predict_cpu_s > 0 else 0.0


# ------------------------------------------------------------------------------------------ child side
def size_options(modality: str, size: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(builder hparams, preprocessing params, training batch) of ``modality`` at ``size``."""
    from training.bootstrap import SMALL_TRAINING
    from training.models import get_spec

    spec = get_spec(modality)
    if size == "paper":
        hparams: dict[str, Any] = {}
        params: dict[str, Any] = {}
        batch = spec.batch_size
    else:
        small = SMALL_TRAINING[modality]
        hparams, params = dict(small.get("hparams", {})), dict(small.get("params", {}))
        batch = int(small.get("batch_size", spec.batch_size))
    return hparams, params, TIMING_BATCH.get((modality, size), batch)


def repeat_rows(value: Any, n: int) -> Any:
    """``n`` windows cycling through ``value``'s: lazy windows stay lazy (their index repeated), arrays are copied."""
    from shared.modalities.frame_windows import LazyWindows

    rows = np.arange(n) % len(value)
    if isinstance(value, LazyWindows):
        return LazyWindows(value.features, value.index[rows], mean=value.mean, std=value.std)
    if isinstance(value, np.ndarray):
        return value[rows]
    raise TypeError(f"cannot repeat windows of type {type(value).__name__} (arrays and LazyWindows only)")


def prepared_windows(modality_name: str, params: dict[str, Any], clip: Path, transcript: Path
                     ) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(inputs, fitted params, windows) of the clip, prepared as the trainer prepares a training clip."""
    from shared.modalities.base import get_modality

    settings = get_settings()
    modality = get_modality(modality_name)
    runtime = modality.runtime_params(settings)
    p = {**modality.default_params(), **modality.settings_params(settings), **params, "known_subjects": [1],
         **runtime}
    windows = modality.prepare(clip, subject=1, transcript=transcript, params=p)
    if len(windows) == 0:
        raise RuntimeError(f"{modality_name}: the clip {clip} gave no window")
    p = modality.fit_params([windows], p)
    windows = modality.apply_fitted(windows, p)
    recorded = {k: v for k, v in p.items() if k not in runtime and not isinstance(v, np.ndarray)}
    return dict(windows.inputs), recorded, len(windows)


class _EpochTimer:
    """Keras callback (built lazily: keras is imported in the child only) timing batches until a time limit."""

    @staticmethod
    def make(limit_s: float) -> Any:
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.batches = 0
                self.started = self.cpu_started = 0.0
                self.ended = self.cpu_ended = 0.0

            def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
                if self.batches == 0:
                    self.started, self.cpu_started = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                self.batches += 1
                self.ended, self.cpu_ended = time.perf_counter(), time.process_time()
                if self.ended - self.started >= limit_s:
                    self.model.stop_training = True

        return Timer()


def onednn_active() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN kernels (a private TensorFlow call; None if it moved)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def measure(modality: str, size: str, *, clip: Path, transcript: Path, train_seconds: float,
            predict_seconds: float) -> dict[str, Any]:
    """Everything one child measures (TensorFlow imported here, with the environment's oneDNN setting)."""
    import keras

    from serving.client import LocalPredictor
    from training.batches import WindowBatches, is_lazy
    from training.models import get_spec
    from training.models.common import ccc_loss

    settings = get_settings()
    spec = get_spec(modality)
    hparams, params, batch = size_options(modality, size)
    stages: dict[str, float] = {}
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name], mark = round(now - mark, 2), now

    inputs, recorded, clip_windows = prepared_windows(modality, params, clip, transcript)
    stage("prepare")
    keras.utils.set_random_seed(0)
    shapes = {name: tuple(value.shape[1:]) for name, value in inputs.items()}
    model = spec.build(shapes, 1, **{**spec.default_hparams(), **hparams})
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate), loss=ccc_loss)
    out_shape = tuple(model.output_shape[1:])
    rng = np.random.default_rng(0)

    lazy = is_lazy(inputs)
    per_window = sum(int(np.prod(s, dtype=np.int64)) * 4 for s in shapes.values())
    # an epoch long enough for the time limit at any speed: lazy windows cost nothing until a batch is built
    n = 1_000_000 if lazy else max(2, ARRAY_BYTES // per_window // batch) * batch
    n = n // batch * batch

    def fit(count: int, callbacks: list[Any]) -> None:
        x = {name: repeat_rows(value, count) for name, value in inputs.items()}
        y = rng.normal(0.0, 0.3, (count, *out_shape)).astype(np.float32)
        if lazy:
            model.fit(WindowBatches(x, y, batch, seed=0), epochs=1, verbose=0, callbacks=callbacks)
        else:
            model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=callbacks)

    stage("build")
    fit(batch, [])  # warm-up epoch of one batch: tracing, first allocations
    stage("warm-up")
    timer = _EpochTimer.make(train_seconds)
    fit(n, [timer])
    stage("train")
    train_windows = timer.batches * batch
    train_s, train_cpu_s = timer.ended - timer.started, timer.cpu_ended - timer.cpu_started

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        stage("export")
        predictor = LocalPredictor(tmp, batch_size=settings.batch_size, max_batch_mb=settings.max_batch_mb)
        # what predict_batched's slices come to: EMPATHY_BATCH_SIZE windows, fewer under EMPATHY_MAX_BATCH_MB
        predict_batch = max(1, min(settings.batch_size, int(settings.max_batch_mb * 2**20) // per_window))
        chunk = {name: repeat_rows(value, predict_batch) for name, value in inputs.items()}
        predictor.predict(chunk)  # warm-up
        stage("load + warm-up")
        predicted, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while predicted == 0 or time.perf_counter() - started < predict_seconds:
            out = predictor.predict(chunk)
            predicted += len(out)
        predict_s, predict_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        predictor.close()
    stage("predict")

    return {"modality": modality, "size": size, "onednn_active": onednn_active(), "batch": batch,
            "predict_batch": predict_batch, "parameters": int(model.count_params()),
            "inputs": ", ".join(f"{name} {'x'.join(map(str, s)) or 'scalar'}" for name, s in shapes.items()),
            "clip_windows": clip_windows, "train_windows": train_windows, "train_s": train_s,
            "train_cpu_s": train_cpu_s, "predict_windows": predicted, "predict_s": predict_s,
            "predict_cpu_s": predict_cpu_s, "params": recorded, "stages": stages}


# ------------------------------------------------------------------------------------------ parent side
def ensure_clip(clips_dir: Path) -> tuple[Path, Path]:
    """The cached synthetic clip (the one ``empathy bench`` warms up with): (video, transcript)."""
    from bench.run import ensure_clip as cached_clip

    return cached_clip(clips_dir.resolve(), CLIP_SECONDS, CLIP_SIZE)


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_child(modality: str, size: str, onednn: str, *, clip: Path, transcript: Path, train_seconds: float,
              predict_seconds: float, timeout_s: float = 1800.0) -> Measurement:
    """One measurement in a fresh interpreter whose environment sets ``TF_ENABLE_ONEDNN_OPTS``."""
    request = {"modality": modality, "size": size, "clip": str(clip), "transcript": str(transcript),
               "train_seconds": train_seconds, "predict_seconds": predict_seconds}
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn == "on" else "0", "TF_CPP_MIN_LOG_LEVEL": "2",
           "EMPATHY_LOG_LEVEL": "WARNING"}
    load_before, started = load_1min(), time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bench.training", "--child", json.dumps(request)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout_s)
    child_s, load_after = time.monotonic() - started, load_1min()
    if done.returncode != 0:
        raise RuntimeError(f"{modality} ({size}, oneDNN {onednn}) failed ({done.returncode}): {done.stderr[-3000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(onednn=onednn, load_before=load_before, load_after=load_after, child_s=child_s, **data)


def plan(modalities: list[str], sizes: list[str], onednn: list[str]) -> list[tuple[str, str, str]]:
    """(modality, size, oneDNN) in run order: the oneDNN settings alternate which goes first, pair by pair."""
    order: list[tuple[str, str, str]] = []
    pairs = [(m, s) for m in modalities for s in sizes]
    for i, (modality, size) in enumerate(pairs):
        settings = onednn if i % 2 == 0 else list(reversed(onednn))
        order += [(modality, size, setting) for setting in settings]
    return order


# ------------------------------------------------------------------------------------------ report
@dataclass
class TrainingReport:
    machine: Machine
    command: str
    measurements: list[Measurement]
    corpus: Corpus = field(default_factory=Corpus)
    notes: list[str] = field(default_factory=list)


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}" if value < 1 else f"{value:.1f}"


def _ratio(on: float | None, off: float | None) -> str:
    return "-" if not on or not off else f"{on / off:.1f}x"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = seconds / 60.0
    if minutes < 1:
        return f"{seconds:.0f} s"
    if minutes < 10:
        return f"{minutes:.1f} min"
    if minutes < 60:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(round(minutes % 60)):02d} min"


def _pairs(report: TrainingReport) -> list[tuple[str, str, dict[str, Measurement]]]:
    """(modality, size, {oneDNN setting: measurement}) in the report's order."""
    out: dict[tuple[str, str], dict[str, Measurement]] = {}
    for m in report.measurements:
        out.setdefault((m.modality, m.size), {})[m.onednn] = m
    order = {name: i for i, name in enumerate(MODALITIES)}
    keys = sorted(out, key=lambda k: (order.get(k[0], len(order)), SIZES.index(k[1])))
    return [(modality, size, out[(modality, size)]) for modality, size in keys]


def throughput_table(report: TrainingReport) -> list[str]:
    rows = ["| model | size | parameters | training batch | training windows/s, oneDNN off | on | on / off | "
            "prediction batch | prediction windows/s, oneDNN off | on | on / off |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for modality, size, runs in _pairs(report):
        any_run = next(iter(runs.values()))
        on, off = runs.get("on"), runs.get("off")
        rows.append(f"| {modality} | {size} | {any_run.parameters:,} | {any_run.batch} | "
                    f"{_rate(off.train_wps if off else None)} | {_rate(on.train_wps if on else None)} | "
                    f"{_ratio(on.train_wps if on else None, off.train_wps if off else None)} | "
                    f"{any_run.predict_batch} | {_rate(off.predict_wps if off else None)} | "
                    f"{_rate(on.predict_wps if on else None)} | "
                    f"{_ratio(on.predict_wps if on else None, off.predict_wps if off else None)} |")
    return rows


def cpu_table(report: TrainingReport) -> list[str]:
    rows = ["| model | size | training windows per CPU s, oneDNN off | on | on / off | "
            "prediction windows per CPU s, oneDNN off | on | on / off |",
            "|---|---|---|---|---|---|---|---|"]
    for modality, size, runs in _pairs(report):
        on, off = runs.get("on"), runs.get("off")
        train = (off.train_per_cpu_s if off else None, on.train_per_cpu_s if on else None)
        predict = (off.predict_per_cpu_s if off else None, on.predict_per_cpu_s if on else None)
        rows.append(f"| {modality} | {size} | {_rate(train[0])} | {_rate(train[1])} | {_ratio(train[1], train[0])} | "
                    f"{_rate(predict[0])} | {_rate(predict[1])} | {_ratio(predict[1], predict[0])} |")
    return rows


def epoch_table(report: TrainingReport) -> list[str]:
    corpus = report.corpus
    rows = ["| model | size | windows per epoch | epoch, oneDNN off | epoch, oneDNN on | epoch, oneDNN on, "
            f"train_stride {STRIDE} | validation windows | validation pass, oneDNN on |",
            "|---|---|---|---|---|---|---|---|"]
    for modality, size, runs in _pairs(report):
        any_run = next(iter(runs.values()))
        windows = corpus.windows(modality, any_run.params, corpus.train_videos)
        val = corpus.windows(modality, any_run.params, corpus.val_videos)
        on, off = runs.get("on"), runs.get("off")
        vision = modality in ("face", "landmarks", "body")
        rows.append(
            f"| {modality} | {size} | {'-' if windows is None else f'{windows:,}'} | "
            f"{_duration(windows / off.train_wps if off and windows else None)} | "
            f"{_duration(windows / on.train_wps if on and windows else None)} | "
            f"{_duration(windows // STRIDE / on.train_wps if on and windows and vision else None)} | "
            f"{'-' if val is None else f'{val:,}'} | "
            f"{_duration(val / on.predict_wps if on and val else None)} |")
    return rows


def raw_table(report: TrainingReport) -> list[str]:
    rows = ["| model | size | oneDNN (TensorFlow reports) | timed training windows | s | CPU s / s | "
            "timed predictions | s | CPU s / s | load before -> after | child s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in report.measurements:
        active = "?" if m.onednn_active is None else ("on" if m.onednn_active else "off")
        rows.append(f"| {m.modality} | {m.size} | {m.onednn} ({active}) | {m.train_windows} | {m.train_s:.1f} | "
                    f"{m.train_cpu_s / m.train_s:.2f} | {m.predict_windows} | {m.predict_s:.1f} | "
                    f"{m.predict_cpu_s / m.predict_s:.2f} | {m.load_before:.2f} -> {m.load_after:.2f} | "
                    f"{m.child_s:.0f} |")
    return rows


def render(report: TrainingReport) -> str:
    params = {m.modality: m.params for m in report.measurements}
    inputs = sorted({(m.modality, m.size, m.inputs, m.clip_windows) for m in report.measurements},
                    key=lambda x: (MODALITIES.index(x[0]) if x[0] in MODALITIES else 99, x[1]))
    lines = ["## Training throughput", "", f"Command: `{report.command}`", "", report.machine.markdown(),
             "- GPU: none (no column: a GPU machine was not lent to this run; nothing here needs one)", "",
             "### Windows per second", "",
             "Training: windows fit per second of a timed epoch after a warm-up epoch (the trainer's path and "
             "batch). Prediction: windows per second through the exported SavedModel, as `empathy analyze` "
             "runs it. oneDNN off is TensorFlow's default on CPUs without AVX-512 VNNI/BF16/AMX (before commit "
             "3e00df2); on is the project's default since then.", "",
             *throughput_table(report), "",
             "### Windows per CPU second", "",
             "The same windows over the CPU seconds the timed part used (all its threads): on a shared, loaded "
             "machine a measurement gets only part of the 2 cores (its CPU s / s below), which lowers its "
             "windows/s but much less its windows per CPU second. Not a projection: 2 cores of a quiet machine "
             "give less than twice these (the threads do not scale perfectly).", "",
             *cpu_table(report), "",
             "### One epoch of OMG-Empathy's training split (projected)", "",
             "Windows per epoch over training windows/s; the validation pass (every window of the validation "
             "split, after every epoch) over prediction windows/s (the trainer predicts through Keras at its "
             f"training batch: close to, not the same as, this path). train_stride {STRIDE} fits every third "
             "window each epoch (vision models; validation still predicts every window).", "",
             *epoch_table(report), "",
             "### Each measurement", "",
             "One child process each, in this order; CPU s / s: the cores the timed part kept busy (2 at most "
             "here); load: the 1-minute load average before and after the child.", "",
             *raw_table(report), "",
             "### Notes", "",
             *[f"- {line}" for line in report.corpus.assumptions(params)],
             *[f"- {m} ({s}): windows {i}; the clip gave {n}, repeated to fill the epoch" for m, s, i, n in inputs],
             *[f"- {note}" for note in report.notes], ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="comma list (default: all five)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma list of bundled, paper (default both)")
    parser.add_argument("--onednn", default=",".join(ONEDNN), help="comma list of on, off (default both)")
    parser.add_argument("--train-seconds", type=float, default=12.0,
                        help="length of the timed training epoch, seconds (default 12; at least one batch)")
    parser.add_argument("--predict-seconds", type=float, default=6.0,
                        help="length of the timed prediction, seconds (default 6; at least one batch)")
    parser.add_argument("--quick", action="store_true", help="--train-seconds 2 --predict-seconds 1")
    parser.add_argument("--clips-dir", type=Path, default=Path("var/bench/clips"), help="cache of generated clips")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="Markdown file whose training-throughput block is replaced ('-' = print only)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="measure nothing: render the tables of a run saved with --json (after a change of "
                             "the report) and write them as that run would have")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_log_format_argument(parser)
    return parser


def _choices(parser: argparse.ArgumentParser, option: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(values) - set(allowed))
    if unknown or not values:
        parser.error(f"{option}: a comma list of {', '.join(allowed)}; got {text!r}")
    return list(dict.fromkeys(values))


def measure_all(args: argparse.Namespace, argv: list[str] | None, modalities: list[str], sizes: list[str],
                onednn: list[str]) -> TrainingReport:
    """Every child of the plan, in order, on the cached clip; the machine described around them."""
    machine = describe(REPO)
    clip, transcript = ensure_clip(args.clips_dir)
    measurements = []
    for modality, size, setting in plan(modalities, sizes, onednn):
        log.info("measuring", extra={"modality": modality, "size": size, "onednn": setting})
        m = run_child(modality, size, setting, clip=clip, transcript=transcript, train_seconds=args.train_seconds,
                      predict_seconds=args.predict_seconds)
        log.info("measured", extra={"modality": modality, "size": size, "onednn": setting,
                                    "train_windows_per_s": round(m.train_wps, 1),
                                    "predict_windows_per_s": round(m.predict_wps, 1), "child_s": round(m.child_s)})
        measurements.append(m)
    machine.load_after = os.getloadavg()
    command = " ".join(["python -m bench.training", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    return TrainingReport(machine=machine, command=command, measurements=measurements)


def load_report(path: Path) -> TrainingReport:
    """A run saved with ``--json``."""
    saved = json.loads(path.read_text())
    machine = Machine(**{**saved["machine"], "load_before": tuple(saved["machine"]["load_before"]),
                         "load_after": tuple(saved["machine"]["load_after"])})
    return TrainingReport(machine=machine, command=saved["command"],
                          measurements=[Measurement(**m) for m in saved["measurements"]])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    if args.child is not None:
        request = json.loads(args.child)
        result = measure(request["modality"], request["size"], clip=Path(request["clip"]),
                         transcript=Path(request["transcript"]), train_seconds=request["train_seconds"],
                         predict_seconds=request["predict_seconds"])
        print(json.dumps(result))
        return 0
    if args.from_json is not None:
        report = load_report(args.from_json)
    else:
        modalities = _choices(parser, "--modalities", args.modalities, MODALITIES)
        sizes = _choices(parser, "--sizes", args.sizes, SIZES)
        onednn = _choices(parser, "--onednn", args.onednn, ONEDNN)
        if args.quick:
            args.train_seconds, args.predict_seconds = 2.0, 1.0
        report = measure_all(args, argv, modalities, sizes, onednn)
        if args.json is not None:
            args.json.write_text(json.dumps({"command": report.command, "machine": asdict(report.machine),
                                             "measurements": [asdict(m) for m in report.measurements]}, indent=1))
    from training.models import get_spec

    measured = {(m.modality, m.size) for m in report.measurements}
    report.notes += [f"{m} ({s}): training batch {b} instead of the registry's {get_spec(m).batch_size} (one "
                     "step of the registry's batch takes minutes and GiBs on 2 cores); not measured at the "
                     "registry's batch" for (m, s), b in TIMING_BATCH.items() if (m, s) in measured]
    block = render(report)
    print(block)
    if str(args.out) != "-":
        write_block(args.out, block, PREAMBLE, key=BLOCK_KEY, writer="python -m bench.training")
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
