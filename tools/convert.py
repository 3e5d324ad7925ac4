"""Convert oriented-box labels between obb_json, DOTA, YOLO-OBB and COCO JSON with rotated boxes.

    python tools/convert.py SRC DST --from dota --to obb_json [--images DIR]
    python tools/convert.py labels/ data.json --from obb_json --to coco --classes car,truck
    python tools/convert.py labels/ yolo/ --from obb_json --to yolo_obb --classes classes.txt

SRC and DST are folders of per-image files named after the image stems, except for ``coco``, which is one
JSON file. Ground truth or detections are recognised automatically (``--kind`` overrides): obb_json and
COCO records with a ``score``, DOTA lines whose last token is not a difficult flag (0/1/2), YOLO-OBB lines
with a tenth number.

COCO files follow the layout described in ``tools/coco.py`` (rotated boxes in ``rbox``, corners in
``segmentation``, the axis-aligned ``bbox``).

YOLO-OBB needs the class list (``--classes`` names file, YAML with ``names``, or comma list) and each
image's size: from obb_json/COCO sources, ``--images DIR`` (headers only) or ``--image-size W,H``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from obbdet.formats import LabelFormatError, label_extension, write_dota, write_obb_json, write_yolo_obb  # noqa: E402
from obbdet.structures import ImageLabels  # noqa: E402
from obbdet.tools.coco import read_coco, write_coco  # noqa: E402
from obbdet.tools.labelsets import (ImageSizes, ToolInputError, label_files, load_class_names,  # noqa: E402
                                    looks_like_detections, parse_image_size, read_folder, report_error,
                                    select_objects)
from obbdet.imageio import find_image  # noqa: E402

FOLDER_FORMATS = ("obb_json", "dota", "yolo_obb")
CONVERT_FORMATS = FOLDER_FORMATS + ("coco",)


# ---------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------

def read_source(args, class_names, sizes: ImageSizes) -> tuple[dict[str, ImageLabels], list[str] | None, int]:
    """Read SRC. Returns (labels by stem, class names (from COCO categories if not given), files skipped)."""
    src = Path(args.src)
    if args.src_format == "coco":
        if not src.is_file():
            raise ToolInputError(f"{src}: no such COCO JSON file")
        labels, coco_names = read_coco(src)
        return labels, class_names or coco_names, 0
    files = label_files(src, args.src_format)
    detections = args.kind == "det" or (args.kind == "auto" and looks_like_detections(files, args.src_format))
    labels, failed = read_folder(src, args.src_format, detections=detections, class_names=class_names,
                                 sizes=sizes, progress=True)
    return labels, class_names, failed


def write_destination(args, labels_by_stem: dict[str, ImageLabels], class_names, sizes: ImageSizes,
                      lost: dict[str, int] | None = None) -> int:
    """Write DST. Returns the number of images that could not be written (each reported). ``lost`` (if given)
    receives what the destination format could not carry: ``{field: number of objects}``."""
    lost = {} if lost is None else lost
    dst = Path(args.dst)
    if args.dst_format == "coco":
        names = class_names or sorted({c for labels in labels_by_stem.values() for c in labels.classes})
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_coco(dst, labels_by_stem, names, sizes)
        return 0
    if args.dst_format == "yolo_obb" and not class_names:
        raise ToolInputError("yolo_obb output needs the class list: pass --classes")
    dst.mkdir(parents=True, exist_ok=True)
    lost.update(_warn_lost_fields(labels_by_stem, args.dst_format))
    failed = 0
    for stem, labels in labels_by_stem.items():
        out_path = dst / f"{stem}{label_extension(args.dst_format)}"
        if args.dst_format == "yolo_obb":
            before = len(labels)
            labels = _drop_zero_size(labels, out_path, args.dst_format)
            if len(labels) < before:
                lost["zero-area box"] = lost.get("zero-area box", 0) + before - len(labels)
        try:
            _write_one(out_path, labels, args.dst_format, class_names, sizes(stem))
        except (ToolInputError, ValueError) as exc:
            report_error(str(exc))
            failed += 1
    return failed


def _write_one(path: Path, labels: ImageLabels, fmt: str, class_names, size) -> None:
    if fmt == "obb_json":
        if size is not None:
            labels.width, labels.height = size
        write_obb_json(path, labels)
    elif fmt == "dota":
        write_dota(path, _ignore_as_difficult(labels))
    else:
        if size is None:
            raise ToolInputError(f"{path.stem}: image size unknown; YOLO-OBB needs it (pass --images DIR "
                                 "or --image-size W,H)")
        write_yolo_obb(path, labels, size, class_names)


def _drop_zero_size(labels: ImageLabels, path: Path, fmt: str) -> ImageLabels:
    """Drop zero-area boxes (kept as difficult by the DOTA and COCO readers), which YOLO-OBB cannot hold
    (obb_json keeps them as difficult); they never match anything (IoU 0), so evaluation results do not change."""
    zero = labels.boxes[:, 3] <= 1e-12 * np.maximum(labels.boxes[:, 2], 1.0) if len(labels) else np.zeros(0, bool)
    if not zero.any():
        return labels
    print(f"warning: {path}: {int(zero.sum())} zero-area object(s) dropped ({fmt} cannot hold them)",
          file=sys.stderr)
    return select_objects(labels, ~zero)


def _ignore_as_difficult(labels: ImageLabels) -> ImageLabels:
    if not labels.ignore.any():
        return labels
    return ImageLabels(image=labels.image, width=labels.width, height=labels.height, boxes=labels.boxes,
                       classes=labels.classes, scores=labels.scores, difficult=labels.difficult | labels.ignore,
                       ignore=np.zeros_like(labels.ignore), heading=labels.heading)


def _warn_lost_fields(labels_by_stem: dict[str, ImageLabels], fmt: str) -> dict[str, int]:
    """Say what the destination format cannot hold (it is dropped, never silently); returns ``{field: number of
    objects}`` of what is dropped, for the summary line."""
    if fmt == "obb_json":
        return {}
    count = lambda pick: sum(int(pick(lb)) for lb in labels_by_stem.values())  # noqa: E731
    headings = count(lambda lb: 0 if lb.heading is None else np.isfinite(lb.heading).sum())
    extras = count(lambda lb: 0 if lb.extras is None else sum(bool(e) for e in lb.extras))
    ignored = count(lambda lb: lb.ignore.sum())
    # DOTA detection lines end with the score, where ground truth has the difficult flag: one or the other
    difficult = count(lambda lb: lb.difficult.sum() if fmt == "yolo_obb" or lb.scores is not None else 0)
    lost = {"difficult": difficult, "heading": headings, "extra keys": extras}
    if fmt == "yolo_obb":
        lost["ignore"] = ignored
    else:
        ignored_det = count(lambda lb: lb.ignore.sum() if lb.scores is not None else 0)
        lost["ignore"] = ignored_det
        if ignored - ignored_det:
            print(f"warning: {ignored - ignored_det} 'ignore' marker(s) written as difficult (DOTA has no ignore "
                  f"flag)", file=sys.stderr)
    for what, n in lost.items():
        if n:
            print(f"warning: {fmt} cannot store {what}{' flag' if what in ('difficult', 'ignore') else ''}; "
                  f"dropped for {n} object(s)", file=sys.stderr)
    return {what: n for what, n in lost.items() if n}


def format_lost(lost: dict[str, int]) -> str:
    """``"dropped: difficult (12 objects), heading (30 objects)"``, or "" when nothing was dropped."""
    if not lost:
        return ""
    return "dropped: " + ", ".join(f"{what} ({n} object{'s' if n != 1 else ''})" for what, n in lost.items())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="source folder (COCO: JSON file)")
    parser.add_argument("dst", help="destination folder (COCO: JSON file)")
    parser.add_argument("--from", dest="src_format", required=True, choices=CONVERT_FORMATS)
    parser.add_argument("--to", dest="dst_format", required=True, choices=CONVERT_FORMATS)
    parser.add_argument("--classes", help="class names: a names file (one per line), YAML with 'names', or a,b,c")
    parser.add_argument("--images", help="folder of the images, for sizes (read from headers only)")
    parser.add_argument("--image-size", help="W,H for every image (when all images share one size)")
    parser.add_argument("--kind", choices=("auto", "gt", "det"), default="auto",
                        help="ground truth or detections (default: recognised from the files)")
    return parser.parse_args(argv)


def convert(args) -> int:
    """Run one conversion; returns the process exit status (0 ok, 1 some inputs skipped)."""
    if Path(args.src).resolve() == Path(args.dst).resolve():
        raise ToolInputError(f"{args.dst}: destination is the source; choose another folder")
    class_names = load_class_names(args.classes)
    sizes = ImageSizes(images_dir=Path(args.images) if args.images else None,
                       fixed=parse_image_size(args.image_size))
    if sizes.images_dir is not None and not sizes.images_dir.is_dir():
        raise ToolInputError(f"{sizes.images_dir}: no such folder")
    labels, class_names, read_failed = read_source(args, class_names, sizes)
    for stem, lb in labels.items():
        sizes.remember(stem, lb)
        if lb.image is None and sizes.images_dir is not None:
            found = find_image(stem, [sizes.images_dir])
            lb.image = found.name if found is not None else None
    if args.dst_format == "coco" and read_failed:
        raise ToolInputError(f"{read_failed} source file(s) could not be read (see above); {args.dst} not written")
    lost: dict[str, int] = {}
    write_failed = write_destination(args, labels, class_names, sizes, lost)
    n_objects = sum(len(lb) for lb in labels.values())
    dropped = format_lost(lost)
    print(f"converted {len(labels) - write_failed} image(s) ({n_objects} object(s) read): {args.src} "
          f"({args.src_format}) -> {args.dst} ({args.dst_format})" + (f"; {dropped}" if dropped else ""))
    if read_failed or write_failed:
        print(f"error: {read_failed + write_failed} file(s) skipped (see above)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return convert(args)
    except (ToolInputError, LabelFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
