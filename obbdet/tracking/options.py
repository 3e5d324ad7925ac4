"""The tracker's knobs: one frozen dataclass, every field named, documented and checked."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

GATES = ("distance", "mahalanobis")


@dataclass(frozen=True)
class TrackerOptions:
    """Options of :class:`obbdet.tracking.Tracker`. Pixels are those of the boxes; frames are source frames.

    Scores (ByteTrack's two stages):
        high_score: detections at or above it are matched first, against every track. 0.5.
        low_score: detections in ``[low_score, high_score)`` are matched second, to the confirmed tracks left
            over; they extend tracks but never start or confirm one; lower scores are dropped. 0.1.
        new_track_score: an unmatched high-score detection at or above it starts a tentative track. 0.6.

    Association:
        match_iou: least exact rotated IoU (predicted box vs detection) for a match in the first stage. 0.1.
        low_match_iou: least IoU for a low-score detection's match. 0.3.
        centre_weight: weight of the centre distance (divided by the gate radius) added to ``1 - IoU``; breaks
            ties between tiny boxes. 0.05.
        class_switch_cost: None: a detection only matches a track of its own class. A number: other classes
            may match at this extra cost, and the track takes the detection's class. None.
        gate: ``"distance"``: a detection's centre must lie within ``gate_scale * (length + speed * frames)``
            of the track's predicted centre (``frames`` since its last detection); ``"mahalanobis"``: the
            squared Mahalanobis distance of the centres under the filter's covariance must be at most
            ``mahalanobis_gate``. "distance".
        gate_scale: the ``k`` of the distance gate. 1.0.
        mahalanobis_gate: chi-square bound of the Mahalanobis gate (9.21: 99% for 2 degrees of freedom).
        square_ratio: boxes with ``width / length`` above it are near-square: their angle is matched modulo
            90 degrees (sides swapped), not 180. 0.85.

    Track life:
        min_hits: a tentative track is confirmed (gets an id, is output) after this many consecutive matched
            frames; tracks started on a sequence's first frame are confirmed at once. 3.
        max_age: a confirmed track without detections is kept (predicted) for this many frames, then removed;
            while lost it is re-matched by IoU with its predicted box or by centre distance inside the gate
            (a vehicle under a bridge or trees; 2 s at 30 fps). 60.

    Kalman filter (standard deviations; ``length`` is the box's long side in pixels):
        position_std: measured centre, times length. 0.05.
        size_std: measured sides, times length. 0.05.
        angle_std_deg: measured angle, degrees. 3.0.
        accel_std: centre acceleration per frame^2, times length. 0.005.
        size_change_std: side change per frame, times length. 0.005.
        angle_accel_std_deg: angular acceleration of a parked vehicle, degrees per frame^2 (small: parked
            vehicles do not turn, so their angle jitter is averaged away). 0.01.
        angle_accel_std_deg_per_speed: added per pixel/frame of filtered speed (moving vehicles turn). 0.2.
        init_velocity_std: a new track's velocity, per frame, times length. 0.5.
        init_angle_rate_std_deg: a new track's angular rate, degrees per frame. 2.0.

    Heading (the vehicle's front, along its long side):
        heading_min_speed: filtered speed (pixels/frame) above which the heading follows the motion. 0.5.
        heading_stop_ratio: a moving track counts as stopped again below ``heading_min_speed`` times this
            (hysteresis). 0.5.
        heading_flip_votes: evidence frames (motion or detector heading) against the held heading needed to
            turn it round; the evidence is capped at this many frames either way. 5.
    """

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    match_iou: float = 0.1
    low_match_iou: float = 0.3
    centre_weight: float = 0.05
    class_switch_cost: float | None = None
    gate: str = "distance"
    gate_scale: float = 1.0
    mahalanobis_gate: float = 9.21
    square_ratio: float = 0.85
    min_hits: int = 3
    max_age: int = 60
    position_std: float = 0.05
    size_std: float = 0.05
    angle_std_deg: float = 3.0
    accel_std: float = 0.005
    size_change_std: float = 0.005
    angle_accel_std_deg: float = 0.01
    angle_accel_std_deg_per_speed: float = 0.2
    init_velocity_std: float = 0.5
    init_angle_rate_std_deg: float = 2.0
    heading_min_speed: float = 0.5
    heading_stop_ratio: float = 0.5
    heading_flip_votes: int = 5

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
                raise ValueError(f"TrackerOptions.{f.name} must be finite, got {value}")
        if not 0.0 <= self.low_score <= self.high_score <= self.new_track_score:
            raise ValueError("TrackerOptions: need 0 <= low_score <= high_score <= new_track_score, got "
                             f"{self.low_score}, {self.high_score}, {self.new_track_score}")
        if not (0.0 < self.match_iou <= 1.0 and 0.0 < self.low_match_iou <= 1.0):
            raise ValueError("TrackerOptions: match_iou and low_match_iou must be in (0, 1]")
        if self.gate not in GATES:
            raise ValueError(f"TrackerOptions.gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        if self.class_switch_cost is not None and self.class_switch_cost < 0:
            raise ValueError(f"TrackerOptions.class_switch_cost must be >= 0 or None, got {self.class_switch_cost}")
        if self.min_hits < 1 or self.max_age < 0 or self.heading_flip_votes < 1:
            raise ValueError("TrackerOptions: need min_hits >= 1, max_age >= 0, heading_flip_votes >= 1")
        positive = ("gate_scale", "mahalanobis_gate", "position_std", "size_std", "angle_std_deg", "accel_std",
                    "init_velocity_std", "heading_min_speed")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackerOptions.{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("centre_weight", "size_change_std", "angle_accel_std_deg", "angle_accel_std_deg_per_speed",
                        "init_angle_rate_std_deg")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"TrackerOptions.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.heading_stop_ratio <= 1.0 or not 0.0 < self.square_ratio <= 1.0:
            raise ValueError("TrackerOptions: heading_stop_ratio and square_ratio must be in (0, 1]")

    @property
    def max_match_cost(self) -> float:
        """The largest cost a valid pair can have (a distance-only match at the gate, with a class switch)."""
        return 1.0 + self.centre_weight + (self.class_switch_cost or 0.0)
