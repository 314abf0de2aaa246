"""Find exact and near-duplicate images and join them into groups that must share a split."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from facerec.errors import PipelineInputError
from facerec.pair_index import indexed_hash_pairs, indexed_thumbnail_pairs
from facerec.verify import open_rgb
from facerec.workers import process_pool

log = logging.getLogger(__name__)

# The near-duplicate signals of one image, each a manifest column of hex text. The download stage
# stores them while it decodes each image; the split recomputes them when absent (old manifests,
# aligned face crops).
PHASH_COLUMN = "phash256"
THUMBS_COLUMN = "thumbs16"
FINGERPRINT_COLUMNS: tuple[str, ...] = (PHASH_COLUMN, THUMBS_COLUMN)
# phash separated different faces best; 16 × 16 = 256 bits (64 bits confused different faces,
# docs/splitting.md), the range facerec.config allows split.near_duplicate_max_distance in.
PHASH_SIZE = 16
# The crop- and scale-tolerant signal: mean-centred grey 16 × 16 thumbnails of the centred crops
# keeping these shares of width and height, compared by cosine, best crop pair counting. A re-crop
# of a photo matches one of the other's crops; 16 px blurs away the shift of a burst frame.
THUMB_SIDE_PX = 16
CROP_SCALES = (1.0, 0.8, 0.7)
# Below this many images a process pool costs more to start than it saves.
SERIAL_BELOW_IMAGES = 256
# Rows of the pairwise distance matrix computed at once: 128 x 17.5k uint64 is an 18 MB buffer.
PAIR_BLOCK_ROWS = 128


def thumbnails(image: Image.Image) -> np.ndarray:
    """(len(CROP_SCALES), THUMB_SIDE_PX²) unit vectors: each centred crop's mean-centred grey thumbnail."""
    grey = image.convert("L")
    width, height = grey.size
    vectors = []
    for scale in CROP_SCALES:
        margin_x, margin_y = width * (1 - scale) / 2, height * (1 - scale) / 2
        box = (margin_x, margin_y, width - margin_x, height - margin_y)
        thumb = grey.resize((THUMB_SIDE_PX, THUMB_SIDE_PX), Image.Resampling.LANCZOS, box=box)
        vector = np.asarray(thumb, dtype=np.float32).ravel()
        vectors.append(vector - vector.mean())
    return np.stack(vectors)


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


def fingerprint(image: Image.Image) -> dict[str, str]:
    """Return every near-duplicate signal of one decoded RGB image, as hex text per column."""
    return {PHASH_COLUMN: str(imagehash.phash(image, hash_size=PHASH_SIZE)),
            THUMBS_COLUMN: encode_thumbnails(thumbnails(image))}


def fingerprint_file(path: Path) -> dict[str, str]:
    """Decode one image file upright as RGB and return its fingerprint."""
    try:
        image = open_rgb(path)
    except (OSError, ValueError) as error:
        raise PipelineInputError(f"cannot decode {path} for duplicate search: {error}") from error
    return fingerprint(image)


def compute_fingerprints(paths: list[Path], workers: int | None = None) -> pd.DataFrame:
    """Fingerprint every image in `paths` (rows in path order), on all cores unless `workers` says."""
    workers = workers or os.cpu_count() or 1
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


def near_pairs(words: np.ndarray, max_distance: int) -> np.ndarray:
    """Return (k, 2) index pairs i < j of `words` rows whose Hamming distance is <= max_distance.

    The all-pairs definition (n² work); the split searches through facerec.pair_index instead.
    """
    count = len(words)
    columns = np.ascontiguousarray(words.T)  # one contiguous row per 64-bit word
    # Buffers reused across blocks: fresh 10-100 MB arrays per block cost more than the maths.
    xor_buffer = np.empty((PAIR_BLOCK_ROWS, count), dtype=np.uint64)
    bits_buffer = np.empty((PAIR_BLOCK_ROWS, count), dtype=np.uint8)
    distance_buffer = np.empty((PAIR_BLOCK_ROWS, count), dtype=np.uint16)
    found = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, count, PAIR_BLOCK_ROWS):
        rows, later = min(PAIR_BLOCK_ROWS, count - start), count - start
        xor, bits = xor_buffer[:rows, :later], bits_buffer[:rows, :later]
        distances = distance_buffer[:rows, :later]
        distances[...] = 0
        # Compare each row only with itself and later images, so every pair is seen once.
        for word in columns:
            np.bitwise_xor(word[start : start + rows, None], word[None, start:], out=xor)
            np.bitwise_count(xor, out=bits)
            np.add(distances, bits, out=distances)
        row_index, col_index = np.nonzero(distances <= max_distance)
        keep = col_index > row_index
        found.append(np.stack([row_index[keep] + start, col_index[keep] + start], axis=1))
    return np.concatenate(found).astype(np.int64)


def thumbnail_pairs(vectors: np.ndarray, min_cosine: float) -> np.ndarray:
    """Return (k, 2) index pairs i < j whose best crop pair of thumbnails has cosine >= min_cosine.

    The all-pairs definition (n² work); the split searches through facerec.pair_index instead.
    """
    count, crops, _ = vectors.shape
    flat = np.ascontiguousarray(vectors.reshape(count * crops, -1))
    found = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, count, PAIR_BLOCK_ROWS):
        stop = min(count, start + PAIR_BLOCK_ROWS)
        # Each row's crops against every crop of itself and the later images, so each pair is seen once.
        cosines = flat[start * crops : stop * crops] @ flat[start * crops :].T
        best = cosines.reshape(stop - start, crops, count - start, crops).max(axis=(1, 3))
        row_index, col_index = np.nonzero(best >= min_cosine)
        keep = col_index > row_index
        found.append(np.stack([row_index[keep] + start, col_index[keep] + start], axis=1))
    return np.concatenate(found).astype(np.int64)


def exact_pairs(sha256: list[str]) -> np.ndarray:
    """Return (k, 2) index pairs i < j of byte-identical files (same sha256)."""
    first_seen: dict[str, list[int]] = {}
    for index, digest in enumerate(sha256):
        first_seen.setdefault(digest, []).append(index)
    pairs = [(a, b) for members in first_seen.values() for a in members for b in members if a < b]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass
class Grouping:
    """Duplicate groups of n images: `group[i]` numbers groups by their first member's position."""

    group: np.ndarray  # int64, one group id per image
    exact_pairs: np.ndarray  # (k, 2) byte-identical index pairs
    near_pairs: np.ndarray  # (k, 2) pairs close by any signal that are not byte-identical
    signal_pairs: dict[str, np.ndarray]  # the near pairs each signal found, by fingerprint column


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Sorted (k, 2) pairs without repeats."""
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def group_duplicates(sha256: list[str], fingerprints: pd.DataFrame, max_distance: int,
                     min_cosine: float) -> Grouping:
    """Join exact and near-duplicate pairs into connected components (deterministic ids).

    `fingerprints` has the FINGERPRINT_COLUMNS, one row per entry of `sha256`. Near pairs are
    phash pairs within `max_distance` bits and thumbnail pairs at cosine >= `min_cosine`.
    """
    count = len(sha256)
    empty = np.empty((0, 2), dtype=np.int64)
    if count == 0:
        return Grouping(np.empty(0, dtype=np.int64), empty, empty, dict.fromkeys(FINGERPRINT_COLUMNS, empty))
    exact = exact_pairs(sha256)
    sha = np.asarray(sha256, dtype=object)
    hash_bytes = hashes_to_words(fingerprints[PHASH_COLUMN].tolist()).view(np.uint8)
    signal_pairs = {
        PHASH_COLUMN: indexed_hash_pairs(hash_bytes, max_distance),
        THUMBS_COLUMN: indexed_thumbnail_pairs(decode_thumbnails(fingerprints[THUMBS_COLUMN].tolist()), min_cosine),
    }
    signal_pairs = {column: pairs[sha[pairs[:, 0]] != sha[pairs[:, 1]]] for column, pairs in signal_pairs.items()}
    near = unique_pairs(np.concatenate(list(signal_pairs.values())))
    edges = np.concatenate([exact, near])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance so ids depend only on the input order, not on scipy internals.
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_index))
    return Grouping(rank[inverse].astype(np.int64), exact, near, signal_pairs)
