"""Ordered frame folders: the images of one folder as a sequence of numbered frames.

Frames are in natural name order (``f2`` before ``f10``); a frame's number is its integer stem when every stem
is an integer (``000120.jpg`` is frame 120, so frames exported with gaps keep their numbers), else its 0-based
position. ``obbdet.video.frame_selected`` selects among them as among a video's frames.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from obbdet.formats import IMAGE_EXTENSIONS


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return tuple((0, int(part), part) if part.isascii() and part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def frame_folder(folder, paths: Sequence | None = None) -> list[tuple[int, Path]]:
    """The images of one folder (or ``paths``, images of one sequence) as ``[(frame_number, path)]`` in natural
    order of their names; the frame number is the integer stem when every stem is an integer (``000017.jpg``
    -> 17), else the position (0-based). Two files with the same integer stem raise ValueError naming both."""
    if paths is None:
        folder = Path(folder)
        paths = [folder / name for name in os.listdir(folder)
                 if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS]
    ordered = sorted((Path(p) for p in paths), key=lambda p: natural_key(p.name))
    if ordered and all(re.fullmatch(r"[0-9]+", p.stem) for p in ordered):
        numbers = [int(p.stem) for p in ordered]
        for a, b, n in zip(ordered, ordered[1:], numbers[1:]):
            if int(a.stem) == n:
                raise ValueError(f"{a} and {b}: two images of frame {n} in one sequence")
        return list(zip(numbers, ordered))
    return list(enumerate(ordered))
