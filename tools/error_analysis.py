"""TIDE-style error breakdown for oriented boxes, with the mAP each error type costs.

    python tools/error_analysis.py GT_DIR DET_DIR [--iou 0.5] [--background-iou 0.1] [--out DIR]

Detections are matched as the evaluation does (``eval.match_image`` at ``--iou`` = t_f). Every false
positive gets exactly one type, tested in this order (as TIDE, Bolya et al. 2020), with t_b =
``--background-iou``:

- classification: IoU >= t_f with a ground truth of another class;
- duplicate: IoU >= t_f with a ground truth of its class that a higher-scoring detection already took;
- localization: t_b <= IoU < t_f with a ground truth of its class;
- both: t_b <= IoU < t_f with a ground truth of another class only;
- background: IoU < t_b with every ground truth.

A ground truth that no detection found, and that no classification or localization error points at, is
**missed**. dAP of a type is the mAP gained by fixing every error of that type and recomputing mAP
(all other errors left in place): a classification or localization error becomes a true positive of the
ground truth it points at when that ground truth is still free (else it is removed); duplicates, both and
background errors are removed; missed ground truth is removed from the positives. "all FP" (remove every
false positive) and "all FN" (remove every unfound ground truth) are the bounds. Difficult ground truth is
matched as in the evaluation (neither TP nor FP) and counts neither as missed nor as a fix target.

For true positives it plots the angle error (modulo 180 degrees; modulo 90 where either box is near-square,
``--square-ratio``), the centre error, and the width and length ratios to the ground truth (a median width
ratio above 1 suggests a width calibration factor of 1/ratio); for false positives, the length/width aspect
and the size (sqrt of area) per error type, with true positives as reference. Writes
``error_analysis.txt``, ``error_analysis.json`` and PNG plots to ``--out`` (default ``out/error_analysis``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from obbdet.eval.ap import AP_METHODS  # noqa: E402
from obbdet.eval.errors import EvalInputError  # noqa: E402
from obbdet.formats import LabelFormatError  # noqa: E402
from obbdet.io_utils import atomic_output, atomic_write_text  # noqa: E402
from obbdet.tools.error_breakdown import ERROR_TYPES, SPECIAL_TYPES, Breakdown, analyze  # noqa: E402
from obbdet.tools.labelsets import FORMAT_CHOICES, ToolInputError, read_label_set  # noqa: E402

logger = logging.getLogger("error_analysis")


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------

def format_report(b: Breakdown) -> str:
    """The printed tables: summary, error types with count and dAP, per-class counts, TP/FP statistics."""
    t = f"{round(b.iou_threshold * 100):d}"
    lines = [f"TIDE-style error breakdown at IoU {b.iou_threshold:g} (background below {b.background_iou:g}), "
             f"AP {b.ap_method}",
             f"mAP{t} {100 * b.base_map:.2f} over {len(b.classes)} class(es); {b.n_detections} detection(s), "
             f"{b.n_gt} ground truth", "",
             f"{'error type':<16}{'count':>8}{'dAP' + t:>10}"]
    for name in ERROR_TYPES:
        lines.append(f"{name:<16}{b.counts[name]:>8d}{100 * b.delta_map[name]:>10.2f}")
    lines.append("-" * 34)
    for name in SPECIAL_TYPES:
        lines.append(f"{name:<16}{b.counts[name]:>8d}{100 * b.delta_map[name]:>10.2f}")
    lines += ["", _per_class_table(b), "", _stats_table(b)]
    return "\n".join(lines)


def _per_class_table(b: Breakdown) -> str:
    short = {"classification": "cls", "localization": "loc", "both": "both", "duplicate": "dupe",
             "background": "bkg", "missed": "miss"}
    header = f"{'class':<20}{'GT':>7}{'TP':>7}{'FP':>7}" + "".join(f"{short[t]:>7}" for t in ERROR_TYPES)
    rows = [header]
    for name, row in b.per_class_counts.items():
        rows.append(f"{name[:19]:<20}{row['GT']:>7}{row['TP']:>7}{row['FP']:>7}"
                    + "".join(f"{row[t]:>7}" for t in ERROR_TYPES))
    return "\n".join(rows)


def _stats_table(b: Breakdown) -> str:
    rows = [f"{'statistic':<34}{'n':>7}{'median':>10}{'p10':>10}{'p90':>10}"]
    for group, label in (("tp", "TP"), ("fp", "FP")):
        for key, s in b.stats[group].items():
            if s.get("n"):
                rows.append(f"{label + ' ' + key:<34}{s['n']:>7}{s['median']:>10.3f}{s['p10']:>10.3f}"
                            f"{s['p90']:>10.3f}")
    width = b.stats["tp"].get("width_ratio", {})
    if width.get("n") and abs(width["median"] - 1) > 0.01:
        rows.append(f"median TP width ratio {width['median']:.3f}: a width scale of about "
                    f"{1 / width['median']:.3f} would centre it (see the evaluation's --width-scales)")
    return "\n".join(rows)


def _save_figure(fig, path: Path) -> None:
    with atomic_output(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")


def write_plots(b: Breakdown, out_dir: Path) -> list[Path]:
    """``error_breakdown.png``, ``tp_errors.png``, ``fp_shapes.png`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = b.stats["_arrays"]
    paths = [out_dir / "error_breakdown.png", out_dir / "tp_errors.png", out_dir / "fp_shapes.png"]
    for path, draw in zip(paths, (_plot_breakdown, _plot_tp, _plot_fp)):
        fig = draw(plt, b, arrays)
        _save_figure(fig, path)
        plt.close(fig)
    return paths


_TYPE_COLORS = {"classification": "#e6550d", "localization": "#3182bd", "both": "#756bb1",
                "duplicate": "#31a354", "background": "#de2d26", "missed": "#fdae6b"}


def _plot_breakdown(plt, b: Breakdown, arrays):
    fig, (ax_count, ax_dap) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(ERROR_TYPES)
    colors = [_TYPE_COLORS[n] for n in names]
    ax_count.barh(names, [b.counts[n] for n in names], color=colors)
    ax_count.set_title("count")
    ax_count.invert_yaxis()
    ax_dap.barh(names + list(SPECIAL_TYPES), [100 * b.delta_map[n] for n in names + list(SPECIAL_TYPES)],
                color=colors + ["#999999", "#666666"])
    ax_dap.set_title(f"mAP gained if fixed (base mAP {100 * b.base_map:.1f})")
    ax_dap.invert_yaxis()
    fig.suptitle(f"Errors at IoU {b.iou_threshold:g}")
    return fig


def _hist(ax, values, title, xlabel, bins=40, value_range=None):
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values):
        ax.hist(values, bins=bins, range=value_range, color="#3182bd")
        ax.axvline(float(np.median(values)), color="k", linestyle="--", linewidth=1,
                   label=f"median {np.median(values):.3g}")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no true positives", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)


def _plot_tp(plt, b: Breakdown, arrays):
    tp = arrays["tp"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    _hist(axes[0, 0], tp["angle_error_deg"], "TP angle error", "degrees (mod 180; mod 90 near-square)")
    _hist(axes[0, 1], tp["centre_error_px"], "TP centre error", "pixels")
    _hist(axes[1, 0], tp["width_ratio"], "TP width / GT width", "ratio")
    _hist(axes[1, 1], tp["length_ratio"], "TP length / GT length", "ratio")
    fig.suptitle(f"True positives at IoU {b.iou_threshold:g} (n={len(tp['angle_error_deg'])})")
    fig.tight_layout()
    return fig


def _plot_fp(plt, b: Breakdown, arrays):
    fp, tp, types = arrays["fp"], arrays["tp"], np.asarray(arrays["fp_types"], dtype=object)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, xlabel in ((axes[0], "aspect", "length / width"), (axes[1], "size_px", "sqrt(area), pixels")):
        all_values = np.concatenate([fp[key], tp[key]])
        all_values = all_values[np.isfinite(all_values)]
        if not len(all_values):
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
            continue
        bins = np.histogram_bin_edges(all_values, bins=40)
        groups = [t for t in ERROR_TYPES[:-1] if (types == t).any()]
        if groups:
            ax.hist([fp[key][types == t] for t in groups], bins=bins, stacked=True, label=groups,
                    color=[_TYPE_COLORS[t] for t in groups])
        if len(tp[key]):
            ax.hist(tp[key], bins=bins, histtype="step", color="k", label="TP (reference)")
        ax.set_xlabel(xlabel)
        ax.set_title(f"False positives: {key.replace('_px', '')}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(b: Breakdown, report: str, out_dir: Path, plots: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = b.to_json()
    doc["stats"] = {k: v for k, v in b.stats.items() if not k.startswith("_")}
    atomic_write_text(out_dir / "error_analysis.json", json.dumps(doc, indent=1) + "\n")
    atomic_write_text(out_dir / "error_analysis.txt", report + "\n")
    written = [out_dir / "error_analysis.json", out_dir / "error_analysis.txt"]
    return written + (write_plots(b, out_dir) if plots else [])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("gt_dir", type=Path, help="ground-truth folder")
    parser.add_argument("det_dir", type=Path, help="detections folder")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold of a match, t_f (default 0.5)")
    parser.add_argument("--background-iou", type=float, default=0.1, help="background threshold t_b (0.1)")
    parser.add_argument("--ap-method", choices=AP_METHODS, default="voc", help="AP interpolation (default voc)")
    parser.add_argument("--square-ratio", type=float, default=0.9,
                        help="short/long ratio above which a box counts as near-square (angle mod 90)")
    parser.add_argument("--out", type=Path, default=Path("out/error_analysis"), help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--gt-format", choices=FORMAT_CHOICES, default="auto")
    parser.add_argument("--det-format", choices=FORMAT_CHOICES, default="auto")
    parser.add_argument("--classes", help="class names (yolo_obb): names file, YAML or a,b,c")
    parser.add_argument("--images", type=Path, help="image folder, for yolo_obb image sizes")
    parser.add_argument("--image-size", help="W,H of every image (yolo_obb without --images)")
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error("--iou must be in (0, 1]")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        gt, gt_skipped, _ = read_label_set(args.gt_dir, args.gt_format, False, args)
        det, det_skipped, _ = read_label_set(args.det_dir, args.det_format, True, args)
        breakdown, _ = analyze(gt, det, iou_threshold=args.iou, background_iou=args.background_iou,
                               ap_method=args.ap_method, square_ratio=args.square_ratio, progress=True)
        report = format_report(breakdown)
        print(report)
        written = write_outputs(breakdown, report, args.out, plots=not args.no_plots)
        print(f"wrote {', '.join(str(p) for p in written)}")
    except (ToolInputError, LabelFormatError, EvalInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    skipped = gt_skipped + det_skipped
    if skipped:
        print(f"error: {skipped} label file(s) skipped (see above); results cover the rest", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
