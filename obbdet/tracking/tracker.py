"""Multi-object tracker for oriented boxes: ByteTrack's two-stage association on exact rotated IoU, a batched
constant-velocity Kalman filter with the angle filtered on its circle, and per-track headings.

One :meth:`Tracker.update` per frame (frame numbers may skip: the filter predicts over the gap):

1. predict every track ``dt`` frames ahead (``dt``: the difference of frame numbers);
2. high-score detections (``>= high_score``) are matched to all tracks (confirmed, tentative and lost) by
   Hungarian assignment on ``1 - IoU`` plus a small centre-distance term, within a motion gate and within a
   class; lost tracks may also match by centre distance alone inside their gate (the prediction drifted while
   the vehicle was hidden);
3. low-score detections (``[low_score, high_score)``) are matched by IoU to the confirmed tracks left over;
4. matched tracks are corrected; tentative tracks that miss a frame are dropped; confirmed tracks without a
   detection for more than ``max_age`` frames are removed; tentative tracks with ``min_hits`` consecutive
   matches are confirmed and get the next id;
5. unmatched detections scoring at least ``new_track_score`` start tentative tracks (confirmed at once on the
   sequence's first frame);
6. headings are voted (:mod:`obbdet.tracking.heading`).

The confirmed tracks matched in this frame are returned, with filtered boxes in le90 ``xywha``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obbdet.boxes import BOX_DIM, normalize_xywha
from obbdet.structures import ImageLabels
from obbdet.tracking.association import assign, gated_pairs, pair_costs
from obbdet.tracking.heading import heading_of, update_heading
from obbdet.tracking.kalman import A, L, MEAS_INDEX, STATE_DIM, VX, VY, W, BoxKalman, align_measurements
from obbdet.tracking.options import TrackerOptions


@dataclass
class TrackedObjects:
    """The confirmed tracks matched in one frame (``M`` of them).

    boxes: ``[M, 5]`` float64 filtered boxes, le90 xywha (pixels, radians).
    scores: ``[M]`` the matched detections' scores. labels: ``[M]`` int64 class indices.
    track_ids: ``[M]`` int64, >= 1. headings: ``[M]`` radians in ``[-pi, pi)``, NaN while unknown, along the
    box's long side (``heading == angle (mod pi)``). speeds: ``[M]`` filtered speed, pixels per source frame.
    detection_index: ``[M]`` int64 row of the update's input each track was matched to.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray
    headings: np.ndarray
    speeds: np.ndarray
    detection_index: np.ndarray

    def __len__(self) -> int:
        return len(self.track_ids)

    def to_labels(self, class_names, image=None, width=None, height=None) -> ImageLabels:
        """ImageLabels with class names ``class_names[label]``, ``heading`` and extras ``track_id``, ``speed``."""
        extras = [{"track_id": int(i), "speed": float(s)} for i, s in zip(self.track_ids, self.speeds)]
        return ImageLabels(image=image, width=width, height=height, boxes=self.boxes.copy(),
                           classes=[class_names[int(k)] for k in self.labels], scores=self.scores.copy(),
                           heading=self.headings.copy(), extras=extras)


class _Tracks:
    """Track state as parallel arrays (one row per track)."""

    FIELDS = ("x", "p", "label", "track_id", "hits", "missed", "confirmed", "side", "votes", "moving")

    def __init__(self):
        self.x = np.zeros((0, STATE_DIM))
        self.p = np.zeros((0, STATE_DIM, STATE_DIM))
        self.label = np.zeros(0, np.int64)
        self.track_id = np.zeros(0, np.int64)  # 0 while tentative
        self.hits = np.zeros(0, np.int64)  # consecutive matched frames
        self.missed = np.zeros(0, np.int64)  # frames since the last detection
        self.confirmed = np.zeros(0, bool)
        self.side = np.zeros(0, np.int8)  # heading: +1 at angle, -1 at angle + pi, 0 unknown
        self.votes = np.zeros(0)
        self.moving = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.x)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def append(self, **values) -> None:
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), values[name]]))


def _check_inputs(boxes, scores, labels, headings):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, BOX_DIM)  # an empty frame may come as [] or [0, k]
    if boxes.ndim != 2 or boxes.shape[1] != BOX_DIM:
        raise ValueError(f"Tracker.update: boxes must be [N, {BOX_DIM}], got {boxes.shape}")
    n = len(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(scores) != n or len(labels) != n:
        raise ValueError(f"Tracker.update: {n} boxes but {len(scores)} scores and {len(labels)} labels")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Tracker.update: labels must be integer class indices, got {labels.dtype}")
    if not np.isfinite(boxes).all() or not np.isfinite(scores).all():
        raise ValueError("Tracker.update: boxes and scores must be finite")
    if n and not (boxes[:, 2:4] > 0).all():
        raise ValueError("Tracker.update: box sides must be > 0")
    if headings is None:
        headings = np.full(n, np.nan)
    else:
        headings = np.asarray(headings, dtype=np.float64).reshape(-1)
        if len(headings) != n:
            raise ValueError(f"Tracker.update: {n} boxes but {len(headings)} headings")
    return normalize_xywha(boxes), scores, labels.astype(np.int64), headings


class Tracker:
    """Tracks oriented boxes across the frames of one sequence (see the module notes); ``options``: TrackerOptions."""

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.kalman = BoxKalman(self.options)
        self.tracks = _Tracks()
        self._last_matched = np.zeros(0, np.int64)  # per track: the input row matched in the last update
        self.frame: int | None = None  # number of the last frame seen
        self.next_id = 1

    def update(self, boxes, scores, labels, headings=None, frame: int | None = None) -> TrackedObjects:
        """Advance to ``frame`` with its detections and return the confirmed tracks matched in it.

        Args:
            boxes: ``[N, 5]`` le90 xywha (pixels, radians). scores: ``[N]``. labels: ``[N]`` int class indices.
            headings: ``[N]`` radians in ``[-pi, pi)``, NaN where unknown, or None.
            frame: the frame number; larger than the previous one (gaps allowed: ``dt`` = the difference).
                None: the previous number plus one (0 for the first frame).
        """
        o = self.options
        boxes, scores, labels, headings = _check_inputs(boxes, scores, labels, headings)
        frame = (0 if self.frame is None else self.frame + 1) if frame is None else int(frame)
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"Tracker.update: frame {frame} does not follow frame {self.frame}")
        first = self.frame is None
        dt = 1 if first else frame - self.frame
        self.frame = frame
        t = self.tracks
        if len(t):
            t.x, t.p = self.kalman.predict(t.x, t.p, float(dt))
            t.missed = t.missed + dt
        matched_det = np.full(len(t), -1, np.int64)
        high = np.flatnonzero(scores >= o.high_score)
        low = np.flatnonzero((scores >= o.low_score) & (scores < o.high_score))
        lost = t.confirmed & (t.missed > dt)
        self._match(high, boxes, labels, o.match_iou, lost, matched_det, np.ones(len(t), bool))
        self._match(low, boxes, labels, o.low_match_iou, np.zeros(len(t), bool), matched_det, t.confirmed)
        self._correct(matched_det, boxes, labels, headings)
        self._start_tracks(matched_det, boxes, labels, scores, headings, first)
        return self._output(scores)

    # -- steps ---------------------------------------------------------------------------------------

    def _match(self, dets: np.ndarray, boxes, labels, min_iou: float, distance_ok, matched_det, eligible) -> None:
        """Match detections ``dets`` (indices) to the ``eligible`` tracks not matched yet; fills ``matched_det``."""
        o, t = self.options, self.tracks
        free = np.flatnonzero((matched_det < 0) & eligible)
        if not len(dets) or not len(free):
            return
        x = t.x[free]
        speed = np.hypot(x[:, VX], x[:, VY])
        centres, det_centres = x[:, :2], boxes[dets, :2]
        if o.gate == "mahalanobis":
            cov = self.kalman.position_covariance(x, t.p[free])
            radius = np.sqrt(o.mahalanobis_gate * np.linalg.eigvalsh(cov)[:, -1])
            ti, di, dist = gated_pairs(centres, radius, det_centres, np.linalg.inv(cov), o.mahalanobis_gate)
        else:
            radius = o.gate_scale * (x[:, L] + speed * t.missed[free])
            ti, di, dist = gated_pairs(centres, radius, det_centres)
        track_boxes = x[:, MEAS_INDEX]
        ti, di, cost = pair_costs(track_boxes, t.label[free], boxes[dets], labels[dets], ti, di, dist,
                                  min_iou=min_iou, distance_ok=distance_ok[free], centre_weight=o.centre_weight,
                                  class_switch_cost=o.class_switch_cost)
        rows, cols = assign(ti, di, cost, o.max_match_cost + 1e-9)
        matched_det[free[rows]] = dets[cols]

    def _correct(self, matched_det, boxes, labels, headings) -> None:
        """Kalman-correct matched tracks, age the others, confirm and remove; then vote headings."""
        o, t = self.options, self.tracks
        hit = matched_det >= 0
        rows, dets = np.flatnonzero(hit), matched_det[hit]
        if len(rows):
            x = t.x[rows]
            z = align_measurements(boxes[dets], x[:, A], x[:, W] / np.maximum(x[:, L], 1e-12), o.square_ratio)
            t.x[rows], t.p[rows] = self.kalman.update(x, t.p[rows], z)
            t.missed[rows] = 0
            t.hits[rows] += 1
            t.label[rows] = labels[dets]
        t.hits[~hit] = 0
        det_heading = np.where(hit, headings[np.maximum(matched_det, 0)] if len(headings) else np.nan, np.nan)
        t.side, t.votes, t.moving = update_heading(t.side, t.votes, t.moving, t.x, t.p, hit, det_heading, o)
        confirm = ~t.confirmed & (t.hits >= o.min_hits)
        t.track_id[confirm] = np.arange(self.next_id, self.next_id + confirm.sum())
        self.next_id += int(confirm.sum())
        t.confirmed |= confirm
        alive = np.where(t.confirmed, t.missed <= o.max_age, hit)
        self._last_matched = matched_det[alive]
        t.keep(alive)

    def _start_tracks(self, matched_det, boxes, labels, scores, headings, first: bool) -> None:
        """Tentative (or, on the first frame, confirmed) tracks from the unmatched confident detections."""
        o, t = self.options, self.tracks
        used = np.zeros(len(boxes), bool)
        used[matched_det[matched_det >= 0]] = True
        new = np.flatnonzero(~used & (scores >= o.new_track_score))
        if not len(new):
            return
        x, p = self.kalman.initiate(boxes[new])
        k = len(new)
        confirmed = np.full(k, first or o.min_hits <= 1)
        ids = np.where(confirmed, self.next_id + np.cumsum(confirmed) - 1, 0)
        self.next_id += int(confirmed.sum())
        side, votes, moving = update_heading(np.zeros(k, np.int8), np.zeros(k), np.zeros(k, bool), x, p,
                                             np.ones(k, bool), headings[new], o)  # the detector's heading, if any
        t.append(x=x, p=p, label=labels[new], track_id=ids.astype(np.int64), hits=np.ones(k, np.int64),
                 missed=np.zeros(k, np.int64), confirmed=confirmed, side=side, votes=votes, moving=moving)
        self._last_matched = np.concatenate([self._last_matched, new])

    def _output(self, scores) -> TrackedObjects:
        t = self.tracks
        show = np.flatnonzero(t.confirmed & (t.missed == 0))
        x = t.x[show]
        out = normalize_xywha(x[:, MEAS_INDEX]) if len(show) else np.zeros((0, BOX_DIM))
        dets = self._last_matched[show]
        return TrackedObjects(boxes=out, scores=scores[dets], labels=t.label[show].copy(),
                              track_ids=t.track_id[show].copy(), headings=heading_of(t.side[show], x, out[:, 4]),
                              speeds=np.hypot(x[:, VX], x[:, VY]), detection_index=dets.astype(np.int64))
