"""Crop boxes written as fractions of a frame: parsing the settings, nesting crops, per-subject choice.

A fraction box ``(x0, y0, x1, y1)`` with 0 <= x0 < x1 <= 1 (same for y) does not depend on the video's
resolution, so one setting serves a whole data set. OMG-Empathy frames hold storyteller and listener side
by side: the listener region selects the listener, and the body crop (``EMPATHY_BODY_CROP``) is given
*inside* that region, so the two compose.

The listener region is a parameter of every job, data set and model (:func:`listener_region`). Its spec is
``auto`` (2560x720 input, the real recordings' layout, gets the challenge's own split: the listener is
x >= 1080 of 2560, as in its face-extraction script; any other size the whole frame), ``full``, a fraction
box ``x0,y0,x1,y1``, or one of these per subject (``1=0.5,0,1,1;*=auto``). Training records the spec and
the frame sizes it saw in the model's preprocessing parameters, and inference on a video of one of those
sizes uses the same spec unless the job (or ``EMPATHY_LISTENER_CROP``) names another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


AUTO = "auto"
FULL = "full"
OMG_SIZE = (2560, 720)  # the OMG-Empathy recordings: storyteller left, listener right
OMG_LISTENER_X = 1080  # the challenge's face-extraction script cuts the listener at x = 1080..2560
OMG_LISTENER: Box = (OMG_LISTENER_X / OMG_SIZE[0], 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class ListenerRegion:
    """Where the listener is searched: a fraction box (None = whole frame) and a sentence saying so and why."""

    box: Box | None
    note: str

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The region in pixels of a width x height frame (the rounding of :func:`shared.media.crop_pixels`)."""
        from shared.media import crop_pixels

        return crop_pixels(self.box, width, height)

    def describe(self, width: int, height: int) -> str:
        """'x 1080-2560, y 0-720 of the 2560x720 frame' (or 'the whole 1280x720 frame')."""
        if self.box is None:
            return f"the whole {width}x{height} frame"
        x0, y0, x1, y1 = self.pixels(width, height)
        return f"x {x0}-{x1}, y {y0}-{y1} of the {width}x{height} frame"


def check_listener_spec(text: str) -> str:
    """``text`` if it is a valid listener spec (raises ValueError otherwise); '' means ``auto``."""
    parse_listener_spec(text)
    return text.strip() or AUTO


def parse_listener_spec(text: str) -> dict[str, str]:
    """Per-subject specs ('*' = every other subject) of ``auto``, ``full`` or a fraction box, validated."""
    text = text.strip() or AUTO
    items = text.split(";") if "=" in text else [f"*={text}"]
    specs: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip().lower()
        if key != "*" and not key.isdigit():
            raise ValueError(f"per-subject listener key {key!r} must be a subject number or '*'")
        if value not in (AUTO, FULL):
            parse_box(value)  # raises with the reason
        specs[key] = value
    return specs


_FRACTION = r"(0(\.[0-9]{1,6})?|1(\.0{1,6})?)"
_REGION = rf"(auto|full|{_FRACTION},{_FRACTION},{_FRACTION},{_FRACTION})"
# A listener spec as a regular expression (the OpenAPI form's): stricter than parse_listener_spec (no spaces,
# lower case, at most 6 decimals), never looser. What it cannot say (x0 < x1, the box's size in pixels) is 400.
LISTENER_PATTERN = rf"^({_REGION}|([0-9]{{1,9}}|\*)={_REGION}(;([0-9]{{1,9}}|\*)={_REGION})*)$"

MIN_LISTENER_PX = 32  # a listener box smaller than this (either side) holds no detectable face


def check_listener_pixels(spec: str, width: int, height: int) -> None:
    """Every box of a listener spec covers at least :data:`MIN_LISTENER_PX` pixels each way of a ``width`` x
    ``height`` video (raises ValueError naming the box otherwise): a 1x0-pixel box used to reach three workers
    and fail each of them with an empty frame."""
    from shared.media import crop_pixels

    for key, value in parse_listener_spec(spec).items():
        if value in (AUTO, FULL):
            continue
        x0, y0, x1, y1 = crop_pixels(parse_box(value), width, height)
        if x1 - x0 < MIN_LISTENER_PX or y1 - y0 < MIN_LISTENER_PX:
            who = "" if key == "*" else f" of subject {key}"
            raise ValueError(f"the box {value}{who} is {x1 - x0}x{y1 - y0} pixels of the {width}x{height} video; "
                             f"at least {MIN_LISTENER_PX}x{MIN_LISTENER_PX} are needed to find a face")


def listener_region(spec: str, subject: int, width: int, height: int, *, origin: str = "") -> ListenerRegion:
    """The region a spec selects for ``subject`` in a ``width`` x ``height`` video, with a note for the job."""
    specs = parse_listener_spec(spec)
    chosen = specs.get(str(int(subject)), specs.get("*", AUTO))
    why = f" ({origin})" if origin else ""
    if chosen == AUTO:
        if (width, height) == OMG_SIZE:
            region = ListenerRegion(OMG_LISTENER, "")
            return ListenerRegion(OMG_LISTENER, f"listener searched in {region.describe(width, height)}: the "
                                                f"official OMG-Empathy split, the default for 2560x720 input{why}")
        region = ListenerRegion(None, "")
        return ListenerRegion(None, f"listener searched in {region.describe(width, height)} (default for "
                                    f"{width}x{height} input){why}")
    if chosen == FULL:
        return ListenerRegion(None, f"listener searched in the whole {width}x{height} frame{why}")
    box = parse_box(chosen)
    region = ListenerRegion(box, "")
    return ListenerRegion(box, f"listener searched in {region.describe(width, height)}{why}")


def region_for_video(params: Mapping[str, Any], subject: int, width: int, height: int) -> ListenerRegion:
    """The listener region of one video from a modality's parameters.

    ``listener`` (set at inference by the job, the CLI or ``EMPATHY_LISTENER_CROP``: see
    :func:`shared.pipeline.inference_params`) wins unless it is ``auto``; otherwise the spec the model was
    trained with (``listener_region``, recorded from ``EMPATHY_LISTENER_CROP`` at training) applies to videos
    of a frame size training saw (``listener_layouts``); otherwise ``auto``. Nothing here reads the
    environment: parameters without either key (a bare ``prepare``) get ``auto``.
    """
    explicit = str(params.get("listener") or "").strip()
    if explicit and explicit != AUTO:
        return listener_region(explicit, subject, width, height, origin="as requested")
    trained = str(params.get("listener_region") or "").strip()
    if trained and f"{width}x{height}" in (params.get("listener_layouts") or []):
        origin = "as in the models' training data" if "listener" in params else ""
        return listener_region(trained, subject, width, height, origin=origin)
    return listener_region(AUTO, subject, width, height)
