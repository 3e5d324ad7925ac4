"""tools/dataset_stats.py: numbers, printed tables and PNG plots from label folders, importers, registries."""
from __future__ import annotations

import json
import math

import numpy as np

from obbdet.formats import write_obb_json
from obbdet.structures import ImageLabels
from obbdet.tools import dataset_stats
from obbdet.tools.dataset_stats import DatasetStats, stats_from_labels, summarize


def _labels(boxes, classes, **kw) -> ImageLabels:
    boxes = np.asarray(boxes, float).reshape(-1, 5)
    n = len(boxes)
    return ImageLabels(boxes=boxes, classes=list(classes), difficult=np.asarray(kw.get("difficult", [False] * n)),
                       ignore=np.asarray(kw.get("ignore", [False] * n)), heading=kw.get("heading"),
                       image=kw.get("image"), width=kw.get("width"), height=kw.get("height"))


def test_summary_numbers():
    images = [
        _labels([[10, 10, 40, 16, 0.0], [50, 50, 48, 20, math.radians(30)]], ["car", "car"], difficult=[False, True]),
        _labels([[10, 10, 120, 25, math.radians(-45)]], ["bus"], heading=np.array([math.radians(135)])),
        _labels([[5, 5, 30, 12, 0.0], [9, 9, 30, 12, 0.0]], ["car", "van"], ignore=[False, True]),
        _labels([], []),
    ]
    stats = stats_from_labels("toy", images)
    s = summarize(stats)
    assert s["images"] == 4 and s["objects"] == 4  # the ignored van is left out
    assert s["objects_per_image"]["max"] == 2 and s["objects_per_image"]["empty_images"] == 1
    assert s["classes"]["car"]["count"] == 3 and s["classes"]["car"]["difficult"] == 1
    assert s["classes"]["car"]["length"][1] == 40.0  # median of 40, 48, 30
    assert s["classes"]["bus"]["aspect"][1] == 4.8
    assert s["heading_known"] == 1
    assert stats.class_names == ["car", "bus"]
    assert np.allclose(sorted(stats.angle), [-45, 0, 0, 30])
    text = dataset_stats.format_summary("toy", s)
    assert "toy: 4 images" in text and "car" in text and "bus" in text


def test_folder_source_prints_and_plots(tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        n = int(rng.integers(1, 6))
        boxes = np.column_stack([rng.uniform(0, 100, (n, 2)), rng.uniform(30, 50, n), rng.uniform(10, 20, n),
                                 rng.uniform(-1.5, 1.5, n)])
        write_obb_json(labels / f"img{i}.json", _labels(boxes, rng.choice(["car", "truck"], n).tolist(),
                                                        image=f"img{i}.png", width=100, height=100))
    out = tmp_path / "out"
    assert dataset_stats.main(["--folder", str(labels), "--format", "obb_json", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "labels: 5 images" in printed and "length p5/50/95" in printed
    assert (out / "stats_labels.png").stat().st_size > 10_000
    numbers = json.loads((out / "stats.json").read_text())
    assert numbers["labels"]["images"] == 5


def test_synthetic_and_importer_and_registry_sources(tmp_path, capsys):
    out = tmp_path / "out"
    assert dataset_stats.main(["--synthetic", "--n", "3", "--width", "192", "--height", "192",
                               "--vehicle-width", "14,16", "--out", str(out), "--no-plots"]) == 0
    assert "synthetic: 3 images" in capsys.readouterr().out
    # a generated folder through the registry's obb_json importer
    from obbdet.datasets_registry.synthetic import generate_synthetic_dataset

    root = tmp_path / "syn"
    generate_synthetic_dataset(root, 3, seed=1, width=192, height=192, progress=False)
    assert dataset_stats.main(["--kind", "obb_json", "--root", str(root), "--out", str(out), "--no-plots"]) == 0
    assert "obb_json: 3 images" in capsys.readouterr().out
    # a registry config with two datasets: per-dataset figures and the overview
    config = tmp_path / "registry.yaml"
    config.write_text(
        "seed: 0\ncache: false\ndatasets:\n"
        f"  - {{name: gen, type: obb_json, root: {root}, val_fraction: 0.34}}\n"
        f"  - {{name: syn, type: synthetic, root: {tmp_path / 'syn2'}, role: train,\n"
        "      options: {n_train: 2, n_val: 0, width: 160, height: 160, progress: false}}\n")
    assert dataset_stats.main(["--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== gen: 3 images (train 2, val 1)" in printed and "== syn: 2 images (train 2)" in printed
    assert (out / "stats_gen.png").is_file() and (out / "stats_syn.png").is_file() and (out / "stats_all.png").is_file()


def test_bad_source_is_one_clear_line(tmp_path, capsys):
    assert dataset_stats.main(["--folder", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataset_stats: ") and "missing" in err and len(err.strip().splitlines()) == 1


def test_empty_dataset_plots_without_data(tmp_path):
    stats = DatasetStats("empty")
    stats.add_image(np.zeros((0, 5)), [])
    path = dataset_stats.plot_stats(stats, tmp_path / "empty.png")
    assert path.is_file()
    assert summarize(stats)["objects"] == 0
