"""Write files and folders so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.replace(temp_path, target)
    finally:
        temp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling folder that replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield temp_dir
        if target.exists():
            # Move the old folder aside first so there is never a moment without a complete one.
            old_dir = temp_dir.with_name(temp_dir.name + ".old")
            os.replace(target, old_dir)
            os.replace(temp_dir, target)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.replace(temp_dir, target)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_json(path: Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(path: Path, frame) -> None:
    """Write a pandas DataFrame as UTF-8 CSV without the index, atomically."""
    with atomic_path(path) as temp_path:
        frame.to_csv(temp_path, index=False, encoding="utf-8")
