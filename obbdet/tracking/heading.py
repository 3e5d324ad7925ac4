"""Per-track heading (the vehicle's front) by evidence voting with hysteresis, batched over tracks.

A heading lies along the box's long side, so a track only has to know which end is the front: ``side`` is
+1 (front at the filtered angle ``a``), -1 (at ``a + pi``) or 0 (unknown). Because ``a`` is unwrapped and
follows the box as it turns, the front stays attached to the vehicle through turns without any new evidence.

Evidence, one vote per matched frame: the direction of the filtered velocity when the track moves (speed above
``heading_min_speed`` and above the velocity's own standard deviation; it stops counting as moving below
``heading_min_speed * heading_stop_ratio``), or the detector's heading when the vehicle is slow. Velocities or
headings across the box (more than 60 degrees off its axis) are no evidence. Votes are summed and capped at
``heading_flip_votes`` either way: the first vote sets an unknown side, and a held side turns round only when
the sum reaches the cap on the other side, so noise around a slow vehicle does not flip it. A stopped vehicle
without detector headings gets no votes: its heading is held.
"""
from __future__ import annotations

import math

import numpy as np

from obbdet.boxes import snap_heading_to_axis
from obbdet.tracking.kalman import A, VX, VY

AXIS_COS = 0.5  # evidence within 60 degrees of the box axis counts
SPEED_SIGMAS = 1.0  # "moving" needs the speed this many velocity standard deviations above zero


def update_heading(side: np.ndarray, votes: np.ndarray, moving: np.ndarray, x: np.ndarray, p: np.ndarray,
                   matched: np.ndarray, det_heading: np.ndarray, opts):
    """New ``(side [T] int8, votes [T] float, moving [T] bool)`` of tracks with states ``x [T, 8]`` and
    covariances ``p [T, 8, 8]``; ``matched [T]`` bool marks tracks with a detection this frame and
    ``det_heading [T]`` its heading (radians, NaN unknown)."""
    vx, vy, a = x[:, VX], x[:, VY], x[:, A]
    speed = np.hypot(vx, vy)
    velocity_std = np.sqrt(np.maximum(0.5 * (p[:, VX, VX] + p[:, VY, VY]), 0.0))
    start = (speed > opts.heading_min_speed) & (speed > SPEED_SIGMAS * velocity_std)
    moving = np.where(moving, speed > opts.heading_min_speed * opts.heading_stop_ratio, start)
    cos_motion = (vx * np.cos(a) + vy * np.sin(a)) / np.maximum(speed, 1e-12)
    evidence = np.where(matched & moving & (np.abs(cos_motion) >= AXIS_COS), np.sign(cos_motion), 0.0)
    known = np.isfinite(det_heading)
    cos_det = np.cos(np.where(known, det_heading, 0.0) - a)
    use_det = matched & ~moving & known & (np.abs(cos_det) >= AXIS_COS)
    evidence = np.where(use_det, np.sign(cos_det), evidence)
    cap = float(opts.heading_flip_votes)
    votes = np.clip(votes + evidence, -cap, cap)
    side = np.where((side == 0) & (votes != 0), np.sign(votes), side)
    side = np.where(side * votes <= -cap, -side, side).astype(np.int8)
    return side, votes, moving


def heading_of(side: np.ndarray, x: np.ndarray, out_angle: np.ndarray) -> np.ndarray:
    """Headings ``[T]`` in radians ``[-pi, pi)`` (NaN where unknown), snapped onto the output boxes' le90 angles
    ``out_angle [T]`` (the front end of the long side, as the obb_json convention asks)."""
    raw = np.where(side == 0, np.nan, x[:, A] + np.where(side < 0, math.pi, 0.0))
    return snap_heading_to_axis(raw, out_angle)
