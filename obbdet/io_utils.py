"""Atomic file output: a reader never sees a half-written file, and a killed writer leaves the old one.

A writer killed between creating its temporary file and the rename leaves ``.<name>.<random>.tmp`` behind;
:func:`remove_stale_temporaries` clears those when the next run starts in the same folder.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

# What atomic_output's mkstemp(prefix=".<name>.", suffix=".tmp") creates: a dot, the target's name, a dot,
# mkstemp's random part (letters, digits, underscores), ".tmp".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere os.umask can only read it by setting it (briefly
    racy with other threads creating files, hence the /proc route first)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path, mode: str = "w", **open_kwargs):
    """Open a temporary file beside ``path``; on success it is flushed, fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets the
    permissions an ordinary ``open`` would give (``0o666`` less the umask): mkstemp creates it 0600, which
    would keep results from the other users of a shared machine.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.chmod(tmp_name, 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, "wb") as handle:
        handle.write(data)


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to ``path`` atomically (checkpoints survive a kill mid-write)."""
    import torch

    with atomic_output(path, "wb") as handle:
        torch.save(obj, handle)


def remove_stale_temporaries(folder, *, recursive: bool = False) -> int:
    """Delete the temporary files that killed atomic writes left in ``folder`` (``.<name>.<random>.tmp``, see
    :func:`atomic_output`); returns how many were removed. Call it when a run starts, before anything of
    that run writes there (a live writer's temporary file has the same name pattern). A missing folder has
    none; files that cannot be removed are logged and skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    entries = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    for path in entries:
        if not _TEMPORARY.match(path.name) or path.is_symlink() or not path.is_file():
            continue
        try:
            path.unlink()
            removed += 1
        except OSError as exc:
            logger.warning("cannot remove the stale temporary file %s: %s", path, exc.strerror or exc)
    return removed
