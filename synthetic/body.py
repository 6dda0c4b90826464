"""A drawn upper body whose posture follows valence.

Positive valence: upright (shoulders and head higher), leaning to the listener's left of frame (+x), head
rolled, arms open with the hands raised beside the shoulders. Negative: slumped, arms closed with the hands
together low in front. A little idle sway and breathing that do not depend on valence keep the body from
being a pure function of the label. All sizes are in units of frame height / 360 so any resolution works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class Pose:
    """Where every body part is in one frame (pixels)."""

    torso_x: float  # x of the top of the torso (the bottom stays centred: leaning skews it)
    shoulder_y: float
    half_width: float
    head: Point  # where the face centre goes
    tilt_deg: float
    elbows: tuple[Point, Point]
    hands: tuple[Point, Point]


@dataclass(frozen=True)
class Idle:
    """Valence-free motion of one clip: phases of sway and breathing."""

    sway_phase: float
    breath_phase: float
    nod_phase: float


def pose_for(valence: float, t: float, width: int, height: int, idle: Idle) -> Pose:
    """The posture at time ``t`` (seconds) for a listener feeling ``valence`` (-1..1)."""
    u = height / 360.0
    v = float(np.clip(valence, -1.0, 1.0))
    sway = 3.0 * u * math.sin(2 * math.pi * 0.11 * t + idle.sway_phase)
    breath = 1.5 * u * math.sin(2 * math.pi * 0.25 * t + idle.breath_phase)
    nod = 1.5 * u * math.sin(2 * math.pi * 0.17 * t + idle.nod_phase)

    torso_x = width / 2.0 + 16.0 * u * v + sway
    shoulder_y = 258.0 * u - 9.0 * u * v + breath
    half_width = 105.0 * u * (1.0 + 0.06 * v)
    head = (torso_x + 5.0 * u * v, shoulder_y - 94.0 * u - 4.0 * u * v + nod)
    tilt = 4.0 * v + 1.0 * math.sin(2 * math.pi * 0.07 * t + idle.sway_phase)

    a = (v + 1.0) / 2.0  # 0 = closed, slumped arms; 1 = open, raised arms

    def lerp(p: Point, q: Point) -> Point:
        return (p[0] + a * (q[0] - p[0]), p[1] + a * (q[1] - p[1]))

    elbows = []
    hands = []
    for side in (-1.0, 1.0):
        closed_elbow = (torso_x + side * (half_width + 2.0 * u), shoulder_y + 85.0 * u)
        open_elbow = (torso_x + side * (half_width + 32.0 * u), shoulder_y + 62.0 * u)
        closed_hand = (width / 2.0 + side * 16.0 * u, shoulder_y + 98.0 * u)
        open_hand = (torso_x + side * (half_width + 48.0 * u), shoulder_y + 8.0 * u)
        elbows.append(lerp(closed_elbow, open_elbow))
        hands.append(lerp(closed_hand, open_hand))
    return Pose(
        torso_x=torso_x,
        shoulder_y=shoulder_y,
        half_width=half_width,
        head=head,
        tilt_deg=tilt,
        elbows=(elbows[0], elbows[1]),
        hands=(hands[0], hands[1]),
    )


def _pt(p: Point) -> tuple[int, int]:
    return (round(p[0]), round(p[1]))


def draw_body(frame: np.ndarray, pose: Pose, *, shirt: tuple[int, int, int], skin: tuple[int, int, int]) -> None:
    """Draw neck, torso and arms of ``pose`` into ``frame`` (RGB, in place); the head is pasted afterwards."""
    height, width = frame.shape[:2]
    u = height / 360.0
    x, sy, hw = pose.torso_x, pose.shoulder_y, pose.half_width
    r = 26.0 * u
    sleeve = tuple(max(0, int(c * 0.8)) for c in shirt)

    neck_w = 21.0 * u
    hx, hy = pose.head
    neck = np.array(
        [
            (hx - neck_w, hy + 35.0 * u),
            (hx + neck_w, hy + 35.0 * u),
            (x + neck_w * 1.15, sy + 8.0 * u),
            (x - neck_w * 1.15, sy + 8.0 * u),
        ]
    )
    cv2.fillConvexPoly(frame, np.round(neck).astype(np.int32), skin, lineType=cv2.LINE_AA)

    bottom = height + 20.0 * u
    torso = np.array(
        [
            (x - hw + r, sy),
            (x + hw - r, sy),
            (x + hw, sy + r),
            (width / 2.0 + hw * 0.92, bottom),
            (width / 2.0 - hw * 0.92, bottom),
            (x - hw, sy + r),
        ]
    )
    cv2.fillConvexPoly(frame, np.round(torso).astype(np.int32), shirt, lineType=cv2.LINE_AA)
    for side in (-1.0, 1.0):
        cv2.circle(frame, _pt((x + side * (hw - r), sy + r)), round(r), shirt, -1, lineType=cv2.LINE_AA)
    # Collar: a small V of skin under the neck.
    collar = np.array([(x - neck_w * 1.1, sy), (x + neck_w * 1.1, sy), (x, sy + 26.0 * u)])
    cv2.fillConvexPoly(frame, np.round(collar).astype(np.int32), skin, lineType=cv2.LINE_AA)

    arm = max(2, round(28.0 * u))
    for i, side in enumerate((-1.0, 1.0)):
        shoulder = (x + side * (hw - 16.0 * u), sy + 22.0 * u)
        cv2.line(frame, _pt(shoulder), _pt(pose.elbows[i]), sleeve, arm, lineType=cv2.LINE_AA)
        cv2.line(frame, _pt(pose.elbows[i]), _pt(pose.hands[i]), sleeve, arm, lineType=cv2.LINE_AA)
        cv2.circle(frame, _pt(pose.elbows[i]), arm // 2, sleeve, -1, lineType=cv2.LINE_AA)
        cv2.circle(frame, _pt(pose.hands[i]), round(14.0 * u), skin, -1, lineType=cv2.LINE_AA)
