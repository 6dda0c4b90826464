"""The result document of one analysed video and its OMG-Empathy-style CSV.

One document shape for every producer (the fusion worker, ``empathy analyze``) and every consumer (the
gateway's ``/result``, ``/plot.png``, the ``submit`` client), so the CSV a user gets from the service and
from the embedded mode are byte-for-byte comparable.

The CSV starts with the ``valence`` column, as the challenge's annotation files do (tools that read the
``valence`` header keep working), then ``agreement``, the confidence band (``band_low``, ``band_high``) and
one column per requested modality (its post-processed curve; empty cells where it saw nothing or failed).
Every valence value, fused or per module, and the band lie in the label range (``label_range`` in the JSON,
[-1, 1] for OMG-Empathy): see :mod:`shared.postprocess`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.fusion import FusionResult
from shared.values import ModalityResult

DECIMALS = 6


def _series(values: np.ndarray) -> list[float | None]:
    """JSON-safe list: NaN -> null (JSON has no NaN), rounded to keep documents small."""
    return [round(float(v), DECIMALS) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def build_document(*, fusion: FusionResult, modalities: Mapping[str, ModalityResult], subject: int, fps: float,
                   video: str, job_id: str | None = None, seconds: float | None = None,
                   notes: Sequence[str] = ()) -> dict[str, Any]:
    """``degraded`` is true when some requested modality failed or saw nothing (its ``status``/``detail`` says
    why); ``fusion.used`` lists the modalities that contributed (a module the fusion weighs 0 is not used but
    not degraded either: its weight is the fusion's choice).

    Everything about the fusion comes from ``fusion`` as it was made (:class:`shared.fusion.FusionResult`
    records its specification, method, weights, cut-offs and label range): nothing is worked out again here.
    ``fusion.cutoff_hz`` is the final low-pass actually applied (after the clip-length bound), ``band`` the
    per-frame confidence band and the share of ground truth it was calibrated to hold (null: uncalibrated).
    ``notes`` gets the fusion's own notes (fallbacks) appended.
    """
    n_frames = int(fusion.valence.size)
    return {
        "job": job_id,
        "video": video,
        "subject": int(subject),
        "fps": float(fps),
        "n_frames": n_frames,
        "duration_s": round(n_frames / fps, 3),
        "seconds": None if seconds is None else round(float(seconds), 3),
        "valence": _series(fusion.valence),
        "label_range": [float(v) for v in fusion.label_range],  # every valence series (fused and modules) lies within
        "agreement": _series(fusion.agreement),
        "band": {"low": _series(fusion.band_low), "high": _series(fusion.band_high),
                 "coverage": fusion.band_coverage},
        "fusion": {"used": list(fusion.used), "weights": {k: round(v, 6) for k, v in fusion.weights.items()},
                   "weights_spec": fusion.spec, "method": fusion.method, "cutoff_hz": float(fusion.cutoff_hz),
                   "cutoff_requested_hz": float(fusion.cutoff_requested_hz), "model_version": fusion.model_version},
        "degraded": any(result.status != "ok" for result in modalities.values()),
        "notes": [*notes, *fusion.notes],
        "modalities": {
            name: {"status": result.status, "detail": result.detail, "seconds": round(float(result.seconds), 3),
                   "model_version": result.model_version,
                   "valence": _series(result.values) if result.values.size == n_frames else [None] * n_frames}
            for name, result in modalities.items()
        },
    }


def csv_columns(document: Mapping[str, Any]) -> list[str]:
    return ["valence", "agreement", "band_low", "band_high", *document["modalities"].keys()]


def to_csv(document: Mapping[str, Any]) -> str:
    """The document as CSV text: ``valence,agreement,band_low,band_high,<modality>...``, one row per frame."""
    n_frames = len(document["valence"])
    band = document.get("band") or {}
    columns: Sequence[list[float | None]] = [document["valence"], document["agreement"],
                                             band.get("low") or [None] * n_frames,
                                             band.get("high") or [None] * n_frames,
                                             *(m["valence"] for m in document["modalities"].values())]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_columns(document))
    for row in zip(*columns, strict=True):
        writer.writerow(["" if v is None else f"{v:.{DECIMALS}f}" for v in row])
    return out.getvalue()
