"""Reading tracking sequences: folders of per-frame obb_json files, ground truth beside detections.

Layout: ``<root>/<sequence>/<frame:06d>.json``, the file stem being the 0-based frame number of the source
video. Every sequence folder of the ground truth is evaluated against the folder of the same name under the
detections. Objects carry ``track_id`` (int >= 1); ground truth may add ``speed`` (px per source frame),
``parked`` (bool) and ``heading`` (degrees, read into radians by ``obbdet.formats``).

Frames evaluated (``Sequence.frames``): the ground truth's frames. A ground-truth frame without a detection
file is a frame without detections (warned once, with the count); with ``common_frames`` only frames present
on both sides are evaluated (detections run with ``--every N``). A detection folder missing entirely is
warned about and its sequence is evaluated with no detections (all misses), ``common_frames`` or not.
Detection frames without a ground-truth file are not evaluated (warned once, with the count): the ground
truth defines the timeline. Objects with ``ignore: true`` are dropped from both sides; malformed files are
an :class:`~eval.errors.EvalInputError` naming the file (and object).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from obbdet.boxes import BOX_DIM
from obbdet.structures import ImageLabels

from .errors import EXIT_BAD_INPUT, EXIT_USAGE, EvalInputError, WarningLog
from .loading import check_folder, load_folder, rename_classes


@dataclass
class FrameObjects:
    """One frame's objects of one side (ground truth or detections), ``ignore`` objects removed.

    boxes ``[N, 5]`` float64 xywha (le90: pixels, radians, ``w >= h``, ``a`` in ``[-pi/2, pi/2)``);
    classes: N names; track_ids ``[N]`` int64 (>= 1); heading ``[N]`` radians in ``[-pi, pi)``, NaN unknown;
    difficult ``[N]`` bool; speed ``[N]`` float64 px per source frame, NaN unknown; parked ``[N]`` bool
    (ground truth; False when absent).
    """

    boxes: np.ndarray
    classes: list[str]
    track_ids: np.ndarray
    heading: np.ndarray
    difficult: np.ndarray
    speed: np.ndarray
    parked: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "FrameObjects":
        return cls(np.zeros((0, BOX_DIM)), [], np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool),
                   np.zeros(0), np.zeros(0, bool))


@dataclass
class Sequence:
    """One sequence: ``frames`` (frame numbers evaluated, ascending) and per frame ``gt`` and ``det``."""

    name: str
    frames: list[int]
    gt: list[FrameObjects]
    det: list[FrameObjects]
    has_detections: bool = True  # False when the detection folder of this sequence does not exist
    left_out: int = 0  # ground-truth frames without a detection file left out by common_frames


def _bad(path: Path, index: int, reason: str, value) -> EvalInputError:
    got = "missing" if value is None else f"got {value!r}"
    return EvalInputError(f"{path}: object {index}: {reason} ({got})", EXIT_BAD_INPUT)


def frame_objects(labels: ImageLabels, path: Path, detections: bool = False) -> FrameObjects:
    """The tracking view of one file's labels; track ids, speed and parked checked (errors name ``path``)."""
    n = len(labels)
    extras = labels.extras or [{} for _ in range(n)]
    keep = np.flatnonzero(~labels.ignore)
    track_ids = np.zeros(len(keep), np.int64)
    speed = np.full(len(keep), math.nan)
    parked = np.zeros(len(keep), bool)
    for k, i in enumerate(keep):
        extra = extras[i]
        tid = extra.get("track_id")
        if type(tid) is not int or tid < 1:
            hint = "; track detections first with python -m obbdet.tracking" if detections else ""
            raise _bad(path, int(i), f"needs an integer track_id >= 1{hint}", tid)
        track_ids[k] = tid
        value = extra.get("speed")
        if value is not None:
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise _bad(path, int(i), "speed must be a finite number >= 0 (px per frame)", value)
            speed[k] = value
        flag = extra.get("parked", False)
        if type(flag) is not bool:
            raise _bad(path, int(i), "parked must be true or false", flag)
        parked[k] = flag
    classes = [labels.classes[i] for i in keep]
    seen: dict[tuple[str, int], int] = {}
    for k, key in enumerate(zip(classes, track_ids.tolist())):
        if key in seen:
            raise EvalInputError(f"{path}: objects {keep[seen[key]]} and {keep[k]} share track_id {key[1]} "
                                 f"(class {key[0]}); a track appears once per frame", EXIT_BAD_INPUT)
        seen[key] = k
    heading = labels.heading[keep] if labels.heading is not None else np.full(len(keep), math.nan)
    return FrameObjects(labels.boxes[keep], classes, track_ids, heading, labels.difficult[keep], speed, parked)


def _frame_number(key: str, path: Path) -> int:
    if not key.isdigit():
        raise EvalInputError(f"{path}: not a frame file: names must be frame numbers (<frame:06d>.json)",
                             EXIT_BAD_INPUT)
    return int(key)


def _read_frames(folder: Path, detections: bool, warnings: WarningLog, renames: dict) -> dict[int, FrameObjects]:
    labels, sources = load_folder(folder, "obb_json", detections=detections, warnings=warnings)
    if not detections:
        labels = rename_classes(labels, renames)
    frames = {}
    for key, item in labels.items():
        frames[_frame_number(key, sources[key])] = frame_objects(item, sources[key], detections)
    return frames


def _sequence_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class _Gaps:
    """Counts behind the once-per-run warnings about frames on one side only."""

    missing: int = 0  # ground-truth frames without a detection file
    missing_example: str = ""
    extra: int = 0  # detection frames without a ground-truth file
    extra_example: str = ""
    gt_frames: int = 0


def load_sequences(gt_root, det_root, *, warnings: WarningLog, common_frames: bool = False,
                   renames: dict | None = None) -> list[Sequence]:
    """Every ground-truth sequence with its detections (see the module docstring for the rules).

    renames: ground-truth class renames (``eval.loading.parse_renames``). Raises EvalInputError for missing
    folders, ground truth without sequence folders, non-numeric frame names and malformed files.
    """
    gt_root = check_folder(gt_root, "ground-truth")
    det_root = check_folder(det_root, "detection")
    names = _sequence_folders(gt_root)
    if not names:
        raise EvalInputError(f"{gt_root}: no sequence folders (expected <gt>/<sequence>/<frame:06d>.json)",
                             EXIT_USAGE)
    strays = sorted(set(_sequence_folders(det_root)) - set(names))
    if strays:
        warnings.add("det-only-sequences", f"{det_root}: {len(strays)} detection sequence folder(s) without "
                     f"ground truth not evaluated (e.g. {strays[0]})")
    gaps = _Gaps()
    sequences = []
    for name in names:
        gt = _read_frames(gt_root / name, False, warnings, renames or {})
        gaps.gt_frames += len(gt)
        det_folder = det_root / name
        if not det_folder.is_dir():
            warnings.add(f"missing-sequence-{name}", f"{det_folder}: no detection folder for sequence {name}: "
                         f"its {sum(len(f) for f in gt.values())} ground-truth objects all count as misses")
            frames = sorted(gt)
            sequences.append(Sequence(name, frames, [gt[f] for f in frames], [FrameObjects.empty()] * len(frames),
                                      has_detections=False))
            continue
        det = _read_frames(det_folder, True, warnings, {})
        missing = sorted(set(gt) - set(det))
        extra = sorted(set(det) - set(gt))
        if missing and not gaps.missing_example:
            gaps.missing_example = str(det_folder / f"{missing[0]:06d}.json")
        if extra and not gaps.extra_example:
            gaps.extra_example = str(det_folder / f"{extra[0]:06d}.json")
        gaps.extra += len(extra)
        frames = sorted(set(gt) & set(det)) if common_frames else sorted(gt)
        if not common_frames:
            gaps.missing += len(missing)
        sequences.append(Sequence(name, frames, [gt[f] for f in frames],
                                  [det.get(f) or FrameObjects.empty() for f in frames],
                                  left_out=len(missing) if common_frames else 0))
    _warn_gaps(gaps, warnings)
    return sequences


def _warn_gaps(gaps: _Gaps, warnings: WarningLog) -> None:
    if gaps.missing:
        warnings.add("missing-frames", f"{gaps.missing} of {gaps.gt_frames} ground-truth frames have no detection "
                     f"file (e.g. {gaps.missing_example}): evaluated as frames without detections (use "
                     f"--common-frames for detections run with --every N)")
    if gaps.extra:
        warnings.add("extra-frames", f"{gaps.extra} detection frames have no ground-truth file (e.g. "
                     f"{gaps.extra_example}): not evaluated")
