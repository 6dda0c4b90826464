"""shared.plot.render_png: a PNG of the modules, the fusion with its band, the ground truth and the agreement.

What is drawn is checked on the pixels: each element is rendered with and without it, and the two pictures
must differ inside the top panel's plotting area below the legend (:data:`CURVES`), where only curves change.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from shared.plot import render_png

N = 250  # 10 s at 25 fps
FPS = 25.0
TAB_GREEN_HALF = np.array([150, 208, 150])
CURVES = (slice(90, 350), slice(130, 940))  # rows, columns of the top panel under the legend (1000x550 picture)  # tab:green (44, 160, 44) at alpha 0.5 on white, RGB


def _document(*, band: bool = True, modules: tuple[str, ...] = ("audio", "face"), agreement: float = 0.7,
              valence: list[float | None] | None = None) -> dict[str, Any]:
    t = np.arange(N) / FPS
    fused = list(np.round(0.5 * np.sin(t), 6)) if valence is None else valence
    curves = {"audio": 0.6 * np.cos(t), "face": -0.3 + 0.1 * t, "body": np.full(N, 0.9)}
    return {
        "video": "clip.mp4", "subject": 2, "fps": FPS, "n_frames": N, "valence": fused,
        "agreement": [agreement] * N,
        "band": {"low": [v - 0.3 for v in fused], "high": [v + 0.3 for v in fused], "coverage": 0.8} if band else
        {"low": [], "high": [], "coverage": None},
        "fusion": {"method": "ccc"},
        "modalities": {name: {"status": "ok", "valence": [float(v) for v in curves[name]]} for name in modules},
    }


def _pixels(png: bytes) -> np.ndarray:
    """RGB pixels of a PNG."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable PNG"
    return image[:, :, ::-1].astype(np.int16)


def _changed(a: bytes, b: bytes) -> int:
    """Pixels of :data:`CURVES` that differ between two pictures."""
    return int((np.abs(_pixels(a)[CURVES] - _pixels(b)[CURVES]).sum(axis=2) > 30).sum())


def test_it_is_a_png_of_the_papers_figure_size() -> None:
    png = render_png(_document())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels(png).shape == (550, 1000, 3)  # 10 x 5.5 inches at 100 dpi


def test_the_agreement_is_filled_in_green_below() -> None:
    def green(agreement: float) -> np.ndarray:
        pixels = _pixels(render_png(_document(agreement=agreement)))
        mask = np.abs(pixels - TAB_GREEN_HALF).max(axis=2) <= 3
        return np.nonzero(mask.any(axis=1))[0]  # rows holding the fill

    high, low = green(0.9), green(0.3)
    assert high.size > 0 and low.size > 0
    assert high.min() < low.min()  # more agreement, a taller fill
    assert high.min() > 550 * 0.6 and low.max() == high.max()  # in the bottom panel, from the same base line
    assert green(0.0).size == 0


def test_every_module_the_band_and_the_ground_truth_are_drawn() -> None:
    full = render_png(_document())
    assert _changed(full, render_png(_document(modules=("audio",)))) > 1000  # the face curve
    assert _changed(full, render_png(_document(band=False))) > 20000  # the band: an area, not a line
    truth = np.linspace(-0.8, 0.8, N)
    assert _changed(full, render_png(_document(), ground_truth=truth)) > 1000


def test_a_curve_beyond_the_label_range_stays_in_the_picture() -> None:
    """Re-scaled curves may leave [-1, 1]: the axis grows so that the whole curve shows."""
    inside = render_png(_document(modules=("body",)))
    outside_doc = _document(modules=("body",))
    outside_doc["modalities"]["body"]["valence"] = [1.6] * N
    assert _changed(inside, render_png(outside_doc)) > 20000  # another scale: every curve moves


def test_a_failed_module_changes_its_legend_only() -> None:
    document = _document()
    document["modalities"]["face"]["status"] = "failed"  # its label says so; its curve stays as it is
    assert _changed(render_png(_document()), render_png(document)) == 0
    assert _pixels(render_png(_document())).tobytes() != _pixels(render_png(document)).tobytes()


def test_missing_values_draw_gaps_and_an_empty_result_still_renders() -> None:
    document = _document(band=False)
    document["modalities"]["face"]["valence"] = [None] * N  # a module that saw nothing
    document["modalities"]["face"]["status"] = "failed"
    assert render_png(document)[:4] == b"\x89PNG"
    nothing = _document(band=False, modules=(), valence=[None] * N)
    nothing["agreement"] = [None] * N
    assert _pixels(render_png(nothing)).shape == (550, 1000, 3)
