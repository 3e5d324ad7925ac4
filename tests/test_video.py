"""Video input: decoding with true frame numbers, frame selection, corrupt frames, writing, and infer.py on videos.

Videos are made in the tests with ``VideoWriter``: moving bright rectangles that ``BrightRectDetector``
(``tests/infer_support.py``) detects, and a dark marker patch whose grey level encodes the frame number, so a
decoded frame can be checked to be the frame its number says.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

from obbdet import inference
from obbdet.cli import infer as infer_cli
from obbdet.formats import read_obb_json
from obbdet.frames import frame_folder
from obbdet.iou import box_iou_rotated
from obbdet.tracking import read_tracks_csv
from obbdet.video import (FrameFailure, VideoReadError, VideoWriter, frame_selected,
                          iter_video_frames, video_encoder, video_info)
from tests.infer_support import BrightRectDetector, render_rects, write_good

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MARKERS = ((slice(0, 16), slice(0, 16)), (slice(0, 16), slice(24, 40)))  # frame = 10 * tens + units
STEP = 8  # grey levels per unit: far apart under lossy compression, and all darker than a detected vehicle


def scene_boxes(frame: int) -> np.ndarray:
    """Two vehicles driving right (5 px/frame) and down (4 px/frame): ``[2, 5]`` le90 xywha at ``frame``; large
    enough for BrightRectDetector scores (0.6+) that start tracks."""
    return np.array([[60.0 + 5 * frame, 60.0, 44.0, 18.0, 0.3], [150.0, 50.0 + 4 * frame, 42.0, 18.0, -1.2]])


def render_frame(frame: int, size=(257, 191)) -> np.ndarray:
    """The scene at ``frame`` (frames 0..99), its number written into two dark marker patches."""
    image = render_rects(*size, scene_boxes(frame))
    image[MARKERS[0]] = STEP * (frame // 10)
    image[MARKERS[1]] = STEP * (frame % 10)
    return image


def marker(image: np.ndarray) -> int:
    tens, units = (int(round(float(image[m].mean()) / STEP)) for m in MARKERS)
    return 10 * tens + units


def make_video(path: Path, frames: int = 12, *, codec: str | None = None, size=(257, 191), fps: float = 25.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps, size, codec=codec) as writer:
        for k in range(frames):
            writer.write(render_frame(k, size))
    return path


def numbers(items) -> list:
    return [item.frame_number if isinstance(item, FrameFailure) else item[0] for item in items]


# ---------------------------------------------------------------------------------------------------
# obbdet.video
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,codec", [("clip.mp4", None), ("clip.mkv", "mpeg4"), ("clip.avi", "mjpeg")])
def test_round_trip_keeps_frame_numbers_and_content(tmp_path, name, codec):
    path = make_video(tmp_path / name, 12, codec=codec)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # the temporary file was renamed, nothing left
    info = video_info(path)
    assert info.fps == 25.0 and info.frames == 12
    assert (info.width, info.height) == (258, 192)  # odd sides padded to even ones (yuv420p)
    assert info.codec == {"libx264": "h264", "mpeg4": "mpeg4", "mjpeg": "mjpeg"}[codec or video_encoder()]
    decoded = list(iter_video_frames(path))
    assert numbers(decoded) == list(range(12))
    for n, rgb in decoded:
        assert rgb.shape == (192, 258, 3) and rgb.dtype == np.uint8 and marker(rgb) == n
        assert np.abs(rgb[:191, :257].astype(int) - render_frame(n)).mean() < 4


def test_h264_encoder_in_this_build():
    assert video_encoder() == "libx264"  # av 18.1.0's wheel ships x264; MPEG-4 Part 2 is the fallback


def test_writer_failure_leaves_no_file(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="expected a"):
        with VideoWriter(target, 10, (64, 48)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((40, 64, 3), np.uint8))  # wrong size
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="must end in"):
        VideoWriter(tmp_path / "out.gif", 10, (64, 48))


@pytest.mark.parametrize("name,codec", [("long.mp4", "libx264"), ("long.avi", "mjpeg")])
@pytest.mark.parametrize("every,start,end", [(1, 0, None), (3, 0, None), (2, 5, 17), (1, 37, None), (4, 33, 39),
                                             (5, 0, 3)])
def test_every_start_end_select_the_right_frames(tmp_path_factory, name, codec, every, start, end):
    folder = tmp_path_factory.getbasetemp() / f"selection-{name}"
    path = folder / name
    if not path.exists():  # one video per container, shared by the selections; a key frame every 12 frames
        folder.mkdir(exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=30)
            stream.width, stream.height, stream.gop_size = 96, 64, 12
            if codec == "libx264":
                stream.options = {"crf": "18"}
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            for k in range(40):
                frame = av.VideoFrame.from_ndarray(render_frame(k, (96, 64)), format="rgb24")
                frame.pts = k
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    decoded = list(iter_video_frames(path, every, start, end))
    expected = [n for n in range(40) if frame_selected(n, every, start, end)]
    assert numbers(decoded) == expected
    assert [marker(rgb) for _, rgb in decoded] == expected  # a seek never mislabels a frame


def test_bad_selection_and_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    for call in (lambda: video_info(text), lambda: list(iter_video_frames(text))):
        with pytest.raises(VideoReadError, match="notes.mp4: not a readable video"):
            call()
    with pytest.raises(VideoReadError, match="file not found"):
        video_info(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="every >= 1"):
        list(iter_video_frames(text, every=0))


def damage_packet(path: Path, index: int) -> Path:
    """A copy of ``path`` with the payload of its ``index``-th video packet overwritten by noise."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    pos, size = packets[index]
    data = bytearray(path.read_bytes())
    data[pos:pos + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    damaged = path.with_name(f"damaged{path.suffix}")
    damaged.write_bytes(bytes(data))
    return damaged


def test_corrupt_frame_is_reported_and_the_rest_decodes(tmp_path):
    damaged = damage_packet(make_video(tmp_path / "src" / "clip.avi", 10, codec="mjpeg"), 5)
    decoded = list(iter_video_frames(damaged))
    failures = [item for item in decoded if isinstance(item, FrameFailure)]
    assert len(failures) == 1 and failures[0].frame_number == 5 and "cannot decode" in failures[0].reason
    assert "damaged.avi: frame 5: cannot decode" in str(failures[0])
    frames = [item for item in decoded if not isinstance(item, FrameFailure)]
    assert [n for n, _ in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]  # not renumbered after the gap
    assert [marker(rgb) for _, rgb in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert numbers(iter_video_frames(damaged, every=2, start=1)) == [1, 3, 5, 7, 9]


def test_corrupt_frame_of_h264_with_reordered_frames_keeps_the_order(tmp_path):
    damaged = damage_packet(make_video(tmp_path / "src" / "clip.mp4", 20), 8)  # B-frames: decode order != display
    decoded = list(iter_video_frames(damaged))
    failed = [item for item in decoded if isinstance(item, FrameFailure)]
    assert failed and "cannot decode" in failed[0].reason
    assert numbers(decoded) == list(range(20))  # each frame once, in display order, decoded or failed


def test_truncated_container_reports_the_missing_frames(tmp_path):
    path = make_video(tmp_path / "clip.avi", 10, codec="mjpeg")
    with av.open(str(path)) as container:
        cut = [p.pos for p in container.demux(container.streams.video[0]) if p.size][7] - 8
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(path.read_bytes()[:cut])  # the header still says 10 frames
    decoded = list(iter_video_frames(truncated))
    assert [n for n, *_ in (d for d in decoded if not isinstance(d, FrameFailure))] == list(range(7))
    assert [f.frame_number for f in decoded if isinstance(f, FrameFailure)] == [7, 8, 9]


def test_frame_folder_order_and_numbers(tmp_path):
    names = ["f10.png", "f2.png", "f1.png"]
    assert [(n, p.name) for n, p in frame_folder(None, [tmp_path / x for x in names])] == \
        [(0, "f1.png"), (1, "f2.png"), (2, "f10.png")]
    numbered = ["000010.jpg", "000002.jpg", "7.jpg"]
    assert [(n, p.name) for n, p in frame_folder(None, [tmp_path / x for x in numbered])] == \
        [(2, "000002.jpg"), (7, "7.jpg"), (10, "000010.jpg")]
    for name in ("b.png", "3.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for _, p in frame_folder(tmp_path)] == ["3.jpg", "a.png", "b.png"]
    with pytest.raises(ValueError, match="two images of frame 2"):
        frame_folder(None, [tmp_path / "2.jpg", tmp_path / "002.jpg"])


# ---------------------------------------------------------------------------------------------------
# infer.py on videos (detector loading replaced by BrightRectDetector)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path, monkeypatch) -> Path:
    """A checkpoint file that infer.py loads as ``BrightRectDetector`` (training vehicle width 16 px)."""
    info = inference.CheckpointInfo(["car", "truck"], 16.0, None, None, 0.4)
    original = inference.prepare_run
    monkeypatch.setattr(inference, "prepare_run", lambda *a, **k: original(
        *a, detector_loader=lambda checkpoint, device, use_ema=True: (BrightRectDetector(), info), **k))
    path = tmp_path / "model.pt"
    path.write_bytes(b"fake")
    return path


def infer(*args) -> int:
    return infer_cli.main([str(a) for a in args] + ["--device", "cpu", "--tile", "256", "--overlap", "64",
                                                    "--quiet"])


def test_cli_video_outputs_per_frame_and_overlay(tmp_path, checkpoint, capsys):
    video = make_video(tmp_path / "in" / "road.mp4", 12)
    assert infer(video, 16, checkpoint, "obb", "--every", "2", "--start", "1", "--end", "10", "--draw") == 0
    out = tmp_path / "in" / "road_det"
    assert sorted(p.name for p in (out / "road").iterdir()) == [f"{n:06d}.json" for n in (1, 3, 5, 7, 9)]
    for n in (1, 3, 5, 7, 9):
        labels = read_obb_json(out / "road" / f"{n:06d}.json", detections=True)
        assert labels.image == f"road/{n:06d}" and (labels.width, labels.height) == (258, 192)
        assert len(labels) == 2 and box_iou_rotated(scene_boxes(n), labels.boxes).max(axis=1).min() > 0.8
    overlay = out / "overlays" / "road.mp4"
    info = video_info(overlay)
    assert (info.frames, info.width, info.height, info.fps) == (5, 258, 192, 12.5)
    first = next(iter_video_frames(overlay))[1]
    assert np.abs(first.astype(int) - render_frame(1, (258, 192)).astype(int)).max() > 100  # boxes drawn
    printed = capsys.readouterr().out
    assert "video frames: 5 processed, 0 failed (1 video(s))" in printed and "frames/s" in printed
    assert "images:" not in printed and "images/s" not in printed


def test_cli_corrupt_frame_is_listed_and_the_video_goes_on(tmp_path, checkpoint, capsys):
    damaged = damage_packet(make_video(tmp_path / "src" / "clip.avi", 8, codec="mjpeg"), 3)
    rc = infer(damaged, 16, checkpoint, "obb", "--out", tmp_path / "out")
    assert rc == inference.EXIT_IMAGE_FAILURES == 1
    written = sorted(p.name for p in (tmp_path / "out" / "damaged").iterdir())
    assert written == [f"{n:06d}.json" for n in (0, 1, 2, 4, 5, 6, 7)]
    printed = capsys.readouterr().out
    assert "video frames: 7 processed, 1 failed" in printed
    assert f"{damaged}: frame 3: cannot decode" in printed


def test_cli_folder_with_two_videos_and_an_image(tmp_path, checkpoint, capsys):
    folder = tmp_path / "flight"
    make_video(folder / "a.mp4", 4)
    make_video(folder / "sub" / "b.avi", 3, codec="mjpeg")
    write_good(folder / "still.png", scene_boxes(0), size=(257, 191))
    (folder / "broken.mkv").write_text("not a video")
    assert infer(folder, 16, checkpoint, "obb") == 1  # the broken video is listed; the others are done
    out = tmp_path / "flight_det"
    assert sorted(p.name for p in (out / "a").iterdir()) == [f"{n:06d}.json" for n in range(4)]
    assert sorted(p.name for p in (out / "sub" / "b").iterdir()) == [f"{n:06d}.json" for n in range(3)]
    assert json.loads((out / "sub" / "b" / "000002.json").read_text())["image"] == "b/000002"
    assert len(read_obb_json(out / "still.json", detections=True)) == 2
    printed = capsys.readouterr().out
    assert "images: 1 processed, 0 failed" in printed
    assert "video frames: 7 processed, 0 failed (2 video(s), 1 failed)" in printed
    assert "broken.mkv: not a readable video" in printed


def test_cli_selection_needs_videos_and_bad_input_is_refused(tmp_path, checkpoint, capsys):
    write_good(tmp_path / "stills" / "a.png", scene_boxes(0), size=(257, 191))
    assert infer(tmp_path / "stills", 16, checkpoint, "obb", "--every", "2") == 2
    assert "--every/--start/--end select frames of videos" in capsys.readouterr().err
    video = make_video(tmp_path / "v.mp4", 3)
    assert infer(video, 16, checkpoint, "obb", "--start", "5", "--end", "5") == 2
    assert "end > start" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert infer(notes, 16, checkpoint, "obb") == 2
    assert "not a folder, an image or a video file" in capsys.readouterr().err
    assert math.isfinite(video_info(video).fps)


# ---------------------------------------------------------------------------------------------------
# --track
# ---------------------------------------------------------------------------------------------------

def check_tracks(frames: dict, speeds=(5.0, 4.0)) -> None:
    """Each vehicle keeps one track id over ``frames`` (``{frame: ImageLabels}``); at the end its speed (px per
    source frame) and heading (along its motion: +x for the first, +y for the second) are right."""
    ids = []
    for frame, labels in sorted(frames.items()):
        order = box_iou_rotated(scene_boxes(frame), labels.boxes).argmax(axis=1)
        ids.append(tuple(labels.extras[k]["track_id"] for k in order))
    assert len(set(ids)) == 1 and len(set(ids[0])) == 2, ids
    last, labels = max(frames.items())
    order = box_iou_rotated(scene_boxes(last), labels.boxes).argmax(axis=1)
    np.testing.assert_allclose([labels.extras[k]["speed"] for k in order], speeds, rtol=0.2)
    motion = np.array([0.0, math.pi / 2])  # the heading is the end of the long side that points along the motion
    assert np.all(np.cos(labels.heading[order] - motion) > 0.8), labels.heading[order]


def test_cli_track_video_writes_ids_headings_speeds_and_csv(tmp_path, checkpoint, capsys):
    video = make_video(tmp_path / "road.mp4", 14)
    assert infer(video, 16, checkpoint, "obb", "--track", "--draw", "--every", "2", "--out", tmp_path / "out") == 0
    out = tmp_path / "out"
    frames = {n: read_obb_json(out / "road" / f"{n:06d}.json", detections=True) for n in range(0, 14, 2)}
    assert sorted(p.name for p in (out / "road").iterdir()) == [f"{n:06d}.json" for n in range(0, 14, 2)]
    doc = json.loads((out / "road" / "000012.json").read_text())
    assert {"track_id", "speed", "heading"} <= set(doc["objects"][0])  # heading in degrees in the file
    check_tracks(frames)  # every 2nd frame: speeds stay per source frame
    tracks = read_tracks_csv(out / "road.tracks.csv")
    assert sorted(tracks) == list(range(0, 14, 2))
    for n, labels in tracks.items():
        assert sorted(e["track_id"] for e in labels.extras) == sorted(e["track_id"] for e in frames[n].extras)
    assert video_info(out / "overlays" / "road.mp4").frames == 7


def test_cli_track_frame_folder_in_natural_order(tmp_path, checkpoint):
    folder = tmp_path / "frames" / "seq"
    for k in range(12):  # f1 .. f12: a plain name sort would put f10, f11, f12 after f1
        write_good(folder / f"f{k + 1}.png", scene_boxes(k), size=(257, 191))
    assert infer(tmp_path / "frames", 16, checkpoint, "obb", "--track", "--start", "1") == 0
    out = tmp_path / "frames_det"
    frames = {k: read_obb_json(out / "seq" / f"f{k + 1}.json", detections=True) for k in range(1, 12)}
    assert not (out / "seq" / "f1.json").exists()  # position 0, before --start
    check_tracks(frames)
    assert sorted(read_tracks_csv(out / "seq.tracks.csv")) == list(range(1, 12))


def test_cli_track_refuses_aabb(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit):
        infer(make_video(tmp_path / "v.mp4", 2), 16, checkpoint, "aabb", "--track")
    assert "use obb mode" in capsys.readouterr().err
