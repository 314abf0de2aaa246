"""Code tests for the indexed near-pair search: it finds exactly the all-pairs definitions' pairs."""

from __future__ import annotations

import numpy as np

from facerec import dedupe, pair_index
from facerec import fingerprints as signals


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, pairs.tolist()))


def test_hash_index_finds_exactly_the_all_pairs_result():
    rng = np.random.default_rng(4)
    words = rng.integers(0, 2**63, size=(600, 4), dtype=np.uint64)
    # Near copies at 0-40 flipped bits, and a group of 20 copies (more than the first k asked for).
    for source, copy in zip(range(0, 100), range(100, 200)):
        words[copy] = words[source]
        for bit in rng.choice(256, size=int(rng.integers(0, 48)), replace=False):
            words[copy, bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    words[300:320] = words[299]
    expected = as_set(dedupe.near_pairs(words, 40))
    found = as_set(pair_index.indexed_hash_pairs(words.view(np.uint8), 40, exact_below=0))
    assert found == expected, f"index and all-pairs search differ: {len(found ^ expected)} pairs"
    scanned = as_set(pair_index.indexed_hash_pairs(words.view(np.uint8), 40, exact_below=len(words) + 1))
    assert scanned == expected, f"the exact scan for small datasets differs: {len(scanned ^ expected)} pairs"
    assert {(0, 100), (299, 319)} <= expected and not any(i == j for i, j in expected), "i < j, planted pairs"
    assert len(expected) > 20 * 21 // 2 + 50, f"the planted pairs are there to find: {len(expected)}"


def smooth_thumbnails(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, crops, 256) mean-centred unit vectors of smooth random 16 × 16 images."""
    crops = len(signals.CROP_SCALES)
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(16), np.fft.fftfreq(16)))
    spectrum = rng.standard_normal((count, crops, 16, 16)) / np.maximum(frequency, 1 / 16) ** 2
    vectors = np.real(np.fft.ifft2(spectrum)).reshape(count, crops, 256).astype(np.float32)
    vectors -= vectors.mean(axis=2, keepdims=True)
    return vectors / np.linalg.norm(vectors, axis=2, keepdims=True)


def test_thumbnail_index_finds_exactly_the_all_pairs_result():
    rng = np.random.default_rng(9)
    vectors = smooth_thumbnails(rng, 500)
    # Noisy copies spread around the threshold, one as another image's smaller crop, and 15 identical copies.
    noise = smooth_thumbnails(rng, 100) * rng.uniform(0.05, 0.4, size=(100, 1, 1)).astype(np.float32)
    vectors[100:200] = vectors[:100] + noise
    vectors[200, 2] = vectors[0, 0]
    vectors[400:415] = vectors[399]
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    expected = as_set(dedupe.thumbnail_pairs(vectors, 0.97))
    found = as_set(pair_index.indexed_thumbnail_pairs(vectors, 0.97))
    assert found == expected, f"index and all-pairs search differ: {sorted(found ^ expected)[:5]}"
    assert (0, 200) in found and len(expected) > 15 * 14 // 2 + 20, f"the planted pairs are found: {len(expected)}"


def test_fewer_than_two_images_have_no_pairs():
    assert len(pair_index.indexed_hash_pairs(np.zeros((1, 32), dtype=np.uint8), 40)) == 0, "one hash, no pair"
    assert len(pair_index.indexed_thumbnail_pairs(np.zeros((0, 3, 256), dtype=np.float32), 0.97)) == 0, "none"


def test_unique_pairs_equals_numpys_row_unique():
    rng = np.random.default_rng(7)
    for count in (0, 1, 2, 500):
        pairs = rng.integers(0, 40, size=(count, 2))
        expected = np.unique(pairs, axis=0) if count else pairs.reshape(0, 2)
        found = pair_index.unique_pairs(pairs)
        assert found.shape == expected.shape and (found == expected).all(), f"{count} pairs: rows sorted, repeats gone"
        assert found.dtype == np.int64, "pair rows index images: int64"
    assert pair_index.unique_pairs(np.array([[0, 5], [0, 5], [1, 0]])).tolist() == [[0, 5], [1, 0]], \
        "repeats dropped, rows kept as given"
