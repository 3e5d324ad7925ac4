"""obbdet: oriented-bounding-box vehicle detection for aerial and drone imagery.

The top-level names are loaded lazily, so ``import obbdet`` (and ``eval``, which uses the numpy geometry)
never imports torch unless a torch-only function is used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "BOX_DIM": "obbdet.boxes",
    "xywha_to_poly": "obbdet.boxes",
    "poly_to_xywha": "obbdet.boxes",
    "normalize_xywha": "obbdet.boxes",
    "xywha_to_aabb": "obbdet.boxes",
    "box_iou_rotated": "obbdet.iou",
    "nms_rotated": "obbdet.nms",
    "batched_nms_rotated": "obbdet.nms",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str):
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'obbdet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
