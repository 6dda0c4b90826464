"""``python -m bench.training``: one small model measured for real (two child processes), and the projection."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.training import Corpus, main, plan
from shared.modalities.base import get_modality


def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table whose header begins with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_landmarks_bundled_measured_with_onednn_on_and_off(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    other = "<!-- bench:start models (written by `empathy bench`; edit outside this block) -->\nkept\n" \
            "<!-- bench:end models -->\n"
    out.write_text(f"# Benchmarks\n\nhand-written\n\n{other}")
    raw = tmp_path / "measurements.json"
    assert main(["--modalities", "landmarks", "--sizes", "bundled", "--quick", "--train-seconds", "1",
                 "--predict-seconds", "0.5", "--out", str(out), "--json", str(raw)]) == 0
    text = out.read_text()
    assert "hand-written" in text and other in text  # the other block and the text around it survive
    assert text.count("## Training throughput") == 1

    speed = _table(text, "| model | size | parameters |")
    assert len(speed) == 2 and len(speed[0]) == 11
    row = dict(zip(speed[0], speed[1], strict=True))
    assert row["model"] == "landmarks" and row["size"] == "bundled" and row["training batch"] == "512"
    rates = [float(cell) for cell in (speed[1][4], speed[1][5], speed[1][8], speed[1][9])]
    assert all(rate > 0 for rate in rates), speed[1]
    assert re.fullmatch(r"\d+\.\dx", speed[1][6]) and re.fullmatch(r"\d+\.\dx", speed[1][10])

    epoch = _table(text, "| model | size | windows per epoch |")
    assert len(epoch) == 2 and len(epoch[0]) == 8
    assert epoch[1][2] == "300,000" and epoch[1][6] == "75,000"  # 40 (10) videos x 5 min x 25 fps
    assert all(re.fullmatch(r"[\d.]+ (s|min)|\d+ h \d\d min", cell) for cell in epoch[1][3:6] + epoch[1][7:])

    each = _table(text, "| model | size | oneDNN (TensorFlow reports) |")
    # one child per setting, and TensorFlow in each one really ran with the setting its environment asked for
    assert sorted(r[2] for r in each[1:]) == ["off (off)", "on (on)"]

    per_cpu = _table(text, "| model | size | training windows per CPU s")
    assert len(per_cpu) == 2 and len(per_cpu[0]) == 8
    assert all(float(cell) > 0 for cell in (per_cpu[1][2], per_cpu[1][3], per_cpu[1][5], per_cpu[1][6]))

    saved = json.loads(raw.read_text())
    measurements = saved["measurements"]
    assert len(measurements) == 2 and saved["machine"]["cores"] >= 1
    for m in measurements:
        assert m["train_windows"] >= 512 and m["train_s"] > 0 and m["predict_windows"] > 0 and m["predict_s"] > 0
        assert m["inputs"] == "landmarks 25x136" and m["clip_windows"] > 0

    again = tmp_path / "again.md"  # a saved run renders the very same block without measuring
    assert main(["--from-json", str(raw), "--out", str(again)]) == 0
    block = text[text.index("## Training throughput"):text.index("<!-- bench:end training throughput")]
    assert block in again.read_text()


def test_onednn_settings_alternate_which_goes_first() -> None:
    order = plan(["face", "body"], ["bundled", "paper"], ["on", "off"])
    assert [o[2] for o in order] == ["on", "off", "off", "on", "on", "off", "off", "on"]
    assert order[0][:2] == ("face", "bundled") and order[-1][:2] == ("body", "paper")


def test_projection_counts_windows_of_each_modality() -> None:
    corpus = Corpus()
    params = {name: get_modality(name).default_params() for name in ("face", "body", "audio", "text")}
    assert corpus.windows("face", params["face"], 40) == 300_000
    assert corpus.windows("body", params["body"], 40) == 60_000  # every 5th frame
    # 7500 frames, 200-frame slices 160 apart: starts 0..7200 (46) plus the one ending at the end
    assert corpus.windows("audio", params["audio"], 40) == 40 * 47
    assert corpus.windows("text", params["text"], 40) == 30_000  # 2.5 words/s
    assert corpus.windows("unknown", {}, 40) is None
