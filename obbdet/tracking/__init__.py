"""Multi-object tracking of oriented boxes (numpy and scipy only; imports nothing above the core).

    from obbdet.tracking import Tracker, TrackerOptions
    tracker = Tracker(TrackerOptions())
    out = tracker.update(boxes, scores, labels, headings=None, frame=k)   # -> TrackedObjects

:func:`track_sequence` tracks a sequence of obb_json detections; ``python -m obbdet.tracking DET_DIR --out OUT``
(console script ``obbdet-track``) tracks folders of per-frame obb_json files and writes the tracks CSV
(:mod:`obbdet.tracking.sequence` documents its columns).
"""
from obbdet.tracking.options import TrackerOptions
from obbdet.tracking.sequence import read_tracks_csv, track_sequence, tracks_csv_rows, write_tracks_csv
from obbdet.tracking.tracker import TrackedObjects, Tracker

__all__ = ["Tracker", "TrackerOptions", "TrackedObjects", "track_sequence", "tracks_csv_rows", "write_tracks_csv",
           "read_tracks_csv"]
