"""Printed tables, results.json / results.txt, and PNG plots (PR curves, calibration curve).

matplotlib is imported only inside the plotting functions, so evaluation without plots stays fast.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from obbdet.io_utils import atomic_output, atomic_write_text

from .ap import AP_METHOD_NAMES

RESULTS_JSON = "results.json"
RESULTS_TXT = "results.txt"
CALIBRATION_PNG = "calibration.png"


def _pct(value: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * value:{width}.2f}"


def _threshold_header(key: str) -> str:
    return f"{100 * float(key):g}%"


def format_map_table(result) -> str:
    """One row per setting, one column per threshold plus the summary column (percent)."""
    keys = [k for k in result.map if k != result.summary_key]
    summary_header = "50-95%" if result.summary_key == "50-95" else "mean%"
    labels = [s.label for s in result.settings]
    label_width = max([len("setting")] + [len(label) for label in labels]) + 2
    widths = [max(6, len(_threshold_header(k))) for k in keys]
    lines = [f"mAP (%) by IoU threshold: {result.rules}"]
    header = f"{'setting':<{label_width}}" + "".join(f" {_threshold_header(k):>{w}}" for k, w in zip(keys, widths))
    lines.append(header + f" {summary_header:>7}")
    best = result.best_setting["index"]
    reference = result.settings[0].summary
    for i, setting in enumerate(result.settings):
        row = f"{setting.label:<{label_width}}" + "".join(f" {_pct(setting.map[k], w)}" for k, w in zip(keys, widths))
        row += f" {_pct(setting.summary, 7)}"
        if i > 0:
            row += f"  ({100 * (setting.summary - reference):+.2f})"
        if len(result.settings) > 1 and i == best:
            row += "  *best"
        lines.append(row)
    return "\n".join(lines)


def format_class_tables(result) -> str:
    """Per threshold: AP (%), TP, FP, GT, DET of every class, its best F1 (%) and the score threshold giving it
    (the operating point), and the mAP (reference setting)."""
    classes = result.classes
    name_width = max([len("class")] + [len(c) for c in classes] + [len("mAP")]) + 2
    blocks = []
    label = result.settings[0].label
    for key in [k for k in result.map if k != result.summary_key]:
        lines = [f"IoU {key} ({label})",
                 f"{'class':<{name_width}} {'AP%':>7} {'TP':>8} {'FP':>8} {'GT':>8} {'DET':>8} {'F1%':>7} "
                 f"{'@score':>7}"]
        for name in classes:
            stats = result.per_class[name][key]
            note = "" if name in result.map_classes else "  (not in mAP)"
            at = "-" if stats.get("f1_score") is None else f"{stats['f1_score']:.3f}"
            lines.append(f"{name:<{name_width}} {_pct(stats['ap'], 7)} {stats['tp']:>8} {stats['fp']:>8} "
                         f"{stats['gt']:>8} {stats['det']:>8} {_pct(stats.get('f1', 0.0), 7)} {at:>7}{note}")
        lines.append(f"{'mAP':<{name_width}} {_pct(result.map[key], 7)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_coco_summary(result) -> str:
    coco = result.coco
    if not coco:
        return ""
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"] + [f"AR@{k}" for k in coco["max_dets"]]
    widths = [max(7, len(n)) for n in names]
    lines = ["COCO-style summary (%): 101-point AP over the thresholds, areas of the OBBs (small < 32^2 <= "
             f"medium <= 96^2 < large), at most {max(coco['max_dets'])} detections per image and class",
             " ".join(f"{n:>{w}}" for n, w in zip(names, widths)),
             " ".join(_pct(coco[n], w) for n, w in zip(names, widths))]
    return "\n".join(lines)


def format_calibration(result) -> str:
    cal = result.calibration
    if not cal:
        return ""
    what = f"w={cal['width_scale']:.3f}" + (f" l={cal['length_scale']:.3f}" if cal["search_length"] else "")
    summary = "mAP50-95" if result.summary_key == "50-95" else "mean mAP"
    return (f"Calibration: best {what}: {summary} {100 * cal['summary']:.2f}% vs {100 * cal['reference']:.2f}% "
            f"at w=1.000 ({100 * cal['gain']:+.2f} points)")


def format_tables(result, per_class: bool = True) -> str:
    """All printed tables as one string (what results.txt holds, without the timing line)."""
    parts = [format_map_table(result)]
    calibration = format_calibration(result)
    if calibration:
        parts.append(calibration)
    if per_class:
        parts.append(format_class_tables(result))
    coco = format_coco_summary(result)
    if coco:
        parts.append(coco)
    return "\n\n".join(parts)


def summary_line(result) -> str:
    return f"SUMMARY: {100 * result.summary:.4f}"


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------

def write_results(result, folder: Path, text: str) -> list[Path]:
    """Write results.json and results.txt into ``folder`` (created if needed) atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, txt_path = folder / RESULTS_JSON, folder / RESULTS_TXT
    with atomic_output(json_path) as handle:
        json.dump(result.to_json(), handle, indent=1, allow_nan=False)
        handle.write("\n")
    atomic_write_text(txt_path, text if text.endswith("\n") else text + "\n")
    return [json_path, txt_path]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _save_figure(fig, path: Path) -> None:
    with atomic_output(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def plot_pr_curves(result, folder: Path) -> list[Path]:
    """One PNG per class: the precision/recall curves of every threshold (reference setting)."""
    curves = result.settings[0].curves
    if not curves:
        return []
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    keys = [k for k in result.map if k != result.summary_key]
    written = []
    cmap = plt.get_cmap("viridis")
    for name in result.classes:
        fig, ax = plt.subplots(figsize=(6, 5))
        for i, key in enumerate(keys):
            recall, precision = curves[(name, key)]
            stats = result.per_class[name][key]
            ax.plot(recall, precision, color=cmap(i / max(1, len(keys) - 1)),
                    label=f"IoU {key}: AP {100 * stats['ap']:.2f}%")
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{name}: GT {result.per_class[name][keys[0]]['gt']}, "
                     f"detections {result.per_class[name][keys[0]]['det']} ({AP_METHOD_NAMES[result.ap_method]})",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        path = folder / f"pr_{_safe_name(name)}.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def plot_calibration(result, folder: Path) -> Path | None:
    """mAP50-95 against the width (and length) factor searched by the calibration."""
    cal = result.calibration
    if not cal:
        return None
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for curve, label in ((cal["width_curve"], "width (short side) factor"),
                         (cal["length_curve"], "length (long side) factor")):
        if curve:
            factors, values = zip(*curve)
            ax.plot(factors, [100 * v for v in values], marker=".", label=label)
    ax.axvline(cal["width_scale"], color="gray", linestyle="--", linewidth=0.8)
    ax.axhline(100 * cal["reference"], color="gray", linestyle=":", linewidth=0.8, label="factor 1.0")
    ax.set_xlabel("scale factor")
    ax.set_ylabel("mAP50-95 (%)" if result.summary_key == "50-95" else "mean mAP (%)")
    ax.set_title(f"best w={cal['width_scale']:.3f} l={cal['length_scale']:.3f}: "
                 f"{100 * cal['summary']:.2f}% ({100 * cal['gain']:+.2f})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = folder / CALIBRATION_PNG
    _save_figure(fig, path)
    plt.close(fig)
    return path
