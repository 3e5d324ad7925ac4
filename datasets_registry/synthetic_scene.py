"""Synthetic aerial scene generation: :func:`render_scene`, from a seed and options to an image and its labels.

A scene is laid out in metres (``Scene.m`` converts to pixels) on a ground map of materials; roads, lots,
buildings, trees and hard negatives reserve their areas in occupancy masks, the layout offers vehicle slots
(stalls, lanes, kerbs, driveways), and :func:`render_scene` fills them, renders the layers in order (ground
and paint, flat objects, low shadows, vehicles, high shadows, roofs and canopies, camera effects) and
returns the labels. This module owns that pipeline, the choice of scene kind, scale and sun, and the
labels; the steps live in ``synthetic_layout`` (with ``synthetic_roads``, ``synthetic_lots`` and
``synthetic_dressing``), ``synthetic_placement``, ``synthetic_ground`` and ``synthetic_render``. See
:mod:`datasets_registry.synthetic` for the dataset-level API.
"""
from __future__ import annotations

import math

import numpy as np

from .synthetic_ground import make_palette, material_map
from .synthetic_layout import LAYOUTS
from .scale import CAR_WIDTH_M
from .synthetic_options import SceneOptions, as_range
from .synthetic_placement import place_vehicles, stains_and_shadows
from .synthetic_render import render
from .synthetic_state import Scene
from obbdet.boxes import BOX_DIM, clip_polys_to_rect, normalize_xywha, poly_to_xywha, wrap_angle, xywha_to_poly
from obbdet.structures import ImageLabels

DIFFICULT_BELOW = 0.6  # labelled vehicles less visible than this are marked difficult
_KIND_WEIGHTS = {"parking": 0.28, "street": 0.3, "suburb": 0.12, "depot": 0.18, "yard": 0.12}
_DENSE_KIND_WEIGHTS = {"parking": 0.75, "depot": 0.25}


def _labels(scene: Scene) -> ImageLabels:
    return vehicle_labels([v for v, _ in scene.vehicles], np.array([vis for _, vis in scene.vehicles]),
                          scene.width, scene.height)


def vehicle_labels(vehicles: list, visible: np.ndarray, width: int, height: int) -> ImageLabels:
    """Labels of ``vehicles`` (:class:`~datasets_registry.synthetic_vehicles.Vehicle`) in a ``width`` x
    ``height`` image, ``visible`` ``[N]`` the fraction of each inside it: boxes xywha le90, those cut by the
    border refitted to their visible part, ``heading`` radians in ``[-pi, pi)``, ``difficult`` when less than
    ``DIFFICULT_BELOW`` is visible."""
    n = len(vehicles)
    boxes = np.zeros((n, BOX_DIM), np.float64)
    visible = np.asarray(visible, np.float64).reshape(n)
    for i, veh in enumerate(vehicles):
        boxes[i] = (veh.cx, veh.cy, veh.length, veh.width, veh.heading)
    cut = np.flatnonzero(visible < 1.0)
    if len(cut):  # the visible part of vehicles cut by the image border, refitted
        clipped, _, _ = clip_polys_to_rect(xywha_to_poly(boxes[cut]), 0.0, 0.0, width, height)
        boxes[cut] = poly_to_xywha(clipped, warn=False)
    heading = np.array([wrap_angle(v.heading, -math.pi, 2 * math.pi) for v in vehicles], np.float64)
    return ImageLabels(width=width, height=height, boxes=normalize_xywha(boxes) if n else boxes,
                       classes=[v.cls for v in vehicles], difficult=visible < DIFFICULT_BELOW,
                       ignore=np.zeros(n, bool), heading=heading)


def new_scene(rng: np.random.Generator, width: int, height: int, opts: SceneOptions) -> Scene:
    kind = opts.scene
    if kind is None:
        table = _DENSE_KIND_WEIGHTS if opts.dense else _KIND_WEIGHTS
        names = list(table)
        if not {"bus", "truck"} & set(opts.classes):
            names.remove("depot")
        w = np.array([table[k] for k in names])
        kind = names[int(rng.choice(len(names), p=w / w.sum()))]
    low, high = as_range(opts.vehicle_width)
    ppm = rng.uniform(low, high) / CAR_WIDTH_M
    azimuth = rng.uniform(-math.pi, math.pi)
    zenith = math.radians(rng.uniform(20, 60))
    overcast = rng.random() < 0.15
    return Scene(rng=rng, width=width, height=height, opts=opts, kind=kind, ppm=ppm, phi=rng.uniform(0, math.pi),
                  shadow_dir=np.array([math.cos(azimuth), math.sin(azimuth)]), shadow_k=math.tan(zenith) * ppm,
                  shadow_strength=rng.uniform(0.1, 0.25) if overcast else rng.uniform(0.35, 0.6),
                  palette=make_palette(rng), reserve=np.zeros((height, width), np.uint8),
                  obstacle=np.zeros((height, width), np.uint8), occupied=np.zeros((height, width), np.uint8))


def render_scene(seed: int, width: int = 512, height: int = 512, **options) -> tuple[np.ndarray, ImageLabels]:
    """Render one synthetic aerial scene.

    Args:
        seed: the scene's integer seed (the same seed and options always give the same image and labels).
        width, height: image size in pixels.
        **options: :class:`SceneOptions` fields (``vehicle_width``, ``n_vehicles``, ``dense``, ``classes``,
            ``hard_negatives``, ``scene``).

    Returns:
        ``(image [H, W, 3] uint8 RGB, labels)``: ``labels.boxes`` ``[N, 5]`` float64 xywha le90 (continuous
        pixel coordinates), ``labels.classes`` names from ``SYNTHETIC_CLASSES``, ``labels.heading`` ``[N]``
        radians in ``[-pi, pi)`` (the vehicle's front), ``labels.difficult`` for vehicles mostly cut off
        by the image border.
    """
    opts = SceneOptions.from_kwargs(options)
    if width < 32 or height < 32:
        raise ValueError(f"scene size must be at least 32 x 32 px, got {width} x {height}")
    scene = new_scene(np.random.default_rng(seed), int(width), int(height), opts)
    LAYOUTS[scene.kind](scene)
    scene.material_map = material_map(scene)
    place_vehicles(scene)
    if opts.hard_negatives:
        stains_and_shadows(scene)
    image = render(scene)
    return image, _labels(scene)
