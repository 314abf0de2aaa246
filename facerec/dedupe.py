"""Find exact and near-duplicate images and join them into groups that must share a split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from facerec.bursts import pair_colour_differences
from facerec.fingerprints import FINGERPRINT_COLUMNS, PHASH_COLUMN, THUMBS_COLUMN, decode_thumbnails, hashes_to_words
from facerec.keypoints import pair_inliers
from facerec.pair_index import indexed_hash_pairs, thumbnail_pairs_and_cosines, unique_pairs

# The signal_pairs key of the pairs the keypoint check joined (not a fingerprint column: it reads images).
KEYPOINT_SIGNAL = "keypoints"
# The signal_pairs key of the pairs the burst check joined (colours agree after a dense flow).
BURST_SIGNAL = "bursts"
# Rows of the pairwise distance matrix computed at once: 128 x 17.5k uint64 is an 18 MB buffer.
PAIR_BLOCK_ROWS = 128


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


@dataclass(frozen=True)
class KeypointCheck:
    """Thumbnail pairs at candidate_min_cosine <= cosine < the threshold join when keypoints agree."""

    candidate_min_cosine: float
    min_inliers: int  # RANSAC inliers of facerec.keypoints; 0 = no check
    open_grey: Callable[[int], Image.Image]  # the grey image of a fingerprint row
    workers: int | None = None  # threads that decode and describe candidate images (None: every core)


@dataclass(frozen=True)
class BurstCheck:
    """The keypoint band's candidates still apart join when their colours agree after a dense flow."""

    max_delta_e: float  # median CIELAB ΔE of facerec.bursts; 0 = no check
    open_colour: Callable[[int], Image.Image]  # the colour image of a fingerprint row
    workers: int | None = None  # threads that decode and compare candidate images (None: every core)


@dataclass
class Grouping:
    """Duplicate groups of n images: `group[i]` numbers groups by their first member's position."""

    group: np.ndarray  # int64, one group id per image
    exact_pairs: np.ndarray  # (k, 2) byte-identical index pairs
    near_pairs: np.ndarray  # (k, 2) pairs close by any signal that are not byte-identical
    signal_pairs: dict[str, np.ndarray]  # the near pairs each signal found: fingerprint columns, KEYPOINT_SIGNAL, BURST_SIGNAL
    keypoint_candidates: int = 0  # candidate pairs between two groups that the keypoint check examined
    burst_candidates: int = 0  # candidate pairs the keypoint check left between two groups, that the burst check examined


def components(count: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of `count` nodes joined by the (k, 2) `edges`."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def thumbnail_signal(thumbnails: np.ndarray, min_cosine: float, search_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Thumbnail pairs at cosine >= min_cosine, and the candidates at search_cosine <= cosine < min_cosine."""
    found, cosines = thumbnail_pairs_and_cosines(thumbnails, min(min_cosine, search_cosine))
    close = cosines >= min_cosine
    return found[close], found[~close]


def group_duplicates(sha256: list[str], fingerprints: pd.DataFrame, max_distance: int,
                     min_cosine: float, keypoints: KeypointCheck | None = None,
                     bursts: BurstCheck | None = None) -> Grouping:
    """Join exact and near-duplicate pairs into connected components (deterministic ids).

    `fingerprints` has the FINGERPRINT_COLUMNS, one row per entry of `sha256`. Near pairs are
    phash pairs within `max_distance` bits, thumbnail pairs at cosine >= `min_cosine`, and, in
    the band of `keypoints` below it, the thumbnail candidates whose keypoints agree (with an
    active keypoint check) or, of those still apart, whose colours agree after a dense flow (with
    `bursts` at a ΔE above 0). Each check examines only pairs the earlier signals left in two groups.
    """
    count = len(sha256)
    empty = np.empty((0, 2), dtype=np.int64)
    if count == 0:
        return Grouping(np.empty(0, dtype=np.int64), empty, empty,
                        dict.fromkeys((*FINGERPRINT_COLUMNS, KEYPOINT_SIGNAL, BURST_SIGNAL), empty))
    exact = exact_pairs(sha256)
    sha = np.asarray(sha256, dtype=object)
    hash_bytes = hashes_to_words(fingerprints[PHASH_COLUMN].tolist()).view(np.uint8)
    # Both image checks examine one band of thumbnail candidates, below the threshold.
    band = keypoints is not None and keypoints.candidate_min_cosine < min_cosine
    checking = band and keypoints.min_inliers > 0
    bursting = band and bursts is not None and bursts.max_delta_e > 0
    thumbs, candidates = thumbnail_signal(decode_thumbnails(fingerprints[THUMBS_COLUMN].tolist()), min_cosine,
                                          keypoints.candidate_min_cosine if checking or bursting else min_cosine)
    signal_pairs = {PHASH_COLUMN: indexed_hash_pairs(hash_bytes, max_distance), THUMBS_COLUMN: thumbs}
    signal_pairs = {column: pairs[sha[pairs[:, 0]] != sha[pairs[:, 1]]] for column, pairs in signal_pairs.items()}
    edges = np.concatenate([exact, *signal_pairs.values()])
    labels = components(count, edges)
    # Only candidates the cheap signals left apart need their images decoded and compared.
    candidates = candidates[labels[candidates[:, 0]] != labels[candidates[:, 1]]]
    keypoint_candidates = len(candidates) if checking else 0
    joined = empty
    if checking and len(candidates):
        joined = candidates[pair_inliers(candidates, keypoints.open_grey, keypoints.workers) >= keypoints.min_inliers]
        edges = np.concatenate([edges, joined])
        labels = components(count, edges)
        candidates = candidates[labels[candidates[:, 0]] != labels[candidates[:, 1]]]
    signal_pairs[KEYPOINT_SIGNAL] = joined
    burst_candidates = len(candidates) if bursting else 0
    joined = empty
    if bursting and len(candidates):
        joined = candidates[pair_colour_differences(candidates, bursts.open_colour, bursts.workers) <= bursts.max_delta_e]
        labels = components(count, np.concatenate([edges, joined]))
    signal_pairs[BURST_SIGNAL] = joined
    near = unique_pairs(np.concatenate(list(signal_pairs.values())))
    # Renumber by first appearance so ids depend only on the input order, not on scipy internals.
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_index))
    return Grouping(rank[inverse].astype(np.int64), exact, near, signal_pairs, keypoint_candidates, burst_candidates)
