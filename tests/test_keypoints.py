"""Keypoint check of near-duplicate candidates: re-crops and burst frames agree, other portraits do not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from conftest import tiny_config
from matplotlib import cbook
from PIL import Image, ImageFilter

from facerec import dedupe, pair_index
from facerec import fingerprints as signals
from facerec.config import ParamsError
from facerec.keypoints import pair_inliers

MIN_INLIERS = tiny_config().split.keypoint_min_inliers  # the project's calibrated threshold


def face_crop(photo: Image.Image, box: tuple[int, int, int, int], longer_side_px: int = 160) -> Image.Image:
    """A face crop of `photo` resized (Lanczos) to `longer_side_px`, like a dataset's crops."""
    crop = photo.crop(box)
    scale = longer_side_px / max(crop.size)
    return crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)


def portraits() -> dict[str, Image.Image]:
    """A portrait, its wider smaller re-crop, the next "frame" (shifted, darker, mouth changed) and another person."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        other_person = face_crop(hopper.convert("RGB"), (140, 60, 380, 380))
    frame = face_crop(astronaut, (140, 20, 320, 260))
    next_frame = face_crop(astronaut, (146, 26, 326, 266)).point(lambda value: value * 0.85)
    mouth = (50, 90, 110, 120)  # the expression changes between frames: blur the mouth
    next_frame.paste(next_frame.crop(mouth).filter(ImageFilter.GaussianBlur(3)), mouth[:2])
    return {"frame": frame, "re-crop": face_crop(astronaut, (120, 0, 340, 290), 130),
            "next frame": next_frame, "other person": other_person}


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return portraits()


def grey_opener(images: list[Image.Image], opened: list[int] | None = None):
    """An open_grey for dedupe.KeypointCheck over `images`, recording each row it opens in `opened`."""
    def open_grey(row: int) -> Image.Image:
        if opened is not None:
            opened.append(row)
        return images[row].convert("L")
    return open_grey


def test_recrop_and_burst_frame_agree_a_different_portrait_does_not(photos):
    images = list(photos.values())  # frame, re-crop, next frame, other person
    pairs = np.array([[0, 1], [0, 2], [1, 2], [0, 3], [1, 3], [2, 3]])
    opened = []
    inliers = dict(zip(map(tuple, pairs.tolist()), pair_inliers(pairs, grey_opener(images, opened)).tolist()))
    for pair in ((0, 1), (0, 2), (1, 2)):
        assert inliers[pair] >= MIN_INLIERS, f"a re-crop and the next frame of one photo agree: {inliers}"
    for pair in ((0, 3), (1, 3), (2, 3)):
        assert inliers[pair] < MIN_INLIERS / 3, f"another person's portrait in the same layout does not: {inliers}"
    assert sorted(opened) == [0, 1, 2, 3], f"each image is decoded once, however many pairs it is in: {opened}"
    serial = pair_inliers(pairs, grey_opener(images), workers=1).tolist()
    assert serial == list(inliers.values()), "threads change nothing: each image's features depend on it alone"


def test_inliers_do_not_depend_on_opencvs_random_state(photos):
    # RANSAC samples at random: the counts must come from OpenCV's per-call seeding, not from whatever
    # seeded or drew from OpenCV's shared generator before.
    images, pairs = list(photos.values()), np.array([[0, 1], [0, 2], [1, 2], [2, 3]])
    counts = []
    for seed in (0, 987_654):
        cv2.setRNGSeed(seed)
        cv2.randu(np.empty(1000, dtype=np.float32), 0, 1)  # draws that move the shared generator on
        counts.append(pair_inliers(pairs, grey_opener(images)).tolist())
    assert counts[0] == counts[1], f"the inliers of the same pairs changed with OpenCV's random state: {counts}"


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own thread pool (parallel_for) at `count` threads, restored after."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def test_inliers_do_not_depend_on_opencvs_thread_count(photos):
    # ORB, the matcher and RANSAC run OpenCV's parallel_for, split by its thread count: a machine's
    # cores must not change which pairs join (split across more threads than this machine has).
    images, pairs = list(photos.values()), np.array([[0, 1], [0, 2], [1, 2], [0, 3], [2, 3]])
    counts = {}
    for threads in (1, 4):
        with opencv_threads(threads):
            counts[threads] = pair_inliers(pairs, grey_opener(images), workers=2).tolist()
    assert counts[1] == counts[4], f"the inliers changed with OpenCV's thread count: {counts}"


def band_grouping(photos, candidate_min_cosine: float, min_inliers: int, opened: list[int]):
    """Group the portraits with the thumbnail threshold above them all, so only the keypoint check can join."""
    images = list(photos.values())
    table = pd.DataFrame([signals.fingerprint(image) for image in images])
    check = dedupe.KeypointCheck(candidate_min_cosine, min_inliers, grey_opener(images, opened))
    return dedupe.group_duplicates(list(photos), table, max_distance=0, min_cosine=0.999, keypoints=check)


def test_only_candidates_in_the_band_are_checked_and_joined(photos):
    thumbs = signals.decode_thumbnails([signals.fingerprint(image)[signals.THUMBS_COLUMN] for image in photos.values()])
    cosine = {pair: float(pair_index.best_cosines(thumbs, np.array([pair]))[0]) for pair in ((0, 1), (0, 2), (1, 2))}
    # Between the re-crop's and the next frame's cosine with the frame: one pair in the band, one below.
    bound = (cosine[(0, 1)] + cosine[(0, 2)]) / 2
    assert cosine[(0, 2)] < bound < cosine[(0, 1)], f"the portraits straddle the bound: {cosine}"
    opened = []
    grouping = band_grouping(photos, bound, MIN_INLIERS, opened)
    joined = {tuple(pair) for pair in grouping.signal_pairs[dedupe.KEYPOINT_SIGNAL].tolist()}
    in_band = {pair for pair, value in cosine.items() if value >= bound}
    assert joined == in_band, f"exactly the candidates at or above the bound are joined: {joined} vs {cosine}"
    assert 3 not in opened, f"the other person is no candidate, so never decoded: {opened}"
    assert grouping.keypoint_candidates == len(in_band), "the report counts the candidates checked"
    assert grouping.group[3] not in grouping.group[:3], "a different portrait stays in its own group"


def test_low_bound_joins_the_burst_but_never_the_other_person(photos):
    grouping = band_grouping(photos, 0.01, MIN_INLIERS, [])
    assert grouping.group.tolist() == [0, 0, 0, 1], (
        f"frame, re-crop and next frame are one group, the other person alone: {grouping.group}")


@pytest.mark.parametrize("candidate_min_cosine, min_inliers", [(0.01, 0), (0.999, MIN_INLIERS)])
def test_check_switched_off_decodes_nothing(photos, candidate_min_cosine, min_inliers):
    opened = []
    grouping = band_grouping(photos, candidate_min_cosine, min_inliers, opened)
    assert opened == [], "no image is decoded when the check is off (0 inliers, or an empty band)"
    assert len(grouping.signal_pairs[dedupe.KEYPOINT_SIGNAL]) == 0, "and the check joins nothing"
    assert grouping.keypoint_candidates == 0, "nor reports candidates"


def test_candidate_bound_above_the_threshold_is_refused():
    with pytest.raises(ParamsError, match=r"keypoint_candidate_min_cosine = 0\.98 .*near_duplicate_min_cosine"):
        tiny_config(split={"keypoint_candidate_min_cosine": 0.98, "near_duplicate_min_cosine": 0.97})
    config = tiny_config(split={"keypoint_candidate_min_cosine": 0.97, "near_duplicate_min_cosine": 0.97})
    assert config.split.keypoint_candidate_min_cosine == 0.97, "an empty band (equal bounds) is a valid way to turn it off"
    # With the checks of the band off it means nothing: lowering the thumbnail threshold alone must be accepted.
    config = tiny_config(split={"keypoint_min_inliers": 0, "burst_max_delta_e": 0, "near_duplicate_min_cosine": 0.9})
    assert config.split.near_duplicate_min_cosine < config.split.keypoint_candidate_min_cosine, "accepted with the checks off"



def test_many_matches_onto_one_keypoint_are_not_a_copy():
    # A blurred image keeps a few keypoints; the ratio test can then send many keypoints of the other
    # image to one of them, and a transform shrinking everything onto that point "explains" them all
    # (found at 10× the mirror: different people at 30–65 such inliers).
    from facerec.keypoints import consistent_matches

    rng = np.random.default_rng(3)
    points_a = rng.uniform(0, 160, size=(40, 2)).astype(np.float32)
    # Every descriptor of A is a few bits from B's first descriptor and far from the other two.
    descriptors_a = np.zeros((40, 32), dtype=np.uint8)
    descriptors_a[np.arange(40), rng.integers(0, 32, 40)] = 1
    points_b = np.array([[80, 80], [20, 20], [140, 30]], dtype=np.float32)
    descriptors_b = np.array([np.zeros(32), np.full(32, 255), np.full(32, 255)], dtype=np.uint8)
    inliers = consistent_matches((points_a, descriptors_a), (points_b, descriptors_b), cv2.BFMatcher(cv2.NORM_HAMMING))
    assert inliers == 0, f"40 keypoints onto one point is a degenerate fit, not {inliers} consistent matches"
