"""Export a checkpoint to ONNX for ONNX Runtime inference.

    python tools/export.py CKPT --format onnx --out model.onnx [--opset 17] [--ema | --no-ema]
                           [--pre-nms-topk N]

The graph takes ``images [B, 3, H, W]`` float32 RGB in [0, 1] (batch, height and width dynamic; H and W
multiples of the model's stride; normalization is in the graph) and returns each class's best candidates
decoded to le90 boxes: ``scores [B, k, C]``, ``boxes [B, k, C, 5]`` (cx, cy, w, h, a: w the long side, a in
radians in [-pi/2, pi/2), clockwise on screen, pixels of the input) and ``heading [B, k, C]`` (radians) when
the model predicts the vehicle's front. The score threshold and the exact rotated NMS run after it in Python,
as in the PyTorch path. The checkpoint's inference settings travel in the model's metadata, so the file alone
runs: ``infer.py IMAGES WIDTH model.onnx obb`` or ``Predictor.from_checkpoint("model.onnx")``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXIT_OK = 0
EXIT_SETUP_ERROR = 2

EPILOG = """\
metadata (metadata_props "obbdet", JSON): classes, training vehicle width, stride, NMS IoU, candidates per
  class (k), calibration factors, per-class operating point, anchors, the weights used (ema/raw), the source
  checkpoint and the obbdet version.
exit codes: 0 written; 2 nothing written (unreadable checkpoint, failed export or check).
"""


def build_parser() -> argparse.ArgumentParser:
    from obbdet.inference.onnx_export import DEFAULT_OPSET

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="obbdet checkpoint (.pt)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: the checkpoint's name, .onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ema = p.add_mutually_exclusive_group()
    ema.add_argument("--ema", dest="ema", action="store_true", default=True,
                     help="export the EMA weights when the checkpoint has them (default)")
    ema.add_argument("--no-ema", dest="ema", action="store_false", help="export the raw weights")
    p.add_argument("--pre-nms-topk", type=int, default=None,
                   help="candidate locations per class kept in the graph (default: the checkpoint's, else 1000); "
                        "inference may ask for fewer, not more")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``--help``)."""
    args = build_parser().parse_args(argv)  # a usage error exits with 2, --help with 0
    from obbdet.checkpoint import CheckpointError
    from obbdet.inference.onnx_export import ExportError, export_onnx

    if args.pre_nms_topk is not None and args.pre_nms_topk < 1:
        print(f"export.py: error: --pre-nms-topk must be >= 1, got {args.pre_nms_topk}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    out = args.out or args.checkpoint.with_suffix(".onnx")
    try:
        meta = export_onnx(args.checkpoint, out, opset=args.opset, use_ema=args.ema, pre_nms_topk=args.pre_nms_topk)
    except (CheckpointError, ExportError) as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    except OSError as exc:
        print(f"export.py: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    print(f"{out}: {meta['variant']} ({meta['weights']} weights of {args.checkpoint.name}), opset {args.opset}, "
          f"classes {', '.join(meta['class_names'])}, stride {meta['stride']}, {meta['pre_nms_topk']} candidates "
          f"per class{', heading' if meta['heading'] else ''}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
