"""Writers of tiny datasets in the exact native formats, for the registry tests."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, width: int, height: int) -> Path:
    """A small real image (grey, PNG or JPEG by suffix), different for every path: the first row holds a hash
    of the path, since the registry treats byte-identical images as one image listed twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), 127, np.uint8)
    mark = np.frombuffer(hashlib.blake2b(str(path).encode(), digest_size=16).digest(), np.uint8)
    row = image[0].reshape(-1)
    row[:min(len(row), len(mark))] = mark[:len(row)]
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_dota(root: Path, stem: str, lines: list[str], size=(200, 100), images_dir="images", labels_dir="labelTxt"):
    write_image(root / images_dir / f"{stem}.png", *size)
    return write_text(root / labels_dir / f"{stem}.txt", "\n".join(lines) + "\n")


def dronevehicle_xml(objects: list[str], size=(840, 712)) -> str:
    return (f"<annotation>\n  <filename>x.jpg</filename>\n  <size>\n    <width>{size[0]}</width>\n"
            f"    <height>{size[1]}</height>\n    <depth>3</depth>\n  </size>\n" + "".join(objects) + "</annotation>\n")


def dv_polygon(name: str, corners, difficult: int = 0) -> str:
    coords = "".join(f"<x{i + 1}>{x}</x{i + 1}><y{i + 1}>{y}</y{i + 1}>" for i, (x, y) in enumerate(corners))
    return (f"  <object>\n    <name>{name}</name>\n    <difficult>{difficult}</difficult>\n"
            f"    <polygon>{coords}</polygon>\n  </object>\n")


def dv_bndbox(name: str, x0, y0, x1, y1) -> str:
    return (f"  <object>\n    <name>{name}</name>\n    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox>\n  </object>\n")


def dv_point(name: str, x, y) -> str:
    return f"  <object>\n    <name>{name}</name>\n    <point><x>{x}</x><y>{y}</y></point>\n  </object>\n"


def write_dronevehicle(root: Path, split: str, stem: str, rgb_objects: list[str], ir_objects: list[str] | None = None):
    base = root / split
    write_image(base / f"{split}img" / f"{stem}.jpg", 840, 712)
    write_image(base / f"{split}imgr" / f"{stem}.jpg", 840, 712)
    write_text(base / f"{split}label" / f"{stem}.xml", dronevehicle_xml(rgb_objects))
    write_text(base / f"{split}labelr" / f"{stem}.xml", dronevehicle_xml(ir_objects if ir_objects is not None
                                                                        else rgb_objects))


def vedai_line14(cx, cy, angle, class_id, contained, occluded, xs, ys) -> str:
    return " ".join(str(v) for v in (cx, cy, angle, class_id, contained, occluded, *xs, *ys))


def vedai_line15(image_id, cx, cy, angle, xs, ys, class_id, contained, occluded) -> str:
    return " ".join(str(v) for v in (image_id, cx, cy, angle, *xs, *ys, class_id, contained, occluded))


def rolabelimg_xml(objects: list[str], size=(320, 240)) -> str:
    return (f"<annotation verified=\"no\">\n  <filename>x</filename>\n  <size>\n    <width>{size[0]}</width>\n"
            f"    <height>{size[1]}</height>\n    <depth>3</depth>\n  </size>\n" + "".join(objects) + "</annotation>\n")


def ro_object(cx, cy, w, h, angle, name="car") -> str:
    return (f"  <object>\n    <type>robndbox</type>\n    <name>{name}</name>\n    <difficult>0</difficult>\n"
            f"    <robndbox>\n      <cx>{cx}</cx>\n      <cy>{cy}</cy>\n      <w>{w}</w>\n      <h>{h}</h>\n"
            f"      <angle>{angle}</angle>\n    </robndbox>\n  </object>\n")


def voc_xml(objects: list[tuple], size=(1137, 640)) -> str:
    body = "".join(
        f"  <object>\n    <name>{name}</name>\n    <difficult>{difficult}</difficult>\n    <bndbox>\n"
        f"      <xmin>{x0}</xmin>\n      <ymin>{y0}</ymin>\n      <xmax>{x1}</xmax>\n      <ymax>{y1}</ymax>\n"
        f"    </bndbox>\n  </object>\n" for name, x0, y0, x1, y1, difficult in objects)
    return (f"<annotation>\n  <size>\n    <width>{size[0]}</width>\n    <height>{size[1]}</height>\n"
            f"    <depth>3</depth>\n  </size>\n{body}</annotation>\n")
