"""Near-duplicate pair search through HNSW graph indexes (faiss): about n log n work, not n².

Hashes of a dataset below EXACT_HASH_SEARCH_BELOW images are compared all against all instead,
where that exact scan is the cheaper one.

Each search asks every image for its k nearest neighbours, keeps those within the threshold and
asks again with 4k for the images whose k-th neighbour was still within it, so a large group of
copies is found whole. The pairs equal the all-pairs definitions in facerec.dedupe (near_pairs,
thumbnail_pairs) whenever the graph search finds the true nearest neighbours; docs/splitting.md
measures that on the 17.5k-image mirror.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import faiss
import numpy as np
from scipy.fft import dctn

# Graph degree, build and search breadth per signal, the smallest that found every pair of the
# all-pairs search on the mirror (docs/splitting.md). 256 hash bits are hard to navigate (8 / 32 /
# 32 missed 47 of 767 phash pairs); the 35 DCT coefficients of the thumbnails are easy.
HASH_GRAPH = {"neighbours": 16, "build_breadth": 64, "search_breadth": 64}
THUMBNAIL_GRAPH = {"neighbours": 8, "build_breadth": 32, "search_breadth": 32}
FIRST_K = 8
# Below this many hashes one exact all-against-all scan (faiss' vectorised popcount) beats building
# the graph and finds every pair: 0.2 s against 1.3 s for the mirror's 17.5k phashes, 14.5 s against
# 24.4 s at 175k, where the graph missed 3 of 893 pairs (docs/benchmarks.md section 10). The scan
# grows as n², the graph about as n^1.3 there; extrapolated, they meet near 400k hashes.
EXACT_HASH_SEARCH_BELOW = 300_000
# Thumbnail candidates come from their low 2-D DCT frequencies (u + v < 8, without the constant
# term, zero after mean-centring): an orthogonal projection, so it never lengthens a distance and
# every pair within the threshold is a candidate; the full thumbnails then decide.
DCT_BAND = 8
# Candidate pairs checked at once: 4k pairs of 3 × 256 float32 thumbnails are 25 MB of operands, reused
# from batch to batch; 65k-pair batches (400 MB) spent more on fresh pages than on the maths.
VERIFY_BATCH_PAIRS = 4_096


@contextmanager
def single_thread():
    """Build HNSW graphs on one thread: parallel insertion makes the graph depend on timing."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def built(index, vectors: np.ndarray, graph: dict[str, int]):
    """`index` with `vectors` added under the graph's build breadth, on one thread."""
    index.hnsw.efConstruction = graph["build_breadth"]
    with single_thread():
        index.add(vectors)
    return index


def neighbours_within(index, queries: np.ndarray, is_close: Callable[[np.ndarray], np.ndarray],
                      search_breadth: int) -> np.ndarray:
    """(k, 2) (query row, indexed row) pairs whose search distance passes `is_close`, widening k as needed."""
    pending, k = np.arange(len(queries)), FIRST_K
    found = [np.empty((0, 2), dtype=np.int64)]
    while len(pending):
        k = min(k, index.ntotal)
        index.hnsw.efSearch = max(search_breadth, k)
        distances, labels = index.search(queries[pending], k)
        close = is_close(distances) & (labels >= 0)
        rows, columns = np.nonzero(close)
        found.append(np.stack([pending[rows], labels[rows, columns]], axis=1))
        # A query whose k-th neighbour is still close may have more: ask those again, wider.
        pending = pending[close[:, -1]] if k < index.ntotal else pending[:0]
        k *= 4
    return np.concatenate(found).astype(np.int64)


def as_image_pairs(vector_pairs: np.ndarray, vectors_per_image: int) -> np.ndarray:
    """Map pairs of vector rows to sorted, unique (i < j) pairs of the images that own them."""
    owners = vector_pairs // vectors_per_image
    return unique_pairs(np.sort(owners[owners[:, 0] != owners[:, 1]], axis=1))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """(k, 2) non-negative int pairs, sorted by rows, without repeats (as np.unique(pairs, axis=0))."""
    if not len(pairs):
        return np.asarray(pairs, dtype=np.int64).reshape(0, 2)
    pairs = pairs.astype(np.int64, copy=False)
    # One int64 key per row, sorted, repeats dropped: 10× faster than np.unique(axis=0) or np.unique
    # on the keys (numpy 2.4 hashes before sorting), 0.3 s for the mirror's 400k phash hits.
    base = int(pairs[:, 1].max()) + 1
    keys = np.sort(pairs[:, 0] * base + pairs[:, 1])
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return np.stack(np.divmod(keys, base), axis=1)


def indexed_hash_pairs(hash_bytes: np.ndarray, max_distance: int,
                       exact_below: int | None = None) -> np.ndarray:
    """(k, 2) pairs i < j of (n, bytes) uint8 hashes within `max_distance` Hamming bits.

    Fewer than `exact_below` hashes (default EXACT_HASH_SEARCH_BELOW) are compared all against all.
    """
    if len(hash_bytes) < 2:
        return np.empty((0, 2), dtype=np.int64)
    hash_bytes = np.ascontiguousarray(hash_bytes, dtype=np.uint8)
    if len(hash_bytes) < (EXACT_HASH_SEARCH_BELOW if exact_below is None else exact_below):
        exact = faiss.IndexBinaryFlat(hash_bytes.shape[1] * 8)
        exact.add(hash_bytes)
        limits, _, labels = exact.range_search(hash_bytes, max_distance + 1)  # strictly below the radius
        queries = np.repeat(np.arange(len(hash_bytes)), np.diff(limits.astype(np.int64)))
        return as_image_pairs(np.stack([queries, labels.astype(np.int64)], axis=1), 1)
    index = built(faiss.IndexBinaryHNSW(hash_bytes.shape[1] * 8, HASH_GRAPH["neighbours"]), hash_bytes, HASH_GRAPH)
    pairs = neighbours_within(index, hash_bytes, lambda bits: bits <= max_distance, HASH_GRAPH["search_breadth"])
    return as_image_pairs(pairs, 1)


def low_frequencies(vectors: np.ndarray) -> np.ndarray:
    """(rows, d) square thumbnails → their orthonormal 2-D DCT coefficients with u + v < DCT_BAND, u + v > 0."""
    side = int(round(vectors.shape[1] ** 0.5))
    coefficients = dctn(vectors.reshape(-1, side, side), axes=(1, 2), norm="ortho")
    u, v = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    band = (u + v < DCT_BAND) & (u + v > 0)
    return np.ascontiguousarray(coefficients[:, band], dtype=np.float32)


def indexed_thumbnail_pairs(thumbnails: np.ndarray, min_cosine: float) -> np.ndarray:
    """(k, 2) pairs i < j of (n, crops, d) unit thumbnails whose best crop pair has cosine >= min_cosine."""
    return thumbnail_pairs_and_cosines(thumbnails, min_cosine)[0]


def thumbnail_pairs_and_cosines(thumbnails: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """indexed_thumbnail_pairs, with each pair's best crop-pair cosine (computed once, to keep or drop it)."""
    count, crops, _ = thumbnails.shape
    if count < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float32)
    flat = thumbnails.reshape(count * crops, -1)
    projected = low_frequencies(flat)
    # Unit vectors: cosine >= c exactly when the squared distance is <= 2 - 2c (with float slack).
    radius_squared = 2 - 2 * min_cosine + 1e-4
    index = built(faiss.IndexHNSWFlat(projected.shape[1], THUMBNAIL_GRAPH["neighbours"]), projected, THUMBNAIL_GRAPH)
    close = neighbours_within(index, projected, lambda squared: squared <= radius_squared,
                              THUMBNAIL_GRAPH["search_breadth"])
    candidates = as_image_pairs(close, crops)
    if not len(candidates):
        return candidates, np.empty(0, dtype=np.float32)
    cosines = np.concatenate([best_cosines(thumbnails, candidates[start : start + VERIFY_BATCH_PAIRS])
                              for start in range(0, len(candidates), VERIFY_BATCH_PAIRS)])
    keep = cosines >= min_cosine
    return candidates[keep], cosines[keep]


def best_cosines(thumbnails: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The best crop-pair cosine of each image pair."""
    return np.einsum("pad,pbd->pab", thumbnails[pairs[:, 0]], thumbnails[pairs[:, 1]]).max(axis=(1, 2))
