"""Label files read with line numbers: lenient reading through ``obbdet.formats`` readers (bad records skipped
and counted, file and line named) and XML documents that know each element's line (VOC, roLabelImg and
DroneVehicle labels)."""
from __future__ import annotations

import tempfile
import xml.parsers.expat as expat
from pathlib import Path
from typing import Callable, Sequence
from xml.etree import ElementTree

import numpy as np

from obbdet.formats import LabelFormatError
from obbdet.structures import ImageLabels

from .common import ImportSummary


# ---------------------------------------------------------------------------------------------------
# Lenient reading through obbdet.formats
# ---------------------------------------------------------------------------------------------------

def read_with_formats(reader: Callable[[Path], ImageLabels], path, summary: ImportSummary, strict: bool, *,
                      json_objects: bool = False) -> ImageLabels | None:
    """Read one label file with an ``obbdet.formats`` reader; in lenient mode skip only the bad records.

    The readers stop at the first malformed record. Lenient mode counts that record, blanks it (line
    formats: line numbers stay valid, blank lines are ignored) or removes it (obb_json objects), and reads
    the edited copy again, until the file reads cleanly. Reports keep the original path and line/object.
    Returns None when the whole file is unreadable (not text, malformed JSON), which is counted too.
    """
    try:
        return reader(path)
    except LabelFormatError as err:
        if strict:
            raise
        first = err
    with tempfile.TemporaryDirectory(prefix="obbdet-lenient-") as tmp:
        copy = Path(tmp) / Path(path).name
        editor = _JsonEditor(path) if json_objects else _LineEditor(path)
        err: LabelFormatError | None = first
        while err is not None:
            located = editor.drop(err)
            if located is None:
                summary.skip("unreadable files", str(_relocate(err, path, err.line, err.obj_index)))
                return None
            summary.skip("malformed", str(_relocate(err, path, *located)))
            editor.write(copy)
            try:
                return reader(copy)
            except LabelFormatError as again:
                err = again
    return None


def _relocate(err: LabelFormatError, path, line, obj_index) -> LabelFormatError:
    return LabelFormatError(path, err.reason, line=line, obj_index=obj_index, text=err.text)


class _LineEditor:
    """Blanks malformed lines of a text label file (objects are the non-blank, non-header lines)."""

    def __init__(self, path):
        try:
            self.lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            self.lines = None

    def drop(self, err: LabelFormatError) -> tuple[int, int | None] | None:
        if self.lines is None:
            return None
        line = err.line
        if line is None and err.obj_index is not None:
            object_lines = [i + 1 for i, text in enumerate(self.lines) if len(text.split()) > 1]
            line = object_lines[err.obj_index] if err.obj_index < len(object_lines) else None
        if line is None or not 1 <= line <= len(self.lines) or not self.lines[line - 1].strip():
            return None
        self.lines[line - 1] = ""
        return line, None

    def write(self, copy: Path) -> None:
        copy.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


class _JsonEditor:
    """Removes malformed objects of an obb_json file, remembering their original indices."""

    def __init__(self, path):
        import json

        self._json = json
        try:
            self.doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.doc = None
        objects = self.doc.get("objects") if isinstance(self.doc, dict) else None
        self.original = list(range(len(objects))) if isinstance(objects, list) else None

    def drop(self, err: LabelFormatError) -> tuple[None, int] | None:
        if self.original is None or err.obj_index is None or err.obj_index >= len(self.original):
            return None
        original_index = self.original.pop(err.obj_index)
        del self.doc["objects"][err.obj_index]
        return None, original_index

    def write(self, copy: Path) -> None:
        copy.write_text(self._json.dumps(self.doc), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# XML with line numbers (VOC, roLabelImg and DroneVehicle labels)
# ---------------------------------------------------------------------------------------------------

class XmlDoc:
    """An ElementTree of one XML file that remembers each element's line, for one-line error reports."""

    def __init__(self, path):
        self.path = str(path)
        builder = ElementTree.TreeBuilder()
        parser = expat.ParserCreate()
        self._lines: dict[int, int] = {}

        def start(tag, attrs):
            element = builder.start(tag, attrs)
            self._lines[id(element)] = parser.CurrentLineNumber

        parser.StartElementHandler = start
        parser.EndElementHandler = builder.end
        parser.CharacterDataHandler = builder.data
        parser.buffer_text = True
        try:
            with open(path, "rb") as handle:
                parser.ParseFile(handle)
        except expat.ExpatError as exc:
            raise LabelFormatError(path, f"malformed XML ({expat.errors.messages[exc.code]})",
                                   line=exc.lineno) from None
        self.root = builder.close()

    def line(self, element) -> int | None:
        return self._lines.get(id(element))

    def error(self, element, reason: str, obj_index: int | None = None) -> LabelFormatError:
        """A LabelFormatError at ``element`` (its line, object index and a short XML snippet)."""
        snippet = " ".join(ElementTree.tostring(element, encoding="unicode").split())
        return LabelFormatError(self.path, f"<{element.tag}>: {reason}", line=self.line(element),
                                obj_index=obj_index, text=snippet)

    def text(self, parent, tag: str, obj_index: int | None = None) -> str:
        """The stripped text of ``parent``'s child ``tag``; an error when it is missing or empty."""
        child = parent.find(tag)
        if child is None or child.text is None or not child.text.strip():
            raise self.error(parent, f"missing <{tag}>", obj_index)
        return child.text.strip()

    def number(self, parent, tag: str, obj_index: int | None = None) -> float:
        """``parent``'s child ``tag`` as a finite float; an error naming the element otherwise."""
        text = self.text(parent, tag, obj_index)
        try:
            value = float(text)
        except ValueError:
            raise self.error(parent.find(tag), "not a number", obj_index) from None
        if not np.isfinite(value):
            raise self.error(parent.find(tag), "not finite", obj_index)
        return value

    def numbers(self, parent, tags: Sequence[str], obj_index: int | None = None) -> list[float]:
        return [self.number(parent, tag, obj_index) for tag in tags]

    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` from ``<size>``, or None when absent or zero."""
        size = self.root.find("size")
        if size is None:
            return None
        width, height = self.numbers(size, ("width", "height"))
        return (int(width), int(height)) if width > 0 and height > 0 else None

    def flag(self, parent, tag: str) -> bool:
        """A VOC ``0/1`` flag (``<difficult>``, ``<truncated>``); absent means False."""
        child = parent.find(tag)
        return child is not None and child.text is not None and child.text.strip() not in ("", "0")

