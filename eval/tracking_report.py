"""Printed tables and bar plot of a tracking evaluation (results.json, results.txt: eval.report.write_results).

Tables follow ``eval.report``: percentages with two decimals, counts as integers, one row per sequence and a
``COMBINED`` row (TrackEval's combination over sequences). matplotlib is imported only to plot, and when it is
missing the plot is skipped with a note.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from .report import _pct, _pyplot, _save_figure
from .tracking_angles import HEADING_TOLERANCES, MOVING_SPEED

TRACKING_PNG = "tracking.png"
COMBINED = "COMBINED"
METRIC_COLUMNS = (("HOTA", "HOTA%"), ("DetA", "DetA%"), ("AssA", "AssA%"), ("MOTA", "MOTA%"), ("MOTP", "MOTP%"),
                  ("IDF1", "IDF1%"))
COUNT_COLUMNS = (("IDSW", "IDSW"), ("Frag", "Frag"), ("GT", "GT"), ("Det", "Det"), ("GT_IDs", "GT IDs"))
RULES = ("TrackEval's metric code on exact rotated IoU, class-wise; HOTA, DetA, AssA: mean over localisation "
         "thresholds 0.05..0.95; MOTA, MOTP, IDSW, Frag (CLEAR) and IDF1 (Identity) at IoU >= 0.5")


def _metric_rows(rows: list[tuple[str, dict]]) -> list[str]:
    width = max([len("sequence")] + [len(name) for name, _ in rows]) + 2
    header = f"{'sequence':<{width}}" + "".join(f" {h:>7}" for _, h in METRIC_COLUMNS) + \
        "".join(f" {h:>7}" for _, h in COUNT_COLUMNS)
    lines = [header]
    for name, figures in rows:
        empty = figures["GT"] == 0 and figures["Det"] == 0  # nothing to score: '-' rather than TrackEval's zeros
        lines.append(f"{name:<{width}}" + "".join(f" {_pct(None if empty else figures[k], 7)}"
                                                  for k, _ in METRIC_COLUMNS)
                     + "".join(f" {figures[k]:>7}" for k, _ in COUNT_COLUMNS))
    return lines


def format_metric_tables(result) -> str:
    """The all-classes table, then one table per class when there are several."""
    blocks = [f"Tracking, all classes (detection-averaged)\n{textwrap.fill(RULES, 115)}"]
    blocks[0] += "\n" + "\n".join(_metric_rows(
        [(seq, result.per_sequence[seq]["all"]) for seq in result.sequences] + [(COMBINED, result.combined["all"])]))
    if len(result.classes) > 1:
        for cls in result.classes:
            rows = [(seq, result.per_sequence[seq]["classes"][cls]) for seq in result.sequences]
            rows.append((COMBINED, result.combined["classes"][cls]))
            blocks.append(f"class {cls}\n" + "\n".join(_metric_rows(rows)))
    return "\n\n".join(blocks)


def _deg(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.3f}"


def format_angle_table(result) -> str:
    """Angle jitter of parked vehicles and heading accuracy of moving ones, per sequence and combined."""
    lines = ["Angles: jitter = std (deg) of the matched detection's frame-to-frame angle change (mod 180, mod 90 "
             "when near-square)\nper parked GT track, median and mean over tracks; heading = share of matched "
             f"track-frames of moving GT (speed >= {MOVING_SPEED:g}\npx/frame) with the detection's heading within "
             f"{' / '.join(f'{t:g}' for t in HEADING_TOLERANCES)} deg (none = wrong)"]
    names = result.sequences + [COMBINED]
    width = max([len("sequence")] + [len(n) for n in names]) + 2
    heads = "".join(f" {f'head{t:g}%':>8}" for t in HEADING_TOLERANCES)
    lines.append(f"{'sequence':<{width}} {'parked':>7} {'short':>6} {'jit-med':>8} {'jit-mean':>8} {'moving':>7}"
                 f"{heads} {'IDSW':>6}")
    for name in names:
        figures = result.angles[name]
        jitter, heading = figures["angle_jitter"], figures["heading"]
        idsw = (result.combined if name == COMBINED else result.per_sequence[name])["all"]["IDSW"]
        lines.append(f"{name:<{width}} {jitter['tracks']:>7} {jitter['tracks_short']:>6} "
                     f"{_deg(jitter['median_deg'], 8)} {_deg(jitter['mean_deg'], 8)} {heading['count']:>7}"
                     + "".join(f" {_pct(heading[f'within_{t:g}'], 8)}" for t in HEADING_TOLERANCES) + f" {idsw:>6}")
    return "\n".join(lines)


def format_frames(result) -> str:
    parts = []
    for seq in result.sequences:
        info = result.frames[seq]
        note = "" if info["detections"] else ", no detection folder"
        note += f", {info['left_out']} left out (--common-frames)" if info["left_out"] else ""
        parts.append(f"{seq} {info['evaluated']}{note}")
    return "Frames evaluated: " + "; ".join(parts)


def format_tables(result) -> str:
    return "\n\n".join([format_frames(result), format_metric_tables(result), format_angle_table(result)])


def summary_line(result) -> str:
    c = result.combined["all"]
    return f"SUMMARY: HOTA {100 * c['HOTA']:.4f} MOTA {100 * c['MOTA']:.4f} IDF1 {100 * c['IDF1']:.4f} IDSW {c['IDSW']}"


def plot_sequences(result, folder: Path) -> Path | None:
    """Grouped bars of HOTA, MOTA and IDF1 (%) per sequence and combined; None (with a note on the result's
    notes) when matplotlib is not installed."""
    try:
        plt = _pyplot()
    except ImportError:
        result.notes.append("plot skipped: matplotlib is not installed")
        return None
    names = result.sequences + [COMBINED]
    figures = [result.per_sequence[s]["all"] for s in result.sequences] + [result.combined["all"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 2), 4))
    bar = 0.8 / 3
    for k, key in enumerate(("HOTA", "MOTA", "IDF1")):
        xs = [i + (k - 1) * bar for i in range(len(names))]
        ax.bar(xs, [100 * f[key] for f in figures], width=bar, label=key)
    values = [100 * f[key] for f in figures for key in ("HOTA", "MOTA", "IDF1")]
    ax.set_ylim(min(0.0, min(values) - 5), 118)  # headroom for the legend
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0, fontsize=8)
    ax.set_ylabel("%")
    ax.axhline(0, color="gray", linewidth=0.6)
    ax.set_title("tracking per sequence (all classes)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    path = folder / TRACKING_PNG
    _save_figure(fig, path)
    plt.close(fig)
    return path
