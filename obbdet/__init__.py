"""obbdet: oriented-bounding-box vehicle detection for aerial and drone imagery.

Layout. The distribution installs one top-level package, ``obbdet``. The repository's ``datasets_registry/``,
``eval/`` and ``tools/`` folders install as ``obbdet.datasets_registry``, ``obbdet.eval`` and ``obbdet.tools``
(``pyproject.toml`` maps them), so nothing called ``eval`` or ``tools`` lands in a user's site-packages. In a
checkout (no install) the same names resolve because this package's search path also holds the checkout root;
``python train.py``, ``python -m eval.pascalvoc`` and ``python tools/X.py`` keep working there.

The top-level names are loaded lazily, so ``import obbdet`` (and ``eval``, which uses the numpy geometry)
never imports torch unless a torch-only name (``Predictor``) is used.
"""
from __future__ import annotations

import importlib
import os

__version__ = "0.2.0"

_CHECKOUT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if all(os.path.isfile(os.path.join(_CHECKOUT_ROOT, sub, "__init__.py")) for sub in ("datasets_registry", "eval")) \
        and os.path.isfile(os.path.join(_CHECKOUT_ROOT, "pyproject.toml")):
    # A checkout: obbdet.eval, obbdet.datasets_registry and obbdet.tools are the sibling folders.
    __path__.append(_CHECKOUT_ROOT)  # noqa: F821 (a package's __path__)

_LAZY_EXPORTS = {
    "BOX_DIM": "obbdet.boxes",
    "xywha_to_poly": "obbdet.boxes",
    "poly_to_xywha": "obbdet.boxes",
    "normalize_xywha": "obbdet.boxes",
    "xywha_to_aabb": "obbdet.boxes",
    "box_iou_rotated": "obbdet.iou",
    "nms_rotated": "obbdet.nms",
    "batched_nms_rotated": "obbdet.nms",
    "Predictor": "obbdet.inference.predictor",
    "Detections": "obbdet.inference.predictor",
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
