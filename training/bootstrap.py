"""The bundled default models: a small synthetic data set and five small models trained on it.

``empathy analyze`` must work on a fresh checkout, where no trained model exists yet. Rather than
shipping binary weights, the project builds them reproducibly the first time (and caches them under
``models/``): it generates a small synthetic OMG-Empathy-layout set (:mod:`synthetic`) and trains
every missing modality with reduced model sizes through the ordinary training API
(:func:`training.trainer.train`), then the fusion on their validation predictions
(:func:`training.fusion.train_fusion`: cut-offs, learned fusion, confidence bands), so the result is a
normal versioned model repository.

    python -m training.bootstrap --models-dir models --data-dir data/synthetic

The architectures keep their structure (BiGRU, LSTM + attention, 3D conv blocks, 1D CNN, 3D ResNet) but
with far fewer units, so the build takes minutes on two cores. Train with paper-size models with
``empathy train <modality> --data DIR`` for real use.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.model_store import list_versions
from shared.logs import add_log_format_argument, configure_logging
from shared.settings import MODALITIES, Settings, get_settings

log = logging.getLogger(__name__)

# Reduced sizes for the bundled models (keyword arguments of training.trainer.train).
SMALL_TRAINING: dict[str, dict[str, Any]] = {
    "audio": {"hparams": {"gru_units": 16, "bn_momentum": 0.8}, "epochs": 12, "batch_size": 4,
              "learning_rate": 0.01, "patience": 6},
    "text": {"hparams": {"lstm_units": 16}, "epochs": 30, "batch_size": 32, "learning_rate": 0.01, "patience": 8},
    # every 3rd window an epoch (neighbouring 10-frame windows share 9 frames): 6 such epochs reach validation
    # CCC 0.98-0.99 (seeds 0, 1, 2) in a third of the time, where 5 epochs over every window ended at 0.01 (seed 0)
    "face": {"hparams": {"filters": [8, 16], "dense": [32, 16], "bn_momentum": 0.9}, "epochs": 6,
             "train_stride": 3},
    "landmarks": {"hparams": {"filters": [32, 32, 48, 48], "dense": 16, "bn_momentum": 0.9}, "epochs": 12},
    "body": {"hparams": {"depth": 10, "base_filters": 8, "head": [32, 16], "bn_momentum": 0.9},
             "params": {"size": 64}, "epochs": 6},
}

# The bundled data set: 2 listeners x 6 stories (Story 2 validates, as in the paper), 30 s each. Audio and
# text need several distinct stories to generalise: every listener hears the same story, so 3 stories give
# the speech models only 2 distinct recordings to learn from (validation CCC ~0 measured), 5 give them 5.
DEFAULT_SUBJECTS = (1, 2)
DEFAULT_STORIES = (1, 2, 3, 4, 5, 6)
DEFAULT_DURATION_S = 30.0


def missing_models(models_dir: Path | str, modalities: Sequence[str]) -> list[str]:
    """Modalities with no servable version under ``models_dir``."""
    return [name for name in modalities if not list_versions(Path(models_dir) / name)]


def fusion_missing(models_dir: Path | str) -> bool:
    """True when ``models_dir`` has no fusion model (``models/fusion/<version>/metadata.json``)."""
    from shared.fusion import fusion_versions

    return not fusion_versions(models_dir)


def _labelled_clips(data_dir: Path | str) -> list:
    from shared.data import discover

    return [c for c in discover(data_dir) if c.labels is not None] if Path(data_dir).is_dir() else []


def foreign_models(models_dir: Path | str, names: Sequence[str], clips: Sequence) -> list[str]:
    """The modules of ``names`` whose ``dataset_hash`` is not that of ``clips`` (trained on other data)."""
    from serving.model_store import load_metadata
    from training.fusion import dataset_fingerprint

    expected = dataset_fingerprint(clips)
    return [m for m in names if load_metadata(models_dir, m).get("dataset_hash") != expected]


def bundled_models_ready(models_dir: Path | str, data_dir: Path | str) -> bool:
    """Whether ``models_dir`` holds the bundled models of ``data_dir``'s synthetic set, fusion included.

    The test suite serves these when ``make models`` has built them (CI builds them once for ``make test`` and
    ``make test-compose``); models a user trained on other data into the same folder are never taken for them.
    """
    clips = _labelled_clips(data_dir)
    return bool(clips) and not missing_models(models_dir, MODALITIES) and not fusion_missing(models_dir) \
        and not foreign_models(models_dir, MODALITIES, clips)


def ensure_fusion(models_dir: Path | str, *, data_dir: Path | str, settings: Settings | None = None) -> Path | None:
    """Fit the fusion model when it is missing and every module was trained on ``data_dir``'s data set.

    Modules trained on other data (their ``dataset_hash`` differs) must not get a fusion fit on the synthetic
    set: then nothing is built and fusion runs without a fusion model (its notes say so).
    """
    if not fusion_missing(models_dir):
        return None
    names = [m for m in MODALITIES if list_versions(Path(models_dir) / m)]
    clips = _labelled_clips(data_dir)
    if not names or not clips:
        return None
    from training.fusion import train_fusion

    foreign = foreign_models(models_dir, names, clips)
    if foreign:
        log.warning("no bundled fusion model: some modules were trained on another data set",
                    extra={"modules": foreign, "data_dir": str(data_dir)})
        return None
    started = time.monotonic()
    result = train_fusion(models_dir=models_dir, clips=clips, settings=settings)
    log.info("bundled fusion model ready", extra={"path": str(result.version_dir),
                                                  "seconds": round(time.monotonic() - started, 1)})
    return Path(result.version_dir)


def ensure_dataset(data_dir: Path | str, *, subjects: Sequence[int] = DEFAULT_SUBJECTS,
                   stories: Sequence[int] = DEFAULT_STORIES, duration_s: float = DEFAULT_DURATION_S,
                   seed: int = 0, preset: str | None = None) -> Path:
    """Generate the synthetic set into ``data_dir`` unless it already holds labelled clips."""
    from shared.data import discover

    data_dir = Path(data_dir)
    if data_dir.is_dir() and any(c.labels is not None for c in discover(data_dir)):
        return data_dir
    from synthetic import generate_dataset

    started = time.monotonic()
    log.info("generating the synthetic data set", extra={"data_dir": str(data_dir), "subjects": list(subjects),
                                                        "stories": list(stories), "duration_s": duration_s})
    generate_dataset(data_dir, subjects=subjects, stories=stories, duration_s=duration_s, seed=seed, preset=preset)
    log.info("synthetic data set ready", extra={"data_dir": str(data_dir),
                                                 "seconds": round(time.monotonic() - started, 1)})
    return data_dir


def build_default_models(models_dir: Path | str, *, data_dir: Path | str,
                         modalities: Sequence[str] = MODALITIES, overrides: dict[str, dict[str, Any]] | None = None,
                         settings: Settings | None = None) -> dict[str, Path]:
    """Train every modality of ``modalities`` that has no model yet, then the fusion model if it is missing;
    returns name -> version dir (``fusion`` included when it was fit).

    ``overrides`` replaces entries of :data:`SMALL_TRAINING` per modality (tests use even smaller ones).
    ``settings``: the caller's (default: the environment's, read here), for the data set and the training.
    """
    from training.trainer import train

    settings = settings or get_settings()
    todo = missing_models(models_dir, modalities)
    if not todo:
        fused = ensure_fusion(models_dir, data_dir=data_dir, settings=settings)
        return {"fusion": fused} if fused is not None else {}
    started_all = time.monotonic()
    seconds: dict[str, float] = {}
    ensure_dataset(data_dir, preset=settings.synth_x264_preset)
    seconds["data_set"] = time.monotonic() - started_all
    built: dict[str, Path] = {}
    for name in todo:
        options = {**SMALL_TRAINING[name], **((overrides or {}).get(name, {}))}
        started = time.monotonic()
        log.info("training a bundled model", extra={"modality": name, "options": options})
        result = train(name, data_dir, models_dir=models_dir, settings=settings, **options)
        seconds[name] = time.monotonic() - started
        built[name] = Path(result.version_dir)
        log.info("bundled model ready", extra={"modality": name, "path": str(result.version_dir),
                                               "val_ccc": round(float(result.metadata.get("val_ccc", 0.0)), 3),
                                               "val_ccc_filtered": round(float(result.metadata.get(
                                                   "val_ccc_filtered", 0.0)), 3),
                                               "seconds": round(seconds[name], 1)})
    started = time.monotonic()
    fused = ensure_fusion(models_dir, data_dir=data_dir, settings=settings)
    if fused is not None:
        built["fusion"] = fused
        seconds["fusion"] = time.monotonic() - started
    # One line a first-time user (or CI) can read the cost of the build from, part by part.
    log.info("bundled models built", extra={"total_seconds": round(time.monotonic() - started_all, 1),
                                            **{f"{part}_s": round(value, 1)
                                               for part, value in seconds.items()}})
    return built


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m training.bootstrap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir,
                        help="synthetic set to train on (generated when it has no labelled clips)")
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="comma list (default: all five)")
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    names = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        parser.error(f"unknown modalities {unknown}")
    built = build_default_models(args.models_dir, data_dir=args.data_dir, modalities=names, settings=settings)
    for name in names:
        versions = list_versions(args.models_dir / name)
        state = "built" if name in built else "already there"
        print(f"{name:10s} {state:14s} {args.models_dir / name / str(versions[-1])}")
    from shared.fusion import FUSION_MODEL_DIR, fusion_versions

    fusion = fusion_versions(args.models_dir)
    if fusion:
        state = "built" if "fusion" in built else "already there"
        print(f"{'fusion':10s} {state:14s} {args.models_dir / FUSION_MODEL_DIR / str(fusion[-1])}")
    else:
        print(f"{'fusion':10s} {'none':14s} (modules not trained on {args.data_dir}: fusion without a model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
