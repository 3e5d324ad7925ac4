"""Matching detections to tracks: gated candidate pairs, exact rotated-IoU costs, Hungarian assignment.

Candidates come from the project's sparse pair search (:func:`obbdet.pairs.aabb_overlap_pairs`) between each
track's gate (a square around its predicted centre) and the detections' centres, so no ``T x D`` matrix is
formed; only candidate pairs get an exact IoU (:func:`obbdet.iou.box_iou_rotated`, aligned). The assignment
is solved per connected component of the candidate graph: a lone pair is matched directly, a larger component
by :func:`scipy.optimize.linear_sum_assignment` on a matrix extended with "unmatched" slots (ByteTrack's
``lapjv(extend_cost=True, cost_limit=...)``), so one good match is never traded for two poor ones.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from obbdet.iou import box_iou_rotated
from obbdet.pairs import aabb_overlap_pairs

_EMPTY = np.zeros(0, dtype=np.int64)


def gated_pairs(centres: np.ndarray, radius: np.ndarray, det_centres: np.ndarray,
                inv_cov: np.ndarray | None = None, max_d2: float | None = None):
    """Candidate ``(track, detection)`` pairs whose detection centre lies in the track's gate.

    Args:
        centres: ``[T, 2]`` predicted track centres (pixels); radius: ``[T]`` gate radius (pixels).
        det_centres: ``[D, 2]`` detection centres.
        inv_cov, max_d2: with the Mahalanobis gate, the inverse centre innovation covariances ``[T, 2, 2]`` and
            the bound on the squared distance (``radius`` must then cover the ellipse).

    Returns:
        ``(ti [K], di [K], dist [K])``: indices and the centre distance divided by the radius (in ``[0, 1]`` for
        the distance gate; the Mahalanobis distance over its bound's square root with ``inv_cov``).
    """
    if not len(centres) or not len(det_centres):
        return _EMPTY, _EMPTY, np.zeros(0)
    gates = np.concatenate([centres - radius[:, None], centres + radius[:, None]], axis=1)
    points = np.concatenate([det_centres, det_centres], axis=1)
    ti, di = aabb_overlap_pairs(gates, points, touching=True)
    delta = det_centres[di] - centres[ti]
    if inv_cov is None:
        dist = np.hypot(delta[:, 0], delta[:, 1]) / np.maximum(radius[ti], 1e-12)
        keep = dist <= 1.0
    else:
        d2 = np.einsum("ki,kij,kj->k", delta, inv_cov[ti], delta)
        keep = d2 <= max_d2
        dist = np.sqrt(np.maximum(d2, 0.0) / max_d2)
    return ti[keep], di[keep], dist[keep]


def pair_costs(track_boxes: np.ndarray, track_labels: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
               ti: np.ndarray, di: np.ndarray, dist: np.ndarray, *, min_iou: float, distance_ok: np.ndarray,
               centre_weight: float, class_switch_cost: float | None):
    """Costs of candidate pairs, invalid ones dropped.

    Cost ``1 - IoU + centre_weight * dist (+ class_switch_cost across classes)``; a pair is valid when its IoU
    is at least ``min_iou``, or when its track may match by centre distance alone (``distance_ok [T]``: lost
    tracks whose prediction has drifted), and the classes agree unless ``class_switch_cost`` is given.
    Boxes are ``[*, 5]`` xywha (any angle range). Returns ``(ti, di, cost)`` of the valid pairs.
    """
    same = track_labels[ti] == det_labels[di]
    if class_switch_cost is None:
        ti, di, dist, same = ti[same], di[same], dist[same], same[same]
    iou = box_iou_rotated(track_boxes[ti], det_boxes[di], aligned=True) if len(ti) else np.zeros(0)
    valid = (iou >= min_iou) | distance_ok[ti]
    cost = 1.0 - iou + centre_weight * dist
    if class_switch_cost is not None:
        cost = cost + np.where(same, 0.0, class_switch_cost)
    return ti[valid], di[valid], cost[valid]


def _solve_component(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, limit: float):
    """Min-cost matching of one component's pairs, each side free to stay unmatched at ``limit / 2``."""
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    n, m = len(r_ids), len(c_ids)
    big = np.full((n + m, m + n), np.inf)
    big[r, c] = cost
    big[np.arange(n), m + np.arange(n)] = limit / 2  # row unmatched
    big[n + np.arange(m), np.arange(m)] = limit / 2  # column unmatched
    big[n:, m:] = 0.0
    ri, ci = linear_sum_assignment(big)
    real = (ri < n) & (ci < m)
    return r_ids[ri[real]], c_ids[ci[real]]


def assign(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, limit: float):
    """Matched ``(rows [K], cols [K])`` minimizing the total cost of the valid pairs ``(rows, cols, cost)``, where
    leaving a row or a column unmatched costs ``limit / 2`` (pairs costing more than ``limit`` never match).
    At most one pair per row and column is given (duplicates are an error)."""
    if not len(rows):
        return _EMPTY, _EMPTY
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    _, component = connected_components(graph, directed=False)
    pair_component = component[rows]
    size = np.bincount(pair_component, minlength=component.max() + 1)[pair_component]
    alone = (size == 1) & (cost <= limit)
    out_r, out_c = [rows[alone]], [cols[alone]]
    shared = np.flatnonzero(size > 1)
    if len(shared):
        order = shared[np.argsort(pair_component[shared], kind="stable")]
        bounds = np.flatnonzero(np.diff(pair_component[order])) + 1
        for group in np.split(order, bounds):
            r, c = _solve_component(rows[group], cols[group], cost[group], limit)
            out_r.append(r)
            out_c.append(c)
    return np.concatenate(out_r), np.concatenate(out_c)
