"""Exact, fast OBB detection evaluation (numpy only: never imports torch).

Python API::

    from . import evaluate, evaluate_arrays, match_image
    result = evaluate(gt, det)              # dicts image key -> obbdet.structures.ImageLabels
    result.map["0.50"], result.map["50-95"]  # fractions in [0, 1]
    print(result.format_tables())

Command line: ``python -m eval.pascalvoc -gt DIR -det DIR`` (see ``--help``). ``tools/compute_miou.py``
compares two label sets object by object (:func:`eval.miou.compute_miou`).
"""
from __future__ import annotations

from .api import evaluate, evaluate_arrays, evaluate_samples
from .errors import EvalInputError
from .image_match import ImageMatch, match_image
from .result import EvalResult

__all__ = ["evaluate", "evaluate_arrays", "evaluate_samples", "match_image", "EvalResult", "ImageMatch",
           "EvalInputError", "compute_miou"]


def __getattr__(name: str):
    if name == "compute_miou":  # needs scipy: loaded on first use only
        from .miou import compute_miou

        return compute_miou
    raise AttributeError(f"module 'eval' has no attribute {name!r}")
