"""Find the dataset root in an extracted tree and verify every file into a manifest."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from facerec.errors import PipelineInputError

# width/height/bytes are pandas nullable Int64 with <NA> where unknown (unreadable, not an
# image, junk); string columns use "" where unknown. Read back with dtype="Int64" for them.
MANIFEST_COLUMNS = [
    "path", "identity", "bytes", "sha256", "width", "height", "mode", "format", "status"
]
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
_INT_COLUMNS = ("bytes", "width", "height")
_MAX_WRAPPER_DEPTH = 32  # guards against symlink loops in user-supplied folders
_EXPECTED_LAYOUT = (
    "expected <root>/<identity>/<image files>, e.g. "
    "105_classes_pins_dataset/pins_<Name>/<file>.jpg or orl_faces/s1/1.png, "
    "optionally inside wrapper folders"
)


def _is_junk_name(name: str) -> bool:
    """True for OS metadata files and folders (macOS, Windows) that are never data."""
    return name in JUNK_NAMES or name.startswith("._")


def _has_subfolders(folder: Path) -> bool:
    """True if folder contains at least one non-junk folder."""
    return any(child.is_dir() and not _is_junk_name(child.name) for child in folder.iterdir())


def find_dataset_root(tree: Path) -> Path:
    """Descend through single-folder wrappers to the folder whose children are identities."""
    current = Path(tree)
    if not current.is_dir():
        raise PipelineInputError(f"Dataset folder not found: {current}; {_EXPECTED_LAYOUT}.")
    for _ in range(_MAX_WRAPPER_DEPTH):
        children = [child for child in current.iterdir() if not _is_junk_name(child.name)]
        folders = [child for child in children if child.is_dir()]
        # A lone folder is a wrapper only if it has folders itself; otherwise it is the one
        # identity of a single-class dataset and `current` is the root.
        if len(children) == 1 and folders and _has_subfolders(folders[0]):
            current = folders[0]
            continue
        if folders:
            return current
        break
    raise PipelineInputError(f"No identity folders found under {tree}; {_EXPECTED_LAYOUT}.")


def identity_from_folder(folder_name: str) -> str:
    """Identity label of a folder: the name without Kaggle's `pins_` prefix, otherwise verbatim."""
    return folder_name.removeprefix("pins_")


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Fail on truncated data and leave the size limit to us, restoring Pillow's globals after."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = None  # we compare against our own limit and keep the header size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = saved


def _decode(handle: BinaryIO, min_side_px: int, max_pixels: int | None) -> tuple:
    """Fully decode an open file: (width, height, mode, format, status)."""
    with _strict_pillow():
        try:
            image = Image.open(handle)
        except UnidentifiedImageError:
            return pd.NA, pd.NA, "", "", "not_an_image"
        except Image.DecompressionBombError:
            return pd.NA, pd.NA, "", "", "too_large"
        except Exception:  # Pillow plugins raise many types on corrupt headers
            return pd.NA, pd.NA, "", "", "truncated"
        with image:
            width, height = image.size
            header = width, height, image.mode, image.format or ""
            # Decided from the header alone, so a bomb never gets its pixels allocated.
            if max_pixels is not None and width * height > max_pixels:
                return *header, "too_large"
            try:
                image.load()
            except Exception:  # any decoder failure means the pixels cannot be trusted
                return *header, "truncated"
    return *header, "too_small" if min(width, height) < min_side_px else "ok"


def _inspect_file(task: tuple[str, bool], min_side_px: int, max_pixels: int | None) -> tuple:
    """Hash and decode one file: (bytes, sha256, width, height, mode, format, status)."""
    path, is_junk = task
    try:
        with open(path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
            size_bytes = handle.tell()
            if is_junk or size_bytes == 0:
                return size_bytes, sha256, pd.NA, pd.NA, "", "", "junk" if is_junk else "empty"
            handle.seek(0)  # decode from the same handle: one open per file, memory bounded
            return size_bytes, sha256, *_decode(handle, min_side_px, max_pixels)
    except OSError:  # _decode handles its own errors, so this is the read itself failing
        return pd.NA, "", pd.NA, pd.NA, "", "", "unreadable"


def _pixel_limit(max_image_pixels: int | None) -> int | None:
    """The stricter of Pillow's decompression-bomb limit and the caller's."""
    limits = [limit for limit in (Image.MAX_IMAGE_PIXELS, max_image_pixels) if limit]
    return min(limits) if limits else None


def _list_files(root: Path) -> list[tuple[str, str, bool]]:
    """(relative POSIX path, absolute path, is_junk) for every file under root, sorted by path."""
    files = []
    for dir_path, _, file_names in os.walk(root):
        relative_dir = Path(dir_path).relative_to(root)
        in_junk_tree = any(_is_junk_name(part) for part in relative_dir.parts)
        for name in file_names:
            relative = (relative_dir / name).as_posix()
            is_junk = in_junk_tree or _is_junk_name(name)
            files.append((relative, os.path.join(dir_path, name), is_junk))
    return sorted(files)


def build_manifest(
    root: Path, *, min_side_px: int, max_image_pixels: int | None = None, workers: int | None = None
) -> pd.DataFrame:
    """One row per file under root, sorted by path: hash, decoded size, mode, format, status."""
    files = _list_files(Path(root))
    inspect = functools.partial(
        _inspect_file, min_side_px=min_side_px, max_pixels=_pixel_limit(max_image_pixels)
    )
    tasks = [(absolute, is_junk) for _, absolute, is_junk in files]
    workers = workers or os.cpu_count() or 1
    progress = functools.partial(
        tqdm, total=len(tasks), desc="verify images", unit="file", file=sys.stderr
    )
    if workers == 1 or len(tasks) < 2:
        results = list(progress(map(inspect, tasks)))
    else:
        # Large chunks amortise inter-process pickling; ~8 chunks per worker keeps them balanced.
        chunksize = max(1, min(512, len(tasks) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(progress(pool.map(inspect, tasks, chunksize=chunksize)))
    rows = []
    for (relative, _, _), result in zip(files, results, strict=True):
        parts = relative.split("/")
        identity = identity_from_folder(parts[0]) if len(parts) > 1 else ""
        status = result[-1]
        if status == "ok" and not identity:
            status = "no_identity"
        rows.append((relative, identity, *result[:-1], status))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return manifest.astype({column: "Int64" for column in _INT_COLUMNS})


def summarize_manifest(manifest: pd.DataFrame) -> dict:
    """Counts for logs and metrics: files seen, ok, rejections by reason, usable identities."""
    is_ok = manifest["status"] == "ok"
    rejected = manifest.loc[~is_ok, "status"].value_counts().sort_index()
    return {
        "files_seen": int(len(manifest)),
        "ok": int(is_ok.sum()),
        "rejected": {str(reason): int(count) for reason, count in rejected.items()},
        "identities": int(manifest.loc[is_ok, "identity"].nunique()),
    }


def open_rgb(path: Path) -> Image.Image:
    """Open an image upright (EXIF orientation) as RGB; transparency is composited onto white."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16"):
            # Pillow clips 16-bit values to 255 when converting; scale to 8 bits instead.
            image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            # White, not black: transparent areas are background, and "drop alpha" would expose
            # whatever colour the encoder left under them.
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        return image.convert("RGB")
