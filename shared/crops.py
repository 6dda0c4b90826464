"""Crop boxes written as fractions of a frame: parsing the settings, nesting crops, per-subject choice.

A fraction box ``(x0, y0, x1, y1)`` with 0 <= x0 < x1 <= 1 (same for y) does not depend on the video's
resolution, so one setting serves a whole data set. OMG-Empathy frames hold storyteller and listener side
by side: the listener crop (``EMPATHY_LISTENER_CROP``) selects the listener, and the body crop
(``EMPATHY_BODY_CROP``) is given *inside* that region, so the two compose.
"""

from __future__ import annotations

Box = tuple[float, float, float, float]

FULL_FRAME: Box = (0.0, 0.0, 1.0, 1.0)


def parse_box(text: str) -> Box:
    """'x0,y0,x1,y1' -> a validated fraction box."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"crop {text!r} must be 'x0,y0,x1,y1' (four fractions of the frame)")
    x0, y0, x1, y1 = (float(p) for p in parts)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(f"crop {text!r} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return (x0, y0, x1, y1)


def parse_optional_box(text: str) -> Box | None:
    """An empty setting means 'no crop' (None)."""
    return parse_box(text) if text.strip() else None


def parse_subject_boxes(text: str) -> dict[str, Box]:
    """Per-subject crops: 'x0,y0,x1,y1' (all subjects) or '1=...;2=...;*=...' ('*' = any other subject)."""
    text = text.strip()
    if not text:
        return {}
    if "=" not in text:
        return {"*": parse_box(text)}
    boxes: dict[str, Box] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key != "*" and not key.isdigit():
            raise ValueError(f"per-subject crop key {key!r} must be a subject number or '*'")
        boxes[key] = parse_box(value)
    return boxes


def box_for_subject(boxes: dict[str, Box], subject: int) -> Box | None:
    """The subject's own box, else the '*' box, else None (let the caller choose automatically)."""
    return boxes.get(str(int(subject)), boxes.get("*"))


def compose(outer: Box | None, inner: Box) -> Box:
    """``inner`` (fractions of the ``outer`` region) as fractions of the whole frame."""
    ox0, oy0, ox1, oy1 = outer or FULL_FRAME
    w, h = ox1 - ox0, oy1 - oy0
    x0, y0, x1, y1 = inner
    return (ox0 + x0 * w, oy0 + y0 * h, ox0 + x1 * w, oy0 + y1 * h)
