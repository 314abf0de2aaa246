"""Write files and folders so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process umask, read without changing it (other threads may be creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (not Linux): the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _seal(path: Path) -> None:
    """Give `path` (and all below it) the mode a plain write would have, and flush it to disk.

    mkstemp/mkdtemp create 0600/0700 for privacy; outputs must be readable by whoever a normal
    `open()` or `mkdir()` under this umask would let read them.
    """
    umask = current_umask()
    if path.is_dir():
        for folder, subfolders, files in os.walk(path):
            for name in files:
                file_path = Path(folder) / name
                if not file_path.is_symlink():
                    _fsync_path(file_path)
            for name in subfolders:
                _fsync_path(Path(folder) / name)
        _fsync_path(path)
        path.chmod(0o777 & ~umask)
    else:
        _fsync_path(path)
        path.chmod(0o666 & ~umask)


def remove_stale_staging(parent: Path, pattern: str) -> list[Path]:
    """Delete what a killed run left in `parent` matching `pattern`; return what was removed.

    Only for staging names no other live process uses: DVC runs one stage per project at a time.
    """
    removed = []
    for stale in sorted(Path(parent).glob(pattern)):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    if removed:
        log.warning("Removed %d staging item(s) left in %s by an interrupted run: %s", len(removed), parent,
                    ", ".join(path.name for path in removed))
    return removed


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `target` only if the block succeeds.

    `suffix` is appended to the temporary name for writers that insist on an ending (Keras'
    save_weights wants `.weights.h5`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        _seal(temp_path)
        os.replace(temp_path, target)
        _fsync_path(target.parent)  # the rename itself survives a power cut only once its folder is flushed
    finally:
        temp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling folder that replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted_replace(target)
    # A run killed mid-write leaves a whole staged copy (a model, a dataset) behind.
    remove_stale_staging(target.parent, f".{glob.escape(target.name)}.*.tmp*")
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield temp_dir
        _seal(temp_dir)
        replace_dir(temp_dir, target)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def restore_interrupted_replace(target: Path) -> None:
    """Put back the old folder a kill left aside between replace_dir's two renames."""
    set_aside = sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp.old"),
                       key=lambda path: path.stat().st_mtime)
    if set_aside and not target.exists():
        os.replace(set_aside[-1], target)
        log.warning("Restored %s from %s, set aside by an interrupted run", target, set_aside[-1].name)


def replace_dir(source_dir: Path, target: Path) -> None:
    """Move the complete folder `source_dir` onto `target` (same filesystem), replacing any old one.

    The old folder is renamed aside first; a kill between the two renames leaves it there, and the
    next call puts it back (restore_interrupted_replace) instead of deleting the only complete copy.
    """
    source_dir, target = Path(source_dir), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted_replace(target)
    remove_stale_staging(target.parent, f".{glob.escape(target.name)}.*.tmp.old")  # a kill between the renames
    if target.exists():
        old_dir = target.with_name(f".{target.name}.{os.getpid()}.tmp.old")
        os.replace(target, old_dir)
        os.replace(source_dir, target)
        shutil.rmtree(old_dir, ignore_errors=True)
    else:
        os.replace(source_dir, target)
    _fsync_path(target.parent)


def write_json(path: Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(path: Path, frame) -> None:
    """Write a pandas DataFrame as UTF-8 CSV without the index, atomically."""
    with atomic_path(path) as temp_path:
        frame.to_csv(temp_path, index=False, encoding="utf-8")
