"""Near-duplicate fingerprints of an image: a 256-bit phash and crop-tolerant grey thumbnails, as hex text."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from facerec.errors import PipelineInputError
from facerec.verify import upright_rgb
from facerec.workers import process_pool, usable_cores

# The near-duplicate signals of one image, each a manifest column of hex text. The download stage
# stores them while it decodes each image; the split recomputes them when absent (old manifests,
# aligned face crops).
PHASH_COLUMN = "phash256"
THUMBS_COLUMN = "thumbs16"
FINGERPRINT_COLUMNS: tuple[str, ...] = (PHASH_COLUMN, THUMBS_COLUMN)
# phash separated different faces best; 16 × 16 = 256 bits (64 bits confused different faces,
# docs/splitting.md), the range facerec.config allows split.near_duplicate_max_distance in.
PHASH_SIZE = 16
# Every signal is read from one grey square of this side: imagehash.phash's own input size
# (hash_size × its highfreq_factor 4), so one Lanczos resize of the decoded image serves both.
SQUARE_PX = PHASH_SIZE * 4
# The crop- and scale-tolerant signal: mean-centred grey 16 × 16 thumbnails of the centred crops
# keeping these shares of width and height, compared by cosine, best crop pair counting. A re-crop
# of a photo matches one of the other's crops; 16 px blurs away the shift of a burst frame.
THUMB_SIDE_PX = 16
CROP_SCALES = (1.0, 0.8, 0.7)
# JPEGs are decoded straight to grey (Pillow's draft mode: libjpeg skips the colour conversion and
# the chroma's inverse DCT but still reads every byte of every scan, so a truncated or corrupt file
# fails as in a full decode). Their grey is the JPEG's own luma; other formats are converted.
GREY_DRAFT_MODE = "L"
# Below this many images a process pool costs more to start than it saves.
SERIAL_BELOW_IMAGES = 256


def _crop_resamplers() -> np.ndarray:
    """(crops, THUMB_SIDE_PX, SQUARE_PX): Pillow's Lanczos weights from the square to each crop's thumbnail.

    Resizing is separable, so thumbnail = A @ square @ A.T. Three small matrix products replace three
    Pillow calls, whose fixed cost per call was a fifth of all fingerprinting (0.12 ms an image).
    The weights are Pillow's own: an identity image resized in float, one axis at a time.
    """
    identity = Image.fromarray(np.eye(SQUARE_PX, dtype=np.float32), mode="F")
    resamplers = []
    for scale in CROP_SCALES:
        margin = SQUARE_PX * (1 - scale) / 2
        resized = identity.resize((THUMB_SIDE_PX, SQUARE_PX), Image.Resampling.LANCZOS,
                                  box=(margin, 0, SQUARE_PX - margin, SQUARE_PX))
        resamplers.append(np.asarray(resized, dtype=np.float32).T)
    return np.stack(resamplers)


CROP_RESAMPLERS = _crop_resamplers()


def upright_grey(image: Image.Image) -> Image.Image:
    """The decoded image upright (EXIF orientation) in grey; transparency composited onto white."""
    if image.mode == "L" and "transparency" not in image.info:
        return ImageOps.exif_transpose(image)  # e.g. a JPEG decoded straight to grey
    return upright_rgb(image).convert("L")  # transparency onto white first, as every reader sees it


def grey_square(image: Image.Image) -> Image.Image:
    """The SQUARE_PX grey square every signal reads: the upright image, in grey, resized (Lanczos)."""
    return upright_grey(image).resize((SQUARE_PX, SQUARE_PX), Image.Resampling.LANCZOS)


def thumbnails(square: Image.Image) -> np.ndarray:
    """(len(CROP_SCALES), THUMB_SIDE_PX²) vectors: each centred crop's mean-centred grey thumbnail."""
    pixels = np.asarray(square, dtype=np.float32)
    thumbs = (CROP_RESAMPLERS @ pixels @ CROP_RESAMPLERS.transpose(0, 2, 1)).reshape(len(CROP_SCALES), -1)
    return thumbs - thumbs.mean(axis=1, keepdims=True)


def encode_thumbnails(vectors: np.ndarray) -> str:
    """Hex text of the thumbnails as int8, each scaled to its largest magnitude (cosine ignores scale)."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    return np.round(vectors / np.maximum(peak, 1e-6) * 127).astype(np.int8).tobytes().hex()


def decode_thumbnails(texts: list[str]) -> np.ndarray:
    """Parse THUMBS_COLUMN texts into an (n, crops, THUMB_SIDE_PX²) float32 array of unit vectors."""
    width = len(CROP_SCALES) * THUMB_SIDE_PX**2
    try:
        raw = b"".join(bytes.fromhex(text) for text in texts)
    except (TypeError, ValueError) as error:
        raise PipelineInputError(f"{THUMBS_COLUMN} values must be hex text: {error}") from error
    if len(raw) != len(texts) * width:
        raise PipelineInputError(f"{THUMBS_COLUMN} values must be {2 * width} hex digits each; "
                                 "rerun `dvc repro download` to recompute them")
    vectors = np.frombuffer(raw, dtype=np.int8).astype(np.float32).reshape(len(texts), len(CROP_SCALES), -1)
    # A flat grey image has no direction: its zero vector matches nothing.
    return vectors / np.maximum(np.linalg.norm(vectors, axis=2, keepdims=True), 1e-6)


def phash_hex(square: Image.Image) -> str:
    """imagehash's 256-bit phash of the square as hex text, as str(ImageHash) writes it, formatted fast.

    The square already has phash's input size, so imagehash's own resize copies it unchanged;
    str(ImageHash) joins the bits as text (0.15 ms an image), packbits gives the same digits.
    """
    bits = imagehash.phash(square, hash_size=PHASH_SIZE).hash
    return np.packbits(bits.ravel()).tobytes().hex()


def fingerprint(image: Image.Image) -> dict[str, str]:
    """Every near-duplicate signal of one decoded image (any mode), as hex text per column."""
    square = grey_square(image)
    return {PHASH_COLUMN: phash_hex(square), THUMBS_COLUMN: encode_thumbnails(thumbnails(square))}


def open_for_fingerprint(source: Path | BinaryIO) -> Image.Image:
    """Decode an image as the fingerprints read it: a JPEG straight to grey (see GREY_DRAFT_MODE)."""
    with Image.open(source) as image:
        image.draft(GREY_DRAFT_MODE, image.size)
        image.load()
        return image.copy()


def fingerprint_file(path: Path) -> dict[str, str]:
    """Decode one image file and return its fingerprint."""
    try:
        image = open_for_fingerprint(path)
    except (OSError, ValueError) as error:
        raise PipelineInputError(f"cannot decode {path} for duplicate search: {error}") from error
    return fingerprint(image)


def compute_fingerprints(paths: list[Path], workers: int | None = None) -> pd.DataFrame:
    """Fingerprint every image in `paths` (rows in path order), on all cores unless `workers` says."""
    workers = workers or usable_cores()
    if workers == 1 or len(paths) < SERIAL_BELOW_IMAGES:
        rows = [fingerprint_file(path) for path in paths]
    else:
        # Large chunks: each image takes about a millisecond, so IPC would dominate otherwise.
        chunk_size = max(1, len(paths) // (workers * 8))
        with process_pool(workers) as pool:
            rows = list(pool.map(fingerprint_file, paths, chunksize=chunk_size))
    return pd.DataFrame(rows, columns=list(FINGERPRINT_COLUMNS), dtype=str)


def hashes_to_words(hashes: list[str]) -> np.ndarray:
    """Parse equal-length hex hashes into an (n, bits / 64) uint64 array."""
    lengths = {len(text) for text in hashes if isinstance(text, str)}
    if len(hashes) and (len(lengths) != 1 or lengths.pop() % 16):
        raise PipelineInputError("perceptual hashes must be hex strings of one length, 64·k bits")
    try:
        raw = b"".join(bytes.fromhex(text) for text in hashes)
    except (TypeError, ValueError) as error:
        raise PipelineInputError(f"perceptual hashes must be hex strings: {error}") from error
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), -1)


