"""The result as a picture, like the paper's Fig. 3: every module, the fusion with its confidence band, the
ground truth when an annotation is given, and the agreement over time.

Rendered with matplotlib's non-interactive Agg backend into memory (no display, thread-safe per figure).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# The paper's names for the modules (Fig. 3: speech, lexicons, ...).
LABELS = {"audio": "speech", "text": "lexicons", "face": "raw face", "landmarks": "landmarks", "body": "full body"}


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def render_png(document: Mapping[str, Any], *, ground_truth: np.ndarray | None = None) -> bytes:
    fps = float(document["fps"])
    fused = _array(document["valence"])
    seconds = np.arange(fused.size) / fps
    figure = Figure(figsize=(10, 5.5), dpi=100)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name, entry in document["modalities"].items():
        label = f"{LABELS.get(name, name)} ({entry['status']})" if entry["status"] != "ok" else LABELS.get(name, name)
        top.plot(seconds, _array(entry["valence"]), linewidth=1.0, alpha=0.8, label=label)
    band = document.get("band") or {}
    shown = [fused, *(_array(e["valence"]) for e in document["modalities"].values())]
    if band.get("low") and band.get("high"):
        low, high = _array(band["low"]), _array(band["high"])
        coverage = band.get("coverage")
        label = f"band ({coverage:.0%} on validation)" if coverage is not None else "band (uncalibrated)"
        top.fill_between(seconds, low, high, color="black", alpha=0.12, linewidth=0, label=label)
        shown += [low, high]
    if ground_truth is not None:
        truth = np.asarray(ground_truth, dtype=np.float64)[: seconds.size]
        top.plot(seconds[: truth.size], truth, color="grey", linewidth=1.4, linestyle="--", label="ground truth")
        shown.append(truth)
    fusion = document.get("fusion") or {}
    top.plot(seconds, fused, color="black", linewidth=2.2, label=f"fusion ({fusion.get('method', 'weights')})")
    top.set_ylabel("valence")
    finite = np.concatenate([v[np.isfinite(v)] for v in shown])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    top.set_ylim(min(-1.05, low - 0.05), max(1.05, high + 0.05))  # re-scaled curves may leave [-1, 1]
    top.grid(alpha=0.3)
    top.legend(loc="upper right", fontsize=8, ncol=3)
    top.set_title(f"{document.get('video') or 'video'} - subject {document.get('subject', 0)}")
    bottom.fill_between(seconds, _array(document["agreement"]), color="tab:green", alpha=0.5, step="mid")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("agreement")
    bottom.set_xlabel("time (s)")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
