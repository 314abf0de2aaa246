"""Keypoint verification of near-duplicate candidates: ORB matches that one similarity transform explains.

Two copies of one photo (re-cropped, rescaled, relit, grey) and two frames of one burst share
background, hair and clothes under one near-rigid motion; two different photos of a person in the
same pose share only the layout of a face. Each candidate pair's grey images get ORB keypoints, the
descriptors are matched (Lowe's ratio test), and RANSAC fits a rotation + uniform scale + shift
(cv2.estimateAffinePartial2D); the pair counts as a duplicate when enough matches agree with it.
Settings measured on the pins mirror (docs/splitting.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image

from facerec.workers import usable_cores

# Images are resized so their longer side has this many pixels: the mirror's own size, and small
# copies (65 px) then have as many keypoints as large ones.
KEYPOINT_SIDE_PX = 160
# 15-px patches and border instead of ORB's 31: a 160-px face crop keeps 4× the keypoints.
ORB_SETTINGS = {"nfeatures": 500, "edgeThreshold": 15, "patchSize": 15}
# A match counts only when its best descriptor is clearly better than the second best.
RATIO_TEST = 0.75
# RANSAC inlier tolerance in pixels of the KEYPOINT_SIDE_PX image.
REPROJECTION_PX = 2.0
RANSAC_ITERATIONS = 2000
RANSAC_CONFIDENCE = 0.99
# Candidates are thumbnails of crops from 0.7 to 1.0 of the image, both resized to one side: a
# transform scaling by less than this (or more than its inverse) is a degenerate fit, not a copy.
MIN_SCALE = 0.25

Features = tuple[np.ndarray, np.ndarray | None]  # (n, 2) float32 keypoint positions, (n, 32) uint8 descriptors


def keypoint_features(grey: Image.Image) -> Features:
    """ORB keypoint positions and descriptors of a grey image resized to KEYPOINT_SIDE_PX."""
    scale = KEYPOINT_SIDE_PX / max(grey.size)
    resized = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                          Image.Resampling.LANCZOS)
    detector = cv2.ORB_create(**ORB_SETTINGS)
    keypoints, descriptors = detector.detectAndCompute(np.asarray(resized, dtype=np.uint8), None)
    return np.array([point.pt for point in keypoints], dtype=np.float32).reshape(-1, 2), descriptors


def consistent_matches(first: Features, second: Features, matcher: cv2.BFMatcher) -> int:
    """How many ratio-test matches between two images one similarity transform explains (RANSAC inliers)."""
    (points_a, descriptors_a), (points_b, descriptors_b) = first, second
    if descriptors_a is None or descriptors_b is None or len(points_a) < 2 or len(points_b) < 2:
        return 0
    good = [pair[0] for pair in matcher.knnMatch(descriptors_a, descriptors_b, k=2)
            if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance]
    if len(good) < 3:
        return 0
    source = points_a[[match.queryIdx for match in good]]
    target = points_b[[match.trainIdx for match in good]]
    # OpenCV's RANSAC seeds its own generator on every call: the same matches give the same inliers.
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX,
        maxIters=RANSAC_ITERATIONS, confidence=RANSAC_CONFIDENCE)
    if transform is None or not MIN_SCALE <= np.hypot(*transform[:, 0]) <= 1 / MIN_SCALE:
        return 0
    return int(inliers.sum())


def pair_inliers(pairs: np.ndarray, open_grey: Callable[[int], Image.Image], workers: int | None = None) -> np.ndarray:
    """RANSAC inliers of each (k, 2) image pair; each image involved is decoded (`open_grey(row)`) once.

    Images are decoded and described on `workers` threads (None: every core; OpenCV and Pillow
    release the GIL), so `open_grey` must be thread-safe. Each image's features depend on it alone.
    """
    if not len(pairs):
        return np.empty(0, dtype=np.int64)
    rows = np.unique(pairs).tolist()
    with ThreadPoolExecutor(workers or usable_cores()) as pool:
        features = dict(zip(rows, pool.map(lambda row: keypoint_features(open_grey(row)), rows)))
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    return np.array([consistent_matches(features[int(a)], features[int(b)], matcher) for a, b in pairs],
                    dtype=np.int64)
