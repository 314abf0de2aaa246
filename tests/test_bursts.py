"""Burst check of near-duplicate candidates: the next frame agrees in colour once flowed, other light or people do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skimage.data
from conftest import tiny_config
from test_keypoints import face_crop, grey_opener, opencv_threads, portraits
from PIL import Image

from facerec import dedupe
from facerec import fingerprints as signals
from facerec.bursts import colour_difference, flow_view, pair_colour_differences
from facerec.config import ParamsError

MAX_DELTA_E = tiny_config().split.burst_max_delta_e  # the project's calibrated threshold


def burst_portraits() -> dict[str, Image.Image]:
    """A portrait, the next frame (6 px shifted, another mouth), the portrait in other light, another person."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    frame = face_crop(astronaut, (140, 20, 320, 260))
    next_frame = face_crop(astronaut, (146, 26, 326, 266))
    # The expression changes between frames: the eyes' patch pasted over the mouth.
    next_frame.paste(next_frame.crop((30, 50, 90, 80)), (50, 90))
    # The same face in the same pose under warmer light, framed a little apart: as a different photo
    # of a person in one pose.
    relit = face_crop(astronaut, (134, 14, 314, 254))
    relit = Image.merge("RGB", [channel.point(lambda value, gain=gain: min(255, round(value * gain)))
                                for channel, gain in zip(relit.split(), (1.12, 1.0, 0.85))])
    return {"frame": frame, "next frame": next_frame, "relit copy": relit,
            "other person": portraits()["other person"]}


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return burst_portraits()


def test_next_frame_agrees_in_colour_other_light_and_another_person_do_not(photos):
    views = {name: flow_view(image) for name, image in photos.items()}
    difference = {name: colour_difference(views["frame"], views[name]) for name in ("next frame", "relit copy", "other person")}
    assert difference["next frame"] <= MAX_DELTA_E / 2, f"a shifted frame with another mouth agrees: {difference}"
    assert difference["relit copy"] >= 2 * MAX_DELTA_E, f"the same pose in other light does not: {difference}"
    assert difference["other person"] >= 5 * MAX_DELTA_E, f"nor another person in the same layout: {difference}"
    view = views["frame"]
    assert view[0].shape == view[1].shape[:2] and view[0].dtype == np.uint8, "grey and CIELAB squares of one size"
    assert 0 <= view[1][..., 0].min() and view[1][..., 0].max() <= 100, "L in CIELAB units (0-100), as ΔE is calibrated"


def test_differences_are_deterministic_and_decode_each_image_once(photos):
    images = list(photos.values())  # frame, next frame, relit copy, other person
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]])
    opened = []

    def open_colour(row: int) -> Image.Image:
        opened.append(row)
        return images[row]
    first = pair_colour_differences(pairs, open_colour, workers=2)
    assert sorted(opened) == [0, 1, 2, 3], f"each image is decoded once, however many pairs it is in: {opened}"
    serial = pair_colour_differences(pairs, lambda row: images[row], workers=1)
    assert first.tolist() == serial.tolist(), f"threads change nothing: {first} vs {serial}"
    assert pair_colour_differences(np.empty((0, 2), dtype=np.int64), open_colour).shape == (0,), "no pairs, no work"


def test_differences_do_not_depend_on_opencvs_thread_count(photos):
    # The resize, colour conversion and DIS flow run OpenCV's parallel_for, split by its thread
    # count: a machine's cores must not move a ΔE (the mirror has pairs 0.006 below the threshold).
    images = list(photos.values())
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2]])
    differences = {}
    for threads in (1, 4):
        with opencv_threads(threads):
            differences[threads] = pair_colour_differences(pairs, lambda row: images[row], workers=2).tolist()
    assert differences[1] == differences[4], f"ΔE bit for bit alike on 1 and 4 OpenCV threads: {differences}"


def band_grouping(photos, min_inliers: int, max_delta_e: float, opened: list[int]):
    """Group the portraits with the thumbnail threshold above them all and a wide band below it."""
    images = list(photos.values())
    table = pd.DataFrame([signals.fingerprint(image) for image in images])
    keypoints = dedupe.KeypointCheck(0.01, min_inliers, grey_opener(images))

    def open_colour(row: int) -> Image.Image:
        opened.append(row)
        return images[row]
    return dedupe.group_duplicates(list(photos), table, max_distance=0, min_cosine=0.999, keypoints=keypoints,
                                   bursts=dedupe.BurstCheck(max_delta_e, open_colour))


def test_burst_check_joins_the_next_frame_the_keypoint_check_left_apart(photos):
    opened = []
    grouping = band_grouping(photos, 10_000, MAX_DELTA_E, opened)  # keypoints join nothing
    assert grouping.group.tolist() == [0, 0, 1, 2], f"the frame and the next frame are one group: {grouping.group}"
    assert grouping.signal_pairs[dedupe.BURST_SIGNAL].tolist() == [[0, 1]], "joined by the burst check"
    assert grouping.burst_candidates == grouping.keypoint_candidates == 6, "every pair in the band was checked"


def test_burst_check_sees_only_pairs_the_keypoint_check_left_apart(photos):
    opened = []
    grouping = band_grouping(photos, tiny_config().split.keypoint_min_inliers, MAX_DELTA_E, opened)
    keypoint_pairs = grouping.signal_pairs[dedupe.KEYPOINT_SIGNAL].tolist()
    assert [0, 1] in keypoint_pairs, f"the keypoints join the next frame: {keypoint_pairs}"
    assert grouping.burst_candidates == grouping.keypoint_candidates - len(keypoint_pairs), (
        "the burst check examines what the keypoint check left in two groups")
    assert len(grouping.signal_pairs[dedupe.BURST_SIGNAL]) == 0, "and nothing else agrees in colour"


def test_burst_check_switched_off_decodes_nothing(photos):
    opened = []
    grouping = band_grouping(photos, 10_000, 0, opened)
    assert opened == [], "no colour image is decoded with the check off (ΔE 0)"
    assert grouping.burst_candidates == 0 and len(grouping.signal_pairs[dedupe.BURST_SIGNAL]) == 0, "nor joins or counts"
    assert grouping.group.tolist() == [0, 1, 2, 3], "and nothing joins the portraits"


@pytest.mark.parametrize("value", [-1, 101, "off", "4", True])
def test_a_bad_colour_threshold_is_refused_naming_the_key(value):
    with pytest.raises(ParamsError, match=r"split\.burst_max_delta_e = .*0 turns the burst check off"):
        tiny_config(split={"burst_max_delta_e": value})


def test_burst_check_alone_still_needs_a_band_below_the_threshold():
    with pytest.raises(ParamsError, match=r"keypoint_candidate_min_cosine = 0\.98 .*burst_max_delta_e = 0"):
        tiny_config(split={"keypoint_min_inliers": 0, "keypoint_candidate_min_cosine": 0.98,
                           "near_duplicate_min_cosine": 0.97})
    config = tiny_config(split={"keypoint_min_inliers": 0, "burst_max_delta_e": 0, "near_duplicate_min_cosine": 0.9})
    assert config.split.near_duplicate_min_cosine < config.split.keypoint_candidate_min_cosine, "both checks off: accepted"
