"""Verify every file under the dataset root into a manifest: hash, decoded size, status."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from facerec.layout import identity_from_folder, layout_status, printable_name
from facerec.manifests import MANIFEST_DTYPES
from facerec.workers import process_pool, usable_cores

log = logging.getLogger(__name__)

# What tf.io.decode_image (facerec/data.py) decodes, by Pillow's format name; MPO is a JPEG with
# extra frames. BMP is decoded only uncompressed at 8, 24 or 32 bits per pixel.
TF_DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP"})
_TF_BMP_BITS = (8, 24, 32)
# What a caller derives from each ok image's decoded pixels: extra manifest columns as text.
Describe = Callable[[Image.Image], dict[str, str]]


def _bmp_bits(head: bytes) -> int:
    """Bits per pixel from a BMP file header (OS/2 12-byte or Windows info header)."""
    header_size = int.from_bytes(head[14:18], "little")
    return int.from_bytes(head[24:26] if header_size == 12 else head[28:30], "little")


def _tf_can_decode(image: Image.Image, head: bytes) -> bool:
    """True if training's decoder reads this image (checked against TensorFlow in the tests)."""
    if image.format == "BMP":
        return _bmp_bits(head) in _TF_BMP_BITS and image.info.get("compression", 0) == 0
    return image.format in TF_DECODABLE_FORMATS


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


def _decode(handle: BinaryIO, min_side_px: int, max_pixels: int | None,
            describe: Describe | None = None, draft_mode: str | None = None) -> tuple[tuple, dict[str, str]]:
    """Fully decode an open file: ((width, height, mode, format, status), describe(image) if it is ok).

    `draft_mode` lets a JPEG decode straight to that mode at full size (Pillow's draft): the
    header's mode is recorded first, and libjpeg still reads every scan, so damage fails alike.
    """
    head = handle.read(32)
    handle.seek(0)
    with _strict_pillow():
        try:
            image = Image.open(handle)
        except UnidentifiedImageError:
            return (pd.NA, pd.NA, "", "", "not_an_image"), {}
        except Image.DecompressionBombError:
            return (pd.NA, pd.NA, "", "", "too_large"), {}
        except Exception:  # Pillow plugins raise many types on corrupt headers
            return (pd.NA, pd.NA, "", "", "truncated"), {}
        with image:
            width, height = image.size
            header = width, height, image.mode, image.format or ""
            # Decided from the header alone, so a bomb never gets its pixels allocated.
            if max_pixels is not None and width * height > max_pixels:
                return (*header, "too_large"), {}
            if not _tf_can_decode(image, head):
                return (*header, "unsupported_format"), {}  # training would stop on it mid-epoch
            if draft_mode:
                image.draft(draft_mode, image.size)
            try:
                image.load()
            except Exception:  # any decoder failure means the pixels cannot be trusted
                return (*header, "truncated"), {}
            status = "too_small" if min(width, height) < min_side_px else "ok"
            # While the pixels are decoded: whatever else the caller derives from them (fingerprints).
            return (*header, status), (describe(image) if describe and status == "ok" else {})


def _inspect(task: tuple[str, str | None], read: Callable[[str], bytes], min_side_px: int,
             max_pixels: int | None, describe: Describe | None, draft_mode: str | None,
             keep_bytes: bool) -> tuple:
    """Hash and decode one file: ((bytes, sha256, width, height, mode, format, status), extras, data)."""
    location, place_status = task
    if place_status in ("symlink", "non_utf8_name"):
        # Never opened: a link's target (e.g. /etc/passwd) must leave no size or hash behind.
        return (pd.NA, "", pd.NA, pd.NA, "", "", place_status), {}, None
    try:
        data = read(location)
    except OSError as error:
        status = "symlink" if error.errno == errno.ELOOP else "unreadable"
        return (pd.NA, "", pd.NA, pd.NA, "", "", status), {}, None
    sha256 = hashlib.sha256(data).hexdigest()
    kept = data if keep_bytes else None
    if place_status in ("junk", "hidden") or not data:
        return (len(data), sha256, pd.NA, pd.NA, "", "", place_status or "empty"), {}, kept
    decoded, extras = _decode(io.BytesIO(data), min_side_px, max_pixels, describe, draft_mode)
    if decoded[-1] == "ok" and place_status:
        decoded, extras = (*decoded[:-1], place_status), {}  # a usable image in the wrong place
    return (len(data), sha256, *decoded), extras, kept


def read_no_follow(path: str) -> bytes:
    """A file's bytes, failing with ELOOP if the last path part is a symlink."""
    with open(path, "rb", opener=_open_no_follow) as handle:
        return handle.read()


def _open_no_follow(path: str, flags: int) -> int:
    """Open for reading, failing with ELOOP if the last path part is a symlink."""
    return os.open(path, flags | os.O_NOFOLLOW)


def _pixel_limit(max_image_pixels: int | None) -> int | None:
    """The stricter of Pillow's decompression-bomb limit and the caller's."""
    limits = [limit for limit in (Image.MAX_IMAGE_PIXELS, max_image_pixels) if limit]
    return min(limits) if limits else None


def _place_status(relative: str, absolute: str) -> str | None:
    """Status decided before reading the file: symlink, odd name, or its place in the layout."""
    if os.path.islink(absolute):
        return "symlink"
    if printable_name(relative) != relative:
        return "non_utf8_name"
    return layout_status(tuple(relative.split("/")))


@dataclass(frozen=True)
class DatasetFiles:
    """Every file under a dataset root, sorted by path, and how to read one (picklable, for workers)."""

    entries: list[tuple[str, str, str | None]]  # (relative POSIX path, location for `read`, place status)
    read: Callable[[str], bytes]


def folder_files(root: Path) -> DatasetFiles:
    """Every file and link under a folder, read from disk without following links."""
    files = []
    for dir_path, folder_names, file_names in os.walk(root):  # never descends into linked folders
        relative_dir = Path(dir_path).relative_to(root)
        linked_folders = [name for name in folder_names if os.path.islink(os.path.join(dir_path, name))]
        for name in file_names + linked_folders:
            relative = (relative_dir / name).as_posix()
            absolute = os.path.join(dir_path, name)
            files.append((relative, absolute, _place_status(relative, absolute)))
    return DatasetFiles(sorted(files, key=lambda file: os.fsencode(file[0])), read_no_follow)


# Files handed to the workers at once: bounds the encoded bytes in flight when they come back for packing.
WINDOW_FILES = 4096


def inspect_files(
    files: DatasetFiles, *, min_side_px: int, max_image_pixels: int | None = None, workers: int | None = None,
    describe: Describe | None = None, draft_mode: str | None = None, extra_columns: tuple[str, ...] = (),
    on_bytes: Callable[[str, bytes], None] | None = None,
) -> pd.DataFrame:
    """One row per file, in the files' order: hash, decoded size, mode, format, status, extra columns.

    Each file is read and decoded once, on all cores; `describe(image)` adds the `extra_columns` of
    ok images from the decoded pixels (JPEGs decoded straight to `draft_mode` if given), and
    `on_bytes(path, data)` receives every file read, in order.
    """
    inspect = functools.partial(_inspect, read=files.read, min_side_px=min_side_px,
                                max_pixels=_pixel_limit(max_image_pixels), describe=describe, draft_mode=draft_mode,
                                keep_bytes=on_bytes is not None)
    tasks = [(location, place_status) for _, location, place_status in files.entries]
    workers = workers or usable_cores()
    progress = tqdm(total=len(tasks), desc="verify images", unit="file", file=sys.stderr)
    rows = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(progress)
        pool = stack.enter_context(process_pool(workers)) if workers > 1 and len(tasks) > 1 else None
        for start in range(0, len(tasks), WINDOW_FILES):
            window = tasks[start:start + WINDOW_FILES]
            # Large chunks amortise inter-process pickling; ~8 chunks per worker keeps them balanced.
            chunksize = max(1, min(512, len(window) // (workers * 8)))
            results = pool.map(inspect, window, chunksize=chunksize) if pool else map(inspect, window)
            for (relative, _, _), (result, extras, data) in zip(files.entries[start:], results):
                if data is not None:
                    on_bytes(relative, data)
                parts = printable_name(relative).split("/")
                identity = identity_from_folder(parts[0]) if len(parts) > 1 else ""
                rows.append((printable_name(relative), identity, *result,
                             *(extras.get(column, "") for column in extra_columns)))
                progress.update()
    dtypes = {**MANIFEST_DTYPES, **dict.fromkeys(extra_columns, "str")}
    manifest = pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
    _warn_fixable(manifest)
    return manifest


def build_manifest(
    root: Path, *, min_side_px: int, max_image_pixels: int | None = None, workers: int | None = None
) -> pd.DataFrame:
    """One row per file under the folder root, sorted by path: hash, decoded size, mode, format, status."""
    return inspect_files(folder_files(Path(root)), min_side_px=min_side_px, max_image_pixels=max_image_pixels,
                         workers=workers)


# Statuses of usable pictures left out only by where they lie or how they are encoded.
_FIXABLE = {
    "nested": "move them up into their identity folder",
    "no_identity": "move them into a folder named after the person",
    "unsupported_format": "convert them to JPEG or PNG",
}


def _warn_fixable(manifest: pd.DataFrame) -> None:
    """One warning per fixable status, with a count, an example and the fix."""
    for status, fix in _FIXABLE.items():
        paths = manifest.loc[manifest["status"] == status, "path"]
        if len(paths):
            log.warning("%d images left out as %s (e.g. %r): %s to use them (docs/data.md)",
                        len(paths), status, paths.iloc[0], fix)


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


def open_rgb(path: Path | BinaryIO) -> Image.Image:
    """Open an image (a path or a file object) upright (EXIF orientation) as RGB; transparency onto white."""
    with Image.open(path) as image:
        return upright_rgb(image)


def upright_rgb(image: Image.Image) -> Image.Image:
    """A decoded image upright (EXIF orientation) as RGB; transparency is composited onto white."""
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
