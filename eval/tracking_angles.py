"""Angle figures of a tracking run: angle jitter of parked vehicles and heading accuracy of moving ones.

Both use the pairs CLEAR matches (``eval.tracking_trackeval.clear_matches``: per frame, one-to-one, same
class, rotated IoU >= 0.5, last frame's pairs kept first), so they describe the same matches as MOTA.

Angle jitter (degrees): for each ground-truth track flagged ``parked: true``, the matched detection's box angle
in the frames where the track is matched, in frame order; the change between successive matched frames is
taken modulo 180 degrees into (-90, 90] (modulo 90 into (-45, 45] when the track is near-square: the median
of its ground-truth length / width at most ``NEAR_SQUARE_RATIO``, whose long side is ambiguous); the track's
jitter is the standard deviation (population, ddof=0) of those changes. Parked tracks with fewer than
``MIN_CHANGES`` changes (never or rarely matched) have none and are counted as ``tracks_short``. Reported:
median and mean over tracks.

Heading accuracy: over matched track-frames whose ground truth moves (``speed >= MOVING_SPEED`` px per
source frame) and has a heading, the share whose detection heading lies within 15 and within 45 degrees of
the ground truth's (smallest angle between the two directions); a detection without heading counts as wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from obbdet.boxes import wrap_angle

from .tracking_data import Sequence
from .tracking_trackeval import ClassData, clear_matches

NEAR_SQUARE_RATIO = 1.1  # length / width at most this: the box's angle is ambiguous modulo 90 degrees
MIN_CHANGES = 2  # a parked track needs at least this many frame-to-frame changes for a jitter value
MOVING_SPEED = 1.0  # px per source frame: ground truth at least this fast counts as moving
HEADING_TOLERANCES = (15.0, 45.0)  # degrees


def angle_change_deg(a0: np.ndarray, a1: np.ndarray, period_deg: float = 180.0) -> np.ndarray:
    """``a1 - a0`` (radians in, degrees out) taken modulo ``period_deg`` into ``(-period/2, period/2]``."""
    period = math.radians(period_deg)
    # wrap_angle wraps into [low, low + period); negating twice moves the open end to the low side
    return -np.degrees(wrap_angle(-(np.asarray(a1) - np.asarray(a0)), -period / 2, period))


def heading_error_deg(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Smallest angle in degrees ``[0, 180]`` between headings (radians); NaN where either is unknown."""
    return np.abs(np.degrees(wrap_angle(np.asarray(det) - np.asarray(gt), -math.pi, 2 * math.pi)))


@dataclass
class TrackAngles:
    """One parked ground-truth track: its matched detections' angles (radians, frame order) and GT aspect."""

    angles: list[float] = field(default_factory=list)
    aspect: list[float] = field(default_factory=list)  # ground-truth length / width per matched frame


@dataclass
class AngleFigures:
    """What one sequence (or several, merged with ``merge``) contributes to the angle figures.

    jitter: per parked track with enough changes, its jitter (degrees); tracks_short: parked tracks with too
    few matched frames; heading_errors: per eligible matched track-frame the heading error in degrees (NaN:
    no detection heading).
    """

    jitter: list[float] = field(default_factory=list)
    tracks_short: int = 0
    heading_errors: list[float] = field(default_factory=list)

    def merge(self, other: "AngleFigures") -> None:
        self.jitter += other.jitter
        self.tracks_short += other.tracks_short
        self.heading_errors += other.heading_errors

    def as_dict(self) -> dict:
        jitter = np.asarray(self.jitter)
        errors = np.asarray(self.heading_errors)
        ok = np.nan_to_num(errors, nan=math.inf)
        out = {"angle_jitter": {"tracks": len(jitter), "tracks_short": self.tracks_short,
                                "median_deg": float(np.median(jitter)) if len(jitter) else None,
                                "mean_deg": float(np.mean(jitter)) if len(jitter) else None},
               "heading": {"count": len(errors), "without_heading": int(np.isnan(errors).sum())}}
        for tol in HEADING_TOLERANCES:
            out["heading"][f"within_{tol:g}"] = float(np.mean(ok <= tol)) if len(errors) else None
        return out


def track_jitter(track: TrackAngles) -> float | None:
    """Jitter of one parked track in degrees (see the module docstring); None with too few changes."""
    if len(track.angles) < MIN_CHANGES + 1:
        return None
    angles = np.asarray(track.angles)
    period = 90.0 if np.median(track.aspect) <= NEAR_SQUARE_RATIO else 180.0
    return float(np.std(angle_change_deg(angles[:-1], angles[1:], period)))


def angle_figures(seq: Sequence, per_class: dict[str, ClassData]) -> AngleFigures:
    """Angle jitter and heading errors of one sequence over its classes."""
    out = AngleFigures()
    parked: dict[tuple[str, int], TrackAngles] = {}
    for cls, item in per_class.items():
        for t, (rows, cols) in enumerate(clear_matches(item.data)):
            gt, det = seq.gt[t], seq.det[t]
            for gi in item.gt_index[t][gt.parked[item.gt_index[t]]].tolist():  # unmatched ones count too
                parked.setdefault((cls, int(gt.track_ids[gi])), TrackAngles())
            g, d = item.gt_index[t][rows], item.det_index[t][cols]
            for gi, di in zip(g.tolist(), d.tolist()):
                if gt.parked[gi]:
                    track = parked.setdefault((cls, int(gt.track_ids[gi])), TrackAngles())
                    track.angles.append(float(det.boxes[di, 4]))
                    track.aspect.append(float(gt.boxes[gi, 2] / gt.boxes[gi, 3]))
            moving = (gt.speed[g] >= MOVING_SPEED) & ~np.isnan(gt.heading[g])
            out.heading_errors += heading_error_deg(det.heading[d[moving]], gt.heading[g[moving]]).tolist()
    for track in parked.values():
        value = track_jitter(track)
        if value is None:
            out.tracks_short += 1
        else:
            out.jitter.append(value)
    return out
