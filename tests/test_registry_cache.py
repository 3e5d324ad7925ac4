"""Annotation cache: a hit returns the same samples; any source change (edit, add, remove) re-parses."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from obbdet.datasets_registry import ImportSummary, load_dataset
from obbdet.datasets_registry.cache import CACHE_DIR_NAME, default_cache_dir, pack_samples, unpack_samples
from tests.registry_files import write_dota, write_image, write_text
from tests.test_registry_importers import XS, YS, vedai_line14


def _dataset(root, n=4):
    for i in range(n):
        write_dota(root, f"P{i:04d}", ["imagesource:GoogleEarth", f"{10 + i} 10 30 10 30 20 10 20 small-vehicle 0",
                                       "50 50 70 50 70 60 50 60 large-vehicle 1"])


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.image_path == y.image_path and (x.width, x.height) == (y.width, y.height)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.difficult, y.difficult)
        assert x.meta["classes"] == y.meta["classes"] and x.aabb_only == y.aabb_only


def load(root, cache, **options):
    summary = ImportSummary(dataset="dota")
    samples = load_dataset("dota", root, cache=cache, summary=summary, **options)
    return samples, summary


def test_hit_then_invalidation_on_edit_add_and_remove(tmp_path, monkeypatch):
    root = tmp_path / "dota"
    _dataset(root)
    cache_dir = tmp_path / "cache"
    parsed = []
    import obbdet.datasets_registry.dota as dota

    real = dota.load_dota
    monkeypatch.setitem(__import__("obbdet.datasets_registry.registry", fromlist=["IMPORTERS"]).IMPORTERS, "dota",
                        lambda *a, **k: parsed.append(1) or real(*a, **k))
    first, _ = load(root, cache_dir)
    second, summary = load(root, cache_dir)
    assert len(parsed) == 1 and summary.images == 4 and summary.objects == 8
    _same(first, second)
    assert len(list(cache_dir.glob("dota-*.pkl"))) == 1

    label = root / "labelTxt" / "P0002.txt"
    label.write_text(label.read_text() + "1 1 9 1 9 5 1 5 plane 0\n")  # edit
    third, _ = load(root, cache_dir)
    assert len(parsed) == 2 and len(third[2]) == 3
    load(root, cache_dir)
    assert len(parsed) == 2  # cached again

    stat = label.stat()  # same size, new mtime (touch) also re-parses
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    load(root, cache_dir)
    assert len(parsed) == 3

    write_dota(root, "P0009", ["1 1 9 1 9 5 1 5 small-vehicle 0"])  # add
    fourth, _ = load(root, cache_dir)
    assert len(parsed) == 4 and len(fourth) == 5

    (root / "labelTxt" / "P0000.txt").unlink()  # remove
    fifth, _ = load(root, cache_dir)
    assert len(parsed) == 5 and len(fifth) == 4

    load(root, cache_dir, strict=False)  # other options: another entry
    assert len(parsed) == 6


def test_image_change_invalidates(tmp_path):
    root = tmp_path / "dota"
    _dataset(root, n=2)
    first, _ = load(root, True)
    write_image(root / "images" / "P0001.png", 300, 120)  # the size comes from the image header
    second, _ = load(root, True)
    assert (second[1].width, second[1].height) == (300, 120) and (first[1].width, first[1].height) == (200, 100)


def test_default_dir_in_root_and_lenient_skips_reported_on_hits(tmp_path, caplog):
    root = tmp_path / "dota"
    _dataset(root, n=2)
    write_text(root / "labelTxt" / "P0001.txt", "1 2 3 x 5 6 7 8 car 0\n10 10 30 10 30 20 10 20 small-vehicle 0\n")
    load(root, True, strict=False)
    assert default_cache_dir(root) == root / CACHE_DIR_NAME and any((root / CACHE_DIR_NAME).iterdir())
    with caplog.at_level(logging.INFO, logger="obbdet.datasets_registry"):
        samples, summary = load(root, True, strict=False)
    assert any("from the annotation cache" in r.getMessage() for r in caplog.records)
    assert summary.skipped["malformed"] == 1 and "P0001.txt:1" in summary.messages[0]
    assert len(samples[1]) == 1


def test_unwritable_root_falls_back_to_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir(tmp_path / "missing") == tmp_path / "xdg" / "obbdet"
    assert default_cache_dir(None) == tmp_path / "xdg" / "obbdet"


def test_corrupt_entry_is_reparsed(tmp_path):
    root = tmp_path / "dota"
    _dataset(root, n=2)
    cache_dir = tmp_path / "cache"
    first, _ = load(root, cache_dir)
    (entry,) = cache_dir.glob("dota-*.pkl")
    entry.write_bytes(b"not a pickle")
    second, _ = load(root, cache_dir)
    _same(first, second)


def test_pack_round_trip_keeps_headings_and_object_meta(tmp_path):
    ann = tmp_path / "Annotations1024"
    write_image(tmp_path / "Vehicules1024" / "00000001_co.png", 8, 8)
    write_image(tmp_path / "Vehicules1024" / "00000002_co.png", 8, 8)
    write_text(ann / "00000001.txt", vedai_line14(30, 30, 0.5, 1, 1, 1, XS, YS) + "\n")
    write_text(ann / "00000002.txt", "")
    samples = load_dataset("vedai", tmp_path, angle_column="heading")
    back = unpack_samples(pack_samples(samples))
    _same(samples, back)
    assert back[0].heading[0] == pytest.approx(0.5) and back[1].heading is None
    assert back[0].meta["obj_occluded"].tolist() == [True] and back[1].meta["obj_occluded"].shape == (0,)
    assert unpack_samples(pack_samples([])) == []
