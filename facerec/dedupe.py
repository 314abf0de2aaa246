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
from facerec.verify import open_rgb
from facerec.workers import process_pool

log = logging.getLogger(__name__)

# The near-duplicate signals of one image, each a manifest column of hex text. The download stage
# stores them while it decodes each image; the split recomputes them when absent (old manifests,
# aligned face crops).
PHASH_COLUMN = "phash256"
FINGERPRINT_COLUMNS: tuple[str, ...] = (PHASH_COLUMN,)
# phash separated different faces best; 16 × 16 = 256 bits (64 bits confused different faces,
# docs/splitting.md), the range facerec.config allows split.near_duplicate_max_distance in.
PHASH_SIZE = 16
# Below this many images a process pool costs more to start than it saves.
SERIAL_BELOW_IMAGES = 256
# Rows of the pairwise distance matrix computed at once: 128 x 17.5k uint64 is an 18 MB buffer.
PAIR_BLOCK_ROWS = 128


def fingerprint(image: Image.Image) -> dict[str, str]:
    """Return every near-duplicate signal of one decoded RGB image, as hex text per column."""
    return {PHASH_COLUMN: str(imagehash.phash(image, hash_size=PHASH_SIZE))}


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
    """Return (k, 2) index pairs i < j of `words` rows whose Hamming distance is <= max_distance."""
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
    near_pairs: np.ndarray  # (k, 2) perceptually close pairs that are not byte-identical


def group_duplicates(sha256: list[str], fingerprints: pd.DataFrame, max_distance: int) -> Grouping:
    """Join exact and near-duplicate pairs into connected components (deterministic ids).

    `fingerprints` has the FINGERPRINT_COLUMNS, one row per entry of `sha256`.
    """
    count = len(sha256)
    if count == 0:
        empty = np.empty((0, 2), dtype=np.int64)
        return Grouping(group=np.empty(0, dtype=np.int64), exact_pairs=empty, near_pairs=empty)
    exact = exact_pairs(sha256)
    near = near_pairs(hashes_to_words(fingerprints[PHASH_COLUMN].tolist()), max_distance)
    sha = np.asarray(sha256, dtype=object)
    near = near[sha[near[:, 0]] != sha[near[:, 1]]] if len(near) else near
    edges = np.concatenate([exact, near])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance so ids depend only on the input order, not on scipy internals.
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_index))
    return Grouping(group=rank[inverse].astype(np.int64), exact_pairs=exact, near_pairs=near)
