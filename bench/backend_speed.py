"""Images/s of the inference backends on the CPU, decoding and rotated NMS included (``bench/infer_speed.py``).

For each model and each square size (768, 1024), synthetic aerial scenes go through ``Predictor.predict``
(whole image, no rescaling: staging, forward pass, candidate selection, decoding, score threshold, exact
rotated NMS) in four modes, timed per image (median, batch 1, after a warm-up):

- ``eager fp32``: PyTorch float32, NCHW (the baseline: the ratios are against it);
- ``eager fp32 channels_last``: the CPU default of ``Predictor.from_checkpoint``;
- ``eager bf16 channels_last``: ``precision="bf16"`` (CPU autocast; native only with AVX512-BF16/AMX);
- ``onnxruntime fp32``: the ``tools/export.py`` graph run by ONNX Runtime (``OnnxDetector``), threads as torch's.

Then ultralytics YOLO11n-obb and YOLO26n-obb (built from their model YAML, random weights: speed does not depend
on them), exported to ONNX at each size and run by ONNX Runtime with the same pre-processing, score threshold
and obbdet's rotated NMS, when the ``ultralytics`` package is installed (it never is a dependency of obbdet).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch

MODES = (("eager fp32", "torch", "fp32", False), ("eager fp32 channels_last", "torch", "fp32", True),
         ("eager bf16 channels_last", "torch", "bf16", True), ("onnxruntime fp32", "onnxruntime", "fp32", False))
YOLO_MODELS = ("yolo11n-obb.yaml", "yolo26n-obb.yaml")


def random_checkpoint(variant: str, classes: list[str], folder: Path) -> Path:
    """A checkpoint of ``variant`` with random weights (speed does not depend on them)."""
    from obbdet.checkpoint import save_checkpoint
    from obbdet.config import ModelConfig
    from obbdet.model.detector import build_detector

    torch.manual_seed(0)
    detector = build_detector(ModelConfig(variant=variant, image_size=768), classes, verbose=False)
    path = folder / f"{variant}.pt"
    save_checkpoint({"model": {"variant": variant, "image_size": 768, **detector.spec},
                     "state_dict": detector.state_dict(), "ema_state_dict": None, "vehicle_width": 16.0}, path)
    return path


def time_per_image(run, images: list[np.ndarray]) -> tuple[float, float]:
    """(median seconds per image, mean number of detections) of ``run(image) -> detections``."""
    run(images[0])  # warm-up: allocations, anchors, oneDNN primitives
    seconds, counts = [], []
    for image in images:
        start = time.perf_counter()
        counts.append(len(run(image)))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), float(np.mean(counts))


def obbdet_rows(checkpoint: Path, label: str, scenes: dict, score: float, folder: Path) -> list[tuple]:
    """``(model, size, mode, seconds, detections)`` rows of one checkpoint in every mode."""
    from obbdet.inference import Predictor
    from obbdet.inference.onnx_export import export_onnx

    onnx_path = folder / f"{checkpoint.stem}.onnx"
    export_onnx(checkpoint, onnx_path)
    rows = []
    for mode, backend, precision, channels_last in MODES:
        source = onnx_path if backend == "onnxruntime" else checkpoint
        options = dict(whole=True, score_threshold=score) if backend == "onnxruntime" else \
            dict(whole=True, score_threshold=score, precision=precision, channels_last=channels_last)
        predictor = Predictor.from_checkpoint(source, "cpu", **options)
        for size, images in scenes.items():
            seconds, count = time_per_image(lambda image: predictor.predict(image, -1), images)
            rows.append((label, size, mode, seconds, count))
    return rows


def yolo_rows(scenes: dict, score: float, nms_iou: float, folder: Path) -> tuple[list[tuple], list[str]]:
    """Rows of the ultralytics OBB models exported to ONNX (ONNX Runtime, obbdet's rotated NMS), and notes
    (why a model was skipped)."""
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        return [], [f"ultralytics YOLO11n-obb / YOLO26n-obb: skipped, the ultralytics package is not installed "
                    f"({exc}); pip install ultralytics to compare (never a dependency of obbdet)"]
    from obbdet.inference.onnx_backend import open_session

    rows, notes = [], []
    for name in YOLO_MODELS:
        for size, images in scenes.items():
            try:
                with contextlib.chdir(folder):  # ultralytics writes the export beside the model's (relative) name
                    exported = folder / YOLO(name).export(format="onnx", imgsz=size, dynamic=False, simplify=False,
                                                          opset=17, device="cpu")
            except Exception as exc:  # noqa: BLE001 - an ultralytics version without the model, or no exporter
                notes.append(f"{name} at {size}: skipped, export failed ({' '.join(str(exc).split())[:200]})")
                continue
            session = open_session(Path(exported), "cpu")
            input_name = session.get_inputs()[0].name
            run = lambda image: _yolo_detect(session, input_name, image, score, nms_iou)  # noqa: E731
            seconds, count = time_per_image(run, images)
            rows.append((name.replace(".yaml", " (onnxruntime)"), size, "onnxruntime fp32", seconds, count))
    return rows, notes


def _yolo_detect(session, input_name: str, image: np.ndarray, score: float, nms_iou: float) -> torch.Tensor:
    """Boxes ``[K, 5]`` xywha (radians) of an ultralytics OBB ONNX model on ``image [H, W, 3]`` uint8 RGB.

    Raw heads give ``[1, 4 + C + 1, N]`` (xywh, class scores, angle): threshold, then obbdet's class-aware rotated
    NMS; end-to-end heads (YOLO26) give ``[1, N, 7]`` (xywh, score, class, angle) already suppressed."""
    from obbdet.nms import batched_nms_rotated

    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    out = session.run(None, {input_name: x})[0][0]
    if out.shape[-1] == 7 and out.shape[0] != 7:  # end-to-end: (N, 7)
        kept = out[out[:, 4] > score]
        return torch.from_numpy(np.concatenate([kept[:, :4], kept[:, 6:7]], 1))
    pred = out.T  # (N, 4 + C + 1)
    class_scores = pred[:, 4:-1]
    labels, best = class_scores.argmax(1), class_scores.max(1)
    keep = best > score
    boxes = torch.from_numpy(np.concatenate([pred[keep, :4], pred[keep, -1:]], 1).astype(np.float32))
    if not len(boxes):
        return boxes
    order = batched_nms_rotated(boxes, torch.from_numpy(best[keep]), torch.from_numpy(labels[keep]), nms_iou)
    return boxes[order]


def print_rows(rows: list[tuple], reference: str) -> None:
    """One line per (model, size, mode): images/s and the ratio to the same model's eager fp32 at that size
    (models without one, the YOLO rows: to ``reference``'s)."""
    baseline = {(model, size): seconds for model, size, mode, seconds, _ in rows if mode == "eager fp32"}
    for model, size, mode, seconds, count in rows:
        own = (model, size) in baseline
        base = baseline.get((model, size) if own else (reference, size))
        ratio = f"x{base / seconds:5.2f}" if base else "   -  "
        print(f"  {model:40s} {size:5d}  {mode:25s} {1 / seconds:7.2f} images/s {1000 * seconds:7.0f} ms  {ratio}"
              f"{'' if own else ' vs ' + reference + ' eager fp32'}  ({count:.1f} detections/image)", flush=True)


def _variant(ckpt) -> str:
    from obbdet.checkpoint import load_checkpoint

    return str(load_checkpoint(ckpt)["model"].get("variant"))


def bench_backends(ckpt: str | None, sizes: list[int], images: int, score: float, variants: list[str]) -> None:
    """The backend table (see the module docstring)."""
    import tempfile

    from obbdet.datasets_registry.synthetic import render_scene
    from obbdet.training import cpu_bf16_supported

    classes = ["car", "truck", "bus", "van"]
    scenes = {size: [render_scene(300 + i, size, size, vehicle_width=16.0)[0] for i in range(images)]
              for size in sizes}
    print(f"backends: {torch.get_num_threads()} CPU thread(s), {images} scenes per size, score >= {score:g}, "
          f"native bfloat16: {'yes' if cpu_bf16_supported() else 'no (emulated)'}; batch 1, decode + NMS "
          "included; ratio: speed-up over the same model's eager fp32")
    with tempfile.TemporaryDirectory(prefix="obbdet-backends-") as tmp:
        folder = Path(tmp)
        models = [(Path(ckpt), f"{Path(ckpt).parent.name}/{Path(ckpt).name} ({_variant(ckpt)})")] if ckpt else []
        models += [(random_checkpoint(v, classes, folder), f"{v} (random weights)") for v in variants]
        rows = []
        for checkpoint, label in models:
            rows += obbdet_rows(checkpoint, label, scenes, score, folder)
        yolo, notes = yolo_rows(scenes, score, 0.4, folder)
    print_rows(rows + yolo, models[0][1])
    for note in notes:
        print(f"  {note}")
