"""Dataset statistics: objects per class, box length / width / aspect / angle histograms, objects per image.

    python tools/dataset_stats.py --config registry.yaml --out stats/
    python tools/dataset_stats.py --kind dota --root /data/DOTA/train --option strict=false
    python tools/dataset_stats.py --folder data/syn/labels --format obb_json
    python tools/dataset_stats.py --synthetic --n 200 --seed 0 --vehicle-width 12,24

Sources: a registry config (every dataset, split into train/val, classes mapped onto the unified taxonomy),
one registry importer (``--kind`` + ``--root``, native class names), a folder of label files (``--format``
any of obbdet.formats' per-image formats), or synthetic scenes rendered in memory (the same images
``tools/make_synthetic.py`` writes for that seed).

Prints, per dataset: images, objects, objects per image, and per class the count, difficult count and the
median / 5th / 95th percentiles of length (long side), width (short side), aspect (length / width), and the
angle spread. Writes ``OUT/stats_<dataset>.png`` (class counts and histograms), ``OUT/stats_all.png`` when
there are several datasets, and ``OUT/stats.json`` with the numbers. Angles are the le90 box angle in
degrees ``[-90, 90)`` (clockwise on screen from +x); axis-aligned-only samples are left out of the angle
histogram (their angle is unknown, not 0).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from obbdet.io_utils import atomic_write_bytes, atomic_write_text  # noqa: E402
from obbdet.structures import ImageLabels, Sample  # noqa: E402

logger = logging.getLogger("dataset_stats")

PERCENTILES = (5, 50, 95)


@dataclass
class DatasetStats:
    """Per-object and per-image arrays of one dataset.

    Per object: ``classes`` (names), ``length`` / ``width`` (px, long and short side), ``angle`` (degrees,
    le90), ``difficult``, ``aabb_only`` (the angle is unknown), ``heading`` (degrees, NaN unknown), ``split``.
    Per image: ``objects_per_image``, ``image_split``.
    """

    name: str
    classes: list = field(default_factory=list)
    length: list = field(default_factory=list)
    width: list = field(default_factory=list)
    angle: list = field(default_factory=list)
    difficult: list = field(default_factory=list)
    aabb_only: list = field(default_factory=list)
    heading: list = field(default_factory=list)
    split: list = field(default_factory=list)
    objects_per_image: list = field(default_factory=list)
    image_split: list = field(default_factory=list)

    def add_image(self, boxes: np.ndarray, classes: Iterable[str], difficult=None, heading=None,
                  aabb_only: bool = False, split: str = "all") -> None:
        """Add one image's objects: ``boxes`` ``[N, 5]`` xywha le90 (radians), ``classes`` N names."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
        n = len(boxes)
        self.classes.extend(classes)
        self.length.extend(boxes[:, 2].tolist())
        self.width.extend(boxes[:, 3].tolist())
        self.angle.extend(np.degrees(boxes[:, 4]).tolist())
        self.difficult.extend(np.zeros(n, bool).tolist() if difficult is None else np.asarray(difficult, bool).tolist())
        self.aabb_only.extend([bool(aabb_only)] * n)
        head = np.full(n, np.nan) if heading is None else np.degrees(np.asarray(heading, np.float64))
        self.heading.extend(head.tolist())
        self.split.extend([split] * n)
        self.objects_per_image.append(n)
        self.image_split.append(split)

    def arrays(self) -> dict:
        return {k: np.asarray(getattr(self, k)) for k in ("classes", "length", "width", "angle", "difficult",
                                                           "aabb_only", "heading", "split")}

    @property
    def class_names(self) -> list[str]:
        """Class names, most frequent first."""
        counts = Counter(self.classes)
        return sorted(counts, key=lambda c: (-counts[c], c))


# ---------------------------------------------------------------------------------------------------
# Collecting
# ---------------------------------------------------------------------------------------------------

def stats_from_samples(samples: Iterable[Sample], class_names=None,
                       split: str | None = None) -> dict[str, DatasetStats]:
    """Group registry samples by ``sample.source``. Class names: ``class_names`` (a list, e.g. the
    registry's unified classes) or each sample's ``meta['classes']`` / ``meta['class_names']``."""
    out: dict[str, DatasetStats] = {}
    for sample in samples:
        names = class_names if class_names is not None else sample.meta.get("classes", sample.meta.get("class_names"))
        if names is None:
            raise ValueError(f"{sample.image_path}: no class names (meta['classes']) to name labels with")
        stats = out.setdefault(sample.source or "dataset", DatasetStats(sample.source or "dataset"))
        stats.add_image(sample.boxes, [names[int(i)] for i in sample.labels], sample.difficult, sample.heading,
                        sample.aabb_only, split or sample.meta.get("split", "all"))
    return out


def stats_from_labels(name: str, labels: Iterable[ImageLabels], split: str = "all") -> DatasetStats:
    """Statistics of label files (ground truth; ``ignore`` objects are left out, as eval drops them)."""
    stats = DatasetStats(name)
    for lab in labels:
        keep = ~np.asarray(lab.ignore, bool) if len(lab.ignore) == len(lab) else np.ones(len(lab), bool)
        heading = None if lab.heading is None else np.asarray(lab.heading)[keep]
        stats.add_image(lab.boxes[keep], [c for c, k in zip(lab.classes, keep) if k], np.asarray(lab.difficult)[keep],
                        heading, aabb_only=lab.aabb is not None, split=split)
    return stats


# ---------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------

def _pcts(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    return [float(v) for v in np.percentile(values, PERCENTILES)] if len(values) else [math.nan] * len(PERCENTILES)


def summarize(stats: DatasetStats) -> dict:
    """Numbers of one dataset: totals, objects per image, and per class counts and size percentiles."""
    a = stats.arrays()
    per_image = np.asarray(stats.objects_per_image)
    aspect = np.divide(a["length"], a["width"], out=np.full(len(a["length"]), np.nan), where=a["width"] > 0)
    summary = {
        "images": len(per_image),
        "images_per_split": {s: int(np.sum(np.asarray(stats.image_split) == s))
                             for s in sorted(set(stats.image_split))},
        "objects": int(len(a["classes"])),
        "objects_per_image": {"mean": float(per_image.mean()) if len(per_image) else 0.0,
                              "median": float(np.median(per_image)) if len(per_image) else 0.0,
                              "max": int(per_image.max()) if len(per_image) else 0,
                              "empty_images": int(np.sum(per_image == 0))},
        "heading_known": int(np.sum(np.isfinite(a["heading"]))) if len(a["heading"]) else 0,
        "aabb_only": int(np.sum(a["aabb_only"])) if len(a["aabb_only"]) else 0,
        "classes": {},
    }
    for name in stats.class_names:
        m = a["classes"] == name
        oriented = m & ~a["aabb_only"].astype(bool)
        summary["classes"][name] = {
            "count": int(m.sum()), "difficult": int(a["difficult"][m].sum()),
            "per_split": {s: int(np.sum(m & (a["split"] == s))) for s in sorted(set(a["split"].tolist()))},
            "length": _pcts(a["length"][m]), "width": _pcts(a["width"][m]), "aspect": _pcts(aspect[m]),
            "angle_std": float(np.std(a["angle"][oriented])) if oriented.any() else math.nan,
        }
    return summary


def format_summary(name: str, s: dict) -> str:
    """The printed report of one dataset."""
    opi = s["objects_per_image"]
    splits = ", ".join(f"{k} {v}" for k, v in s["images_per_split"].items())
    lines = [f"== {name}: {s['images']} images ({splits}), {s['objects']} objects; objects/image mean "
             f"{opi['mean']:.1f}, median {opi['median']:.0f}, max {opi['max']}, {opi['empty_images']} empty; "
             f"heading known for {s['heading_known']}, axis-aligned only {s['aabb_only']}"]
    header = f"{'class':<16}{'count':>8}{'diff':>7}  {'length p5/50/95':>18}  {'width p5/50/95':>18}  " \
             f"{'aspect p5/50/95':>17}  {'angle sd':>8}"
    lines.append(header)
    for cls, c in s["classes"].items():
        angle = "-" if math.isnan(c["angle_std"]) else f"{c['angle_std']:.1f}"
        lines.append(f"{cls:<16}{c['count']:>8}{c['difficult']:>7}  {_trio(c['length']):>18}  {_trio(c['width']):>18}  "
                     f"{_trio(c['aspect'], '{:.2f}'):>17}  {angle:>8}")
    return "\n".join(lines)


def _trio(values, fmt: str = "{:.1f}") -> str:
    return "/".join("-" if math.isnan(x) else fmt.format(x) for x in values)


# ---------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------

def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def plot_stats(stats: DatasetStats, path: Path) -> Path:
    """One PNG: class counts, length / width / aspect / angle histograms per class, objects per image,
    and headings where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = stats.arrays()
    names = stats.class_names
    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    fig.suptitle(f"{stats.name}: {len(stats.objects_per_image)} images, {len(a['classes'])} objects")
    ax = axes[0, 0]
    counts = [int(np.sum(a["classes"] == c)) for c in names]
    ax.bar(range(len(names)), counts, color=[f"C{i}" for i in range(len(names))])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_title("objects per class")
    aspect = np.divide(a["length"], a["width"], out=np.full(len(a["length"]), np.nan), where=a["width"] > 0)
    oriented = ~a["aabb_only"].astype(bool) if len(a["aabb_only"]) else np.zeros(0, bool)
    panels = [(axes[0, 1], a["length"], "length (long side, px)", None),
              (axes[0, 2], a["width"], "width (short side, px)", None),
              (axes[0, 3], aspect, "aspect (length / width)", None),
              (axes[1, 0], np.where(oriented, a["angle"], np.nan), "angle (deg, le90)", (-90, 90))]
    for ax, values, title, value_range in panels:
        _class_hist(ax, values, a["classes"], names, value_range)
        ax.set_title(title)
    ax = axes[1, 1]
    per_image = np.asarray(stats.objects_per_image)
    if len(per_image):
        ax.hist(per_image, bins=min(50, max(int(per_image.max()) + 1, 1)), color="C7")
    ax.set_title("objects per image")
    ax = axes[1, 2]
    known = np.isfinite(a["heading"]) if len(a["heading"]) else np.zeros(0, bool)
    _class_hist(ax, np.where(known, a["heading"], np.nan), a["classes"], names, (-180, 180))
    ax.set_title(f"heading (deg), known for {int(known.sum())}")
    ax = axes[1, 3]
    for i, c in enumerate(names):
        m = a["classes"] == c
        ax.scatter(a["length"][m], a["width"][m], s=3, alpha=0.3, color=f"C{i}", label=c)
    ax.set_xlabel("length (px)")
    ax.set_ylabel("width (px)")
    ax.set_title("width vs length")
    if names:
        ax.legend(markerscale=4, fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def _class_hist(ax, values: np.ndarray, classes: np.ndarray, names: list[str], value_range) -> None:
    finite = np.isfinite(values)
    if not finite.any():
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = value_range if value_range else np.percentile(values[finite], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    bins = np.linspace(lo, hi, 46)
    data = [np.clip(values[(classes == c) & finite], lo, hi) for c in names]
    ax.hist(data, bins=bins, stacked=True, label=names, color=[f"C{i}" for i in range(len(names))])
    ax.legend(fontsize="small")


def plot_overview(all_stats: dict[str, DatasetStats], path: Path) -> Path:
    """One PNG comparing datasets: objects per class and the distribution of box widths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(all_stats)
    classes = sorted({c for s in all_stats.values() for c in s.classes})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(16, 5))
    step = 0.8 / max(len(datasets), 1)
    for i, name in enumerate(datasets):
        cls = np.asarray(all_stats[name].classes)
        ax1.bar(np.arange(len(classes)) + i * step, [int(np.sum(cls == c)) for c in classes], step, label=name)
    ax1.set_xticks(np.arange(len(classes)) + 0.4 - step / 2, classes, rotation=30, ha="right")
    ax1.set_title("objects per class")
    ax1.legend(fontsize="small")
    widths = [np.asarray(all_stats[n].width) for n in datasets]
    ax2.boxplot([w if len(w) else [np.nan] for w in widths], showfliers=False)
    ax2.set_xticks(range(1, len(datasets) + 1), datasets, rotation=30, ha="right")
    ax2.set_title("box width (short side, px)")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------

def _option(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"options are KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = {"true": True, "false": False}.get(value.lower(), value)
    return key.strip(), parsed


def _range(text: str):
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else tuple(values)


def from_config(path) -> dict[str, DatasetStats]:
    from obbdet.datasets_registry import build_registry

    registry = build_registry(path)
    out = stats_from_samples(registry.train, list(registry.classes), split="train")
    for name, val in stats_from_samples(registry.val, list(registry.classes), split="val").items():
        merged = out.setdefault(name, DatasetStats(name))
        for key in ("classes", "length", "width", "angle", "difficult", "aabb_only", "heading", "split",
                    "objects_per_image", "image_split"):
            getattr(merged, key).extend(getattr(val, key))
    return out


def from_kind(kind: str, root, options: dict) -> dict[str, DatasetStats]:
    from obbdet.datasets_registry import load_dataset

    samples = load_dataset(kind, root, **options)
    for s in samples:
        s.source = s.source or kind
    return stats_from_samples(samples)


def from_folder(folder: Path, fmt: str, options: dict) -> dict[str, DatasetStats]:
    from obbdet.formats import read_label_folder

    labels = read_label_folder(folder, fmt, **options)
    return {folder.name: stats_from_labels(folder.name, labels.values())}


def from_synthetic(n: int, seed: int, split: str, width: int, height: int, options: dict) -> dict[str, DatasetStats]:
    from tqdm import tqdm

    from obbdet.datasets_registry.synthetic import render_scene, scene_seed

    stats = DatasetStats("synthetic")
    for i in tqdm(range(n), desc="rendering", unit="img"):
        _, labels = render_scene(scene_seed(seed, split, i), width, height, **options)
        stats.add_image(labels.boxes, labels.classes, labels.difficult, labels.heading, split=split)
    return {"synthetic": stats}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="registry config (YAML)")
    src.add_argument("--kind", help="one registry importer (with --root)")
    src.add_argument("--folder", type=Path, help="a folder of label files (with --format)")
    src.add_argument("--synthetic", action="store_true", help="synthetic scenes rendered in memory")
    p.add_argument("--root", help="dataset root for --kind")
    p.add_argument("--format", default="obb_json", help="label format for --folder (default obb_json)")
    p.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="importer / reader / scene option (repeatable; values parsed as JSON when possible)")
    p.add_argument("--n", type=int, default=200, help="--synthetic: number of images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="--synthetic: dataset seed")
    p.add_argument("--split", default="train", help="--synthetic: split name (as in make_synthetic.py)")
    p.add_argument("--width", type=int, default=512, help="--synthetic: image width")
    p.add_argument("--height", type=int, default=512, help="--synthetic: image height")
    p.add_argument("--vehicle-width", type=_range, default=None, help="--synthetic: car width px, W or LOW,HIGH")
    p.add_argument("--dense", action="store_true", help="--synthetic: dense scenes")
    p.add_argument("--out", type=Path, default=Path("dataset_stats"), help="folder for the PNGs and stats.json")
    p.add_argument("--no-plots", action="store_true", help="print only")
    return p


def _collect(args) -> dict[str, DatasetStats]:
    options = dict(args.option)
    if args.config:
        return from_config(args.config)
    if args.kind:
        if not args.root:
            raise ValueError("--kind needs --root")
        return from_kind(args.kind, args.root, options)
    if args.folder:
        return from_folder(args.folder, args.format, options)
    if args.vehicle_width is not None:
        options["vehicle_width"] = args.vehicle_width
    if args.dense:
        options["dense"] = True
    return from_synthetic(args.n, args.seed, args.split, args.width, args.height, options)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        all_stats = _collect(args)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"dataset_stats: {exc}", file=sys.stderr)
        return 2
    summaries = {name: summarize(s) for name, s in all_stats.items()}
    for name, summary in summaries.items():
        print(format_summary(name, summary))
        print()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "stats.json", json.dumps(summaries, indent=1, default=float) + "\n")
    if not args.no_plots:
        paths = [plot_stats(s, args.out / f"stats_{_safe_name(name)}.png") for name, s in all_stats.items()]
        if len(all_stats) > 1:
            paths.append(plot_overview(all_stats, args.out / "stats_all.png"))
        print("plots: " + ", ".join(str(p) for p in paths))
    print(f"numbers: {args.out / 'stats.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
