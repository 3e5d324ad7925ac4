"""Draw ground truth and detections with their evaluation outcome, plus contact sheets and a gallery.

    python tools/draw_obb.py GT_DIR DET_DIR [--images DIR] [--iou 0.5] [--score 0.3] [--only fp|fn|all]
                             [--out DIR]
    python tools/draw_obb.py LABELS_DIR [--images DIR] [--out DIR]          # labels only, one colour per class

Each detection scoring at least ``--score`` is matched to the ground truth of its image exactly as the
evaluation does (``eval.match_image``: per class, by score, exact rotated IoU >= ``--iou``). Colours (RGB):

- green: true-positive detection;  red: false-positive detection (caption shows its best IoU);
- yellow: missed ground truth;  thin cyan: matched ground truth;
- grey: difficult ground truth and detections matched to it (neither TP nor FP).

Captions show the class and score (``--captions``: in crowded scenes only on errors by default); arrows
show the heading where the labels carry one. Objects marked
``ignore`` in the ground truth are dropped, as in the evaluation.

Output (``--out``, default ``out/draw_obb``): ``images/<stem>.jpg`` (drawn images), ``thumbs/``,
``false_positives.jpg`` (the highest-scoring false positives, cropped with context, sorted by score; the
nearest ground truth in thin cyan), ``missed.jpg`` (missed ground truth, largest first; the nearest
detection in thin red), and ``index.html`` linking them all. ``--only fp`` draws only images with a false
positive (and only the false-positive sheet), ``--only fn`` only images with a miss. Images are found by
stem in ``--images``, else beside the label folders (the folder itself or a sibling ``images/``);
a missing image is a warning, and that image is skipped.
"""
from __future__ import annotations

import argparse
import html
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from obbdet.eval.errors import EvalInputError  # noqa: E402
from obbdet.formats import LabelFormatError  # noqa: E402
from obbdet.io_utils import atomic_write_text  # noqa: E402
from obbdet.structures import ImageLabels  # noqa: E402
from obbdet.imageio import find_image, read_image_rgb, write_image_rgb  # noqa: E402
from obbdet.visualize import (CAPTION_MODES, OUTCOME_COLORS, OUTCOME_DESCRIPTIONS, contact_sheet,  # noqa: E402
                              crop_with_context, crowded, draw_labels, draw_outcomes, thumbnail)
from obbdet.tools.labelsets import FORMAT_CHOICES, ToolInputError, read_label_set, select_objects  # noqa: E402

logger = logging.getLogger("draw_obb")


# ---------------------------------------------------------------------------------------------------
# Matching outcomes
# ---------------------------------------------------------------------------------------------------

@dataclass
class Outcomes:
    """One image's evaluation outcome at one IoU threshold.

    det_status: ``[D]`` of ``"tp"``, ``"fp"``, ``"ignored"``; det_gt: ``[D]`` int64 index of the GT each
    detection was compared with (-1 if none); det_iou: ``[D]`` float64 that IoU (0 if none);
    gt_status: ``[G]`` of ``"matched"``, ``"missed"``, ``"ignored"`` (difficult GT).
    """

    det_status: list[str]
    det_gt: np.ndarray
    det_iou: np.ndarray
    gt_status: list[str]

    def count(self, status: str) -> int:
        return self.det_status.count(status) if status in ("tp", "fp") else self.gt_status.count(status)


def drop_ignored(gt: ImageLabels | None) -> ImageLabels | None:
    """Ground truth without ``ignore`` markers (the evaluation drops them entirely)."""
    if gt is None or not gt.ignore.any():
        return gt
    return select_objects(gt, ~gt.ignore)


def match_outcomes(gt: ImageLabels | None, det: ImageLabels | None, iou_threshold: float) -> Outcomes:
    """Match one image's detections to its ground truth with ``eval.match_image`` (the evaluation's rules).

    Pass ``gt`` through :func:`drop_ignored` first so indices match the drawn objects; either may be None.
    """
    from obbdet.eval import match_image

    gt = gt if gt is not None else ImageLabels()
    det = det if det is not None else ImageLabels(scores=np.zeros(0))
    match = match_image(gt, det, iou_threshold)
    gt_status = ["ignored" if match.gt_ignored[i] else "matched" if match.gt_matched[i] else "missed"
                 for i in range(len(gt))]
    return Outcomes(det_status=[str(s) for s in match.status], det_gt=np.asarray(match.gt_index, np.int64),
                    det_iou=np.asarray(match.iou, np.float64), gt_status=gt_status)


# ---------------------------------------------------------------------------------------------------
# Score threshold
# ---------------------------------------------------------------------------------------------------

def _filter_scores(det: ImageLabels | None, threshold: float) -> ImageLabels | None:
    if det is None or det.scores is None:
        return det
    return select_objects(det, det.scores >= threshold)


# ---------------------------------------------------------------------------------------------------
# Crops for the contact sheets
# ---------------------------------------------------------------------------------------------------

@dataclass
class CropRecord:
    """One object to show on a contact sheet: ``box [5]`` xywha; ``partner`` the nearest counterpart box."""

    stem: str
    index: int
    box: np.ndarray
    caption: str
    sort_key: float
    partner: np.ndarray | None = None
    tile: np.ndarray | None = None


def _fp_records(stem: str, det: ImageLabels, gt: ImageLabels, out: Outcomes) -> list[CropRecord]:
    records = []
    for i, status in enumerate(out.det_status):
        if status != "fp":
            continue
        partner = gt.boxes[out.det_gt[i]] if out.det_gt[i] >= 0 else None
        caption = f"{det.classes[i]} {det.scores[i]:.2f} IoU {out.det_iou[i]:.2f} {stem}"
        records.append(CropRecord(stem, i, det.boxes[i], caption, float(det.scores[i]), partner))
    return records


def _missed_records(stem: str, gt: ImageLabels, det: ImageLabels) -> list[CropRecord]:
    """Records for ``gt`` (the missed objects only); the partner is the detection overlapping most."""
    from obbdet.iou import box_iou_rotated

    if not len(gt):
        return []
    ious = box_iou_rotated(gt.boxes, det.boxes) if len(det) else np.zeros((len(gt), 0))
    records = []
    for i in range(len(gt)):
        partner, best = None, 0.0
        if ious.shape[1] and ious[i].max() > 0:
            j = int(np.argmax(ious[i]))
            partner, best = det.boxes[j], float(ious[i, j])
        area = float(gt.boxes[i, 2] * gt.boxes[i, 3])
        caption = f"{gt.classes[i]} best IoU {best:.2f} {stem}"
        records.append(CropRecord(stem, i, gt.boxes[i], caption, area, partner))
    return records


def _select_top(records: list[CropRecord], limit: int, what: str) -> list[CropRecord]:
    """Highest ``sort_key`` first (stable: reading order on ties); a cap that warns, never silently."""
    ranked = sorted(records, key=lambda r: -r.sort_key)
    if len(ranked) > limit:
        print(f"warning: the {what} sheet shows {limit} of {len(ranked)} (raise --sheet-max to see more)",
              file=sys.stderr)
    return ranked[:limit]


def _make_tiles(image_rgb: np.ndarray, records: list[CropRecord], color, partner_color, args) -> None:
    for record in records:
        extra = [(record.partner, partner_color)] if record.partner is not None else []
        record.tile = crop_with_context(image_rgb, record.box, context=args.context, tile_size=args.tile,
                                        color=color, extra_boxes=extra)


def _write_sheet(path: Path, records: list[CropRecord], title: str) -> bool:
    tiles = [r.tile for r in records if r.tile is not None]
    captions = [r.caption for r in records if r.tile is not None]
    write_image_rgb(path, contact_sheet(tiles, captions, columns=8, title=title))
    return True


# ---------------------------------------------------------------------------------------------------
# Gallery
# ---------------------------------------------------------------------------------------------------

@dataclass
class GalleryEntry:
    stem: str
    image: str
    thumb: str
    counts: dict[str, int]


def _href(relative_path: str) -> str:
    """A relative link, percent-encoded (file stems may hold '#', '?', '%' or spaces) and HTML-escaped."""
    return html.escape(quote(relative_path))


def _legend_html(evaluated: bool) -> str:
    if not evaluated:
        return "<p>Labels only: one colour per class.</p>"
    items = []
    for key, (r, g, b) in OUTCOME_COLORS.items():
        items.append(f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'
                     f"{html.escape(OUTCOME_DESCRIPTIONS[key])}")
    return "<p>" + " &nbsp; ".join(items) + "</p>"


def write_index_html(path: Path, entries: list[GalleryEntry], sheets: list[tuple[str, str]], summary: str,
                     evaluated: bool) -> None:
    """The gallery page: legend, summary, contact sheets, then one thumbnail per image linking to it."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>draw_obb</title><style>",
             "body{font-family:sans-serif;background:#222;color:#ddd}a{color:#8cf}",
             ".sw{display:inline-block;width:14px;height:14px;margin-right:4px;vertical-align:middle}",
             ".g{display:flex;flex-wrap:wrap;gap:8px}.c{width:330px}.c img{max-width:320px}",
             "</style></head><body><h1>draw_obb</h1>", _legend_html(evaluated), f"<p>{html.escape(summary)}</p>"]
    for title, rel in sheets:
        parts.append(f"<h2>{html.escape(title)}</h2><a href='{_href(rel)}'><img src='{_href(rel)}' "
                     "style='max-width:100%'></a>")
    parts.append("<h2>Images</h2><div class='g'>")
    for e in entries:
        counts = ", ".join(f"{k} {v}" for k, v in e.counts.items())
        parts.append(f"<div class='c'><a href='{_href(e.image)}'><img src='{_href(e.thumb)}'></a>"
                     f"<br>{html.escape(e.stem)}<br><small>{html.escape(counts)}</small></div>")
    parts.append("</div></body></html>")
    atomic_write_text(path, "\n".join(parts) + "\n")


# ---------------------------------------------------------------------------------------------------
# Main flow
# ---------------------------------------------------------------------------------------------------

def _image_folders(args) -> list[Path]:
    folders = [args.images] if args.images is not None else []
    for labels_dir in (args.gt_dir, args.det_dir):
        if labels_dir is not None:
            folders += [labels_dir, labels_dir.parent / "images"]
    return folders


def _wanted(only: str, out: Outcomes | None) -> bool:
    if out is None or only == "all":
        return True
    return out.count("fp") > 0 if only == "fp" else out.count("missed") > 0


def run(args) -> int:
    """Draw everything; returns the exit status (1 when label files were skipped, else 0)."""
    gt, gt_skipped, _ = read_label_set(args.gt_dir, args.gt_format, False if args.det_dir else None, args)
    det, det_skipped = None, 0
    if args.det_dir is not None:
        det, det_skipped, _ = read_label_set(args.det_dir, args.det_format, True, args)
    out_dir = args.out
    for sub in ("images", "thumbs"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    evaluated = det is not None
    stems = sorted(set(gt) | set(det or {}))
    if evaluated:
        _warn_unpaired(gt, det)
    plan = _plan(stems, gt, det, args) if evaluated else None
    entries, missing = _draw_all(stems, gt, det, plan, args, out_dir)
    sheets = _write_sheets(plan, args, out_dir) if evaluated else []
    summary = _summary(stems, entries, plan, missing, args)
    entries.sort(key=lambda e: (-(e.counts.get("FP", 0) + e.counts.get("missed", 0)), e.stem))
    write_index_html(out_dir / "index.html", entries, sheets, summary, evaluated)
    print(summary)
    print(f"wrote {out_dir / 'index.html'}")
    skipped = gt_skipped + det_skipped
    if skipped:
        print(f"error: {skipped} label file(s) skipped (see above)", file=sys.stderr)
    return 1 if skipped else 0


def _warn_unpaired(gt: dict, det: dict) -> None:
    only_det = [s for s in det if s not in gt]
    if only_det:
        n = sum(len(det[s]) for s in only_det)
        print(f"warning: {len(only_det)} detection file(s) have no ground truth file (e.g. {only_det[0]}); "
              f"their {n} detection(s) are false positives", file=sys.stderr)


@dataclass
class Plan:
    """Per-image outcomes and the objects chosen for the contact sheets."""

    gt: dict[str, ImageLabels]
    det: dict[str, ImageLabels]
    outcomes: dict[str, Outcomes]
    fp_records: list[CropRecord]
    missed_records: list[CropRecord]
    fp_total: int = 0
    missed_total: int = 0


def _plan(stems: list[str], gt_all: dict, det_all: dict, args) -> Plan:
    from tqdm import tqdm

    gt, det, outcomes, fps, misses = {}, {}, {}, [], []
    for stem in tqdm(stems, desc="matching", unit="image", leave=False):
        gt[stem] = drop_ignored(gt_all.get(stem)) or ImageLabels()
        det[stem] = _filter_scores(det_all.get(stem), args.score) or ImageLabels(scores=np.zeros(0))
        out = outcomes[stem] = match_outcomes(gt[stem], det[stem], args.iou)
        if args.only in ("fp", "all"):
            fps += _fp_records(stem, det[stem], gt[stem], out)
        if args.only in ("fn", "all"):
            missed = select_objects(gt[stem], np.array([s == "missed" for s in out.gt_status], bool))
            misses += _missed_records(stem, missed, det[stem])
    return Plan(gt, det, outcomes, _select_top(fps, args.sheet_max, "false-positive"),
                _select_top(misses, args.sheet_max, "missed"), len(fps), len(misses))


def _draw_all(stems, gt_all, det_all, plan: Plan | None, args, out_dir: Path):
    from tqdm import tqdm

    folders = _image_folders(args)
    by_stem: dict[str, list] = {}
    if plan is not None:
        for kind, records in (("fp", plan.fp_records), ("missed", plan.missed_records)):
            for r in records:
                by_stem.setdefault(r.stem, []).append((kind, r))
    entries, missing = [], []
    for stem in tqdm(stems, desc="drawing", unit="image", leave=False):
        out = plan.outcomes[stem] if plan is not None else None
        if not _wanted(args.only, out) and stem not in by_stem:
            continue
        path = find_image(stem, folders)
        if path is None:
            missing.append(stem)
            print(f"warning: no image for {stem!r} in {', '.join(str(f) for f in folders if f)}; skipped",
                  file=sys.stderr)
            continue
        try:
            image = read_image_rgb(path)
        except OSError as exc:  # ImageReadError: unreadable or undecodable, named with its reason
            missing.append(stem)
            print(f"warning: {exc}; skipped", file=sys.stderr)
            continue
        _tiles_for(image, by_stem.get(stem, []), args)
        if _wanted(args.only, out):
            entries.append(_draw_one(stem, image, gt_all, det_all, plan, args, out_dir))
    return entries, missing


def _tiles_for(image, kind_records, args) -> None:
    fps = [r for kind, r in kind_records if kind == "fp"]
    misses = [r for kind, r in kind_records if kind == "missed"]
    _make_tiles(image, fps, OUTCOME_COLORS["fp"], OUTCOME_COLORS["matched_gt"], args)
    _make_tiles(image, misses, OUTCOME_COLORS["missed"], OUTCOME_COLORS["fp"], args)


def _draw_one(stem, image, gt_all, det_all, plan: Plan | None, args, out_dir: Path) -> GalleryEntry:
    arrows = not args.no_arrows
    if plan is None:
        labels = gt_all[stem]
        show = args.captions == "all" or (args.captions == "auto" and not crowded(labels.boxes))
        drawn = draw_labels(image, labels, None, score_threshold=args.score, thickness=args.thickness,
                            arrows=arrows, show_class=show, show_score=show)
        counts = {"objects": len(labels) if labels.scores is None else int((labels.scores >= args.score).sum())}
    else:
        out = plan.outcomes[stem]
        captions = args.captions
        if captions == "auto":
            boxes = np.concatenate([plan.gt[stem].boxes, plan.det[stem].boxes])
            captions = "errors" if crowded(boxes) else "all"
        drawn = draw_outcomes(image, plan.gt[stem], plan.det[stem], det_status=out.det_status,
                              gt_status=out.gt_status, det_iou=out.det_iou, thickness=args.thickness, arrows=arrows,
                              captions=captions)
        counts = {"TP": out.count("tp"), "FP": out.count("fp"), "missed": out.count("missed")}
    image_rel = f"images/{stem}.{args.ext}"
    thumb_rel = f"thumbs/{stem}.jpg"
    write_image_rgb(out_dir / image_rel, drawn)
    write_image_rgb(out_dir / thumb_rel, thumbnail(drawn, 320))
    return GalleryEntry(stem, image_rel, thumb_rel, counts)


def _write_sheets(plan: Plan, args, out_dir: Path) -> list[tuple[str, str]]:
    sheets = []
    settings = f"IoU {args.iou:g}, score >= {args.score:g}"
    if args.only in ("fp", "all"):
        title = f"{len(plan.fp_records)} highest-scoring of {plan.fp_total} false positives ({settings})"
        _write_sheet(out_dir / "false_positives.jpg", plan.fp_records, title)
        sheets.append((title, "false_positives.jpg"))
    if args.only in ("fn", "all"):
        title = f"{len(plan.missed_records)} of {plan.missed_total} missed ground truth, largest first ({settings})"
        _write_sheet(out_dir / "missed.jpg", plan.missed_records, title)
        sheets.append((title, "missed.jpg"))
    return sheets


def _summary(stems, entries, plan: Plan | None, missing, args) -> str:
    text = f"{len(entries)} of {len(stems)} image(s) drawn"
    if missing:
        text += f", {len(missing)} without an image file"
    if plan is not None:
        totals = {k: sum(o.count(k) for o in plan.outcomes.values()) for k in ("tp", "fp", "missed")}
        text += (f"; at IoU {args.iou:g} and score >= {args.score:g}: TP {totals['tp']}, FP {totals['fp']}, "
                 f"missed {totals['missed']}")
    return text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("gt_dir", type=Path, help="ground-truth folder (or the only folder to draw)")
    parser.add_argument("det_dir", type=Path, nargs="?", help="detections folder")
    parser.add_argument("--images", type=Path, help="image folder (default: beside the labels)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold of a match (default 0.5)")
    parser.add_argument("--score", type=float, default=0.3, help="draw detections scoring at least this")
    parser.add_argument("--only", choices=("fp", "fn", "all"), default="all",
                        help="draw only images with false positives (fp) or misses (fn)")
    parser.add_argument("--out", type=Path, default=Path("out/draw_obb"), help="output folder")
    parser.add_argument("--gt-format", choices=FORMAT_CHOICES, default="auto")
    parser.add_argument("--det-format", choices=FORMAT_CHOICES, default="auto")
    parser.add_argument("--classes", help="class names (yolo_obb): names file, YAML or a,b,c")
    parser.add_argument("--image-size", help="W,H of every image (yolo_obb without --images)")
    parser.add_argument("--ext", choices=("jpg", "png"), default="jpg", help="format of drawn images")
    parser.add_argument("--sheet-max", type=int, default=96, help="most crops per contact sheet (default 96)")
    parser.add_argument("--tile", type=int, default=160, help="contact-sheet tile size in px")
    parser.add_argument("--context", type=float, default=1.0, help="crop margin, in box sizes, on each side")
    parser.add_argument("--thickness", type=int, default=None, help="line thickness (default: by image size)")
    parser.add_argument("--no-arrows", action="store_true", help="do not draw heading arrows")
    parser.add_argument("--captions", choices=("auto",) + CAPTION_MODES, default="auto",
                        help="class/score captions: all, errors (FP and missed only), none; auto: all unless "
                             "the objects are too close for captions to stay readable, then errors")
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error("--iou must be in (0, 1]")
    if args.sheet_max < 1 or args.tile < 16:
        parser.error("--sheet-max must be >= 1 and --tile >= 16")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run(args)
    except (ToolInputError, LabelFormatError, EvalInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
