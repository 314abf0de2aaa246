"""Face detection (MTCNN from its wheel, offline) and landmark alignment on real and composed photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from real_faces import GROUP_FACE_COLUMNS, astronaut, grace_hopper, group_photo, no_face_photo
from skimage.transform import SimilarityTransform, warp

from facerec.faces import Alignment, FaceDetector, align_face

ALIGNMENT = Alignment(crop_size_px=96, margin_fraction=0.2)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(min_face_size_px=20, batch_size=8, max_side_px=1024, border_fraction=0.15)


def overlap(box_a, box_b) -> float:
    """Intersection over union of two [x, y, width, height] boxes."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = box_a, box_b
    width = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return width * height / (aw * ah + bw * bh - width * height)


def inside(point, box, slack_px=0.0) -> bool:
    x, y, width, height = box
    return x - slack_px <= point[0] <= x + width + slack_px and y - slack_px <= point[1] <= y + height + slack_px


def test_finds_the_one_face_in_each_portrait_with_landmarks_inside_its_box(detector):
    found = detector.detect([grace_hopper(), astronaut()])
    assert [len(faces) for faces in found] == [1, 1], f"one face per portrait expected, got {found}"
    for faces, (face_x, face_y) in zip(found, [(265, 230), (225, 120)]):
        face = faces[0]
        assert face.confidence > 0.9, f"a clear frontal face should be detected confidently, got {face.confidence}"
        assert inside((face_x, face_y), face.box), f"box {face.box} should contain the face centre {face_x, face_y}"
        assert all(inside(point, face.box, slack_px=5) for point in face.landmarks), (
            f"landmarks {face.landmarks.tolist()} should lie in the box {face.box}")
        left_eye, right_eye, nose = face.landmarks[:3]
        assert left_eye[0] < nose[0] < right_eye[0], "left eye, nose and right eye should run left to right"
        assert face.landmarks[3:, 1].min() > nose[1] > left_eye[1], "eyes above the nose above the mouth"


def test_a_group_photo_gives_every_face_largest_first(detector):
    faces = detector.detect([group_photo()])[0]
    assert len(faces) == 3, f"three faces were composed into the photo, found {len(faces)}"
    areas = [face.area_px for face in faces]
    assert areas == sorted(areas, reverse=True), f"faces should come largest first, got areas {areas}"
    centres = sorted(face.box[0] + face.box[2] / 2 for face in faces)
    for centre, (left, right) in zip(centres, GROUP_FACE_COLUMNS):
        assert left < centre < right, f"a face centre at x={centre:.0f} should lie within its picture {left}–{right}"


def test_no_face_gives_an_empty_list_and_batching_keeps_images_apart(detector):
    hopper = grace_hopper()
    alone = detector.detect([hopper])[0][0]
    batched = detector.detect([no_face_photo(), hopper, no_face_photo()])
    assert [len(faces) for faces in batched] == [0, 1, 0], f"faces must stay with their own image: {batched}"
    assert overlap(batched[1][0].box, alone.box) > 0.9, (
        f"the same image should give the same box in a batch ({batched[1][0].box}) and alone ({alone.box})")
    assert detector.detect([no_face_photo()]) == [[]], "a photo without a face gives an empty list"
    assert detector.detect([]) == [], "no images, no results"


def test_large_photos_are_searched_downscaled_but_reported_in_original_pixels(detector):
    hopper = grace_hopper()
    big = np.asarray(Image.fromarray(hopper).resize((hopper.shape[1] * 3, hopper.shape[0] * 3)))
    small_box = np.array(detector.detect([hopper])[0][0].box)
    shrinking = FaceDetector(min_face_size_px=20, batch_size=2, max_side_px=600, border_fraction=0.0)
    big_face = shrinking.detect([big])[0][0]
    assert overlap(big_face.box, small_box * 3) > 0.8, (
        f"a 3× photo searched at 600 px should give the 3× box {small_box * 3}, got {big_face.box}")


def test_a_face_filling_the_frame_is_found_thanks_to_the_border(detector):
    # Pins-style tight crop: the face reaches the image's edges.
    tight = np.ascontiguousarray(grace_hopper()[150:330, 190:340])
    faces = detector.detect([tight])[0]
    assert len(faces) == 1 and faces[0].confidence > 0.9, f"the tight crop's face should be found, got {faces}"
    x, y, width, height = faces[0].box
    assert x >= 0 and y >= 0 and x + width <= 150 and y + height <= 180, (
        f"the box {faces[0].box} should be clipped to the 150×180 crop, not reach into the border")


def test_alignment_undoes_a_known_rotation_scale_and_shift():
    # Mark the template's five points in a crop, move that crop into a photo by a known similarity
    # transform, then align: the marks must come back to the template.
    template = ALIGNMENT.template_px()
    crop = np.zeros((96, 96, 3), np.uint8)
    for x, y in np.round(template).astype(int):
        crop[y - 2:y + 3, x - 2:x + 3] = 255
    crop_to_photo = SimilarityTransform(scale=2.5, rotation=np.deg2rad(25), translation=(300, 80))
    photo = warp(crop, crop_to_photo.inverse, output_shape=(500, 600), order=0, preserve_range=True).astype(np.uint8)
    aligned = align_face(photo, crop_to_photo(template), ALIGNMENT)
    assert aligned.shape == (96, 96, 3) and aligned.dtype == np.uint8, f"got {aligned.shape} {aligned.dtype}"
    for x, y in np.round(template).astype(int):
        assert aligned[y, x].mean() > 120, f"the mark at template point ({x}, {y}) should be back in place"
    assert aligned[:10, :10].max() < 40, "the corner, far from every mark, should stay dark"


def test_alignment_of_a_real_face_puts_its_eyes_on_the_template(detector):
    hopper = grace_hopper()
    face = detector.detect([hopper])[0][0]
    aligned = align_face(hopper, face.landmarks, ALIGNMENT)
    again = detector.detect([np.ascontiguousarray(aligned)])[0]
    assert len(again) == 1, "the aligned crop should still show one detectable face"
    eyes_error_px = np.abs(again[0].landmarks[:2] - ALIGNMENT.template_px()[:2]).max()
    assert eyes_error_px < 6, f"eyes in the aligned crop should sit on the template, off by {eyes_error_px:.1f} px"


def test_a_face_at_the_photo_edge_is_padded_black():
    photo = np.full((100, 100, 3), 200, np.uint8)
    # Landmarks of a face whose crop reaches past the photo's top-left corner.
    landmarks = ALIGNMENT.template_px() * 0.5 - 20
    aligned = align_face(photo, landmarks, ALIGNMENT)
    assert aligned[0, 0].max() == 0, "outside the photo should be black"
    assert aligned[-1, -1].min() == 200, "inside the photo should keep its colour"


@pytest.mark.parametrize("landmarks, message", [
    (np.zeros((4, 2)), "five finite"),
    (np.full((5, 2), np.nan), "five finite"),
    (np.zeros((5, 2)), "similarity transform"),
])
def test_bad_landmarks_are_refused_by_name(landmarks, message):
    with pytest.raises(ValueError, match=message):
        align_face(np.zeros((50, 50, 3), np.uint8), landmarks, ALIGNMENT)


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_size_px": 8, "margin_fraction": 0.2}, "crop_size_px"),
    ({"crop_size_px": 96, "margin_fraction": -0.1}, "margin_fraction"),
])
def test_bad_alignment_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Alignment(**kwargs)


def test_detector_refuses_images_that_are_not_rgb_uint8(detector):
    with pytest.raises(ValueError, match="image 1 must be H×W×3 uint8"):
        detector.detect([grace_hopper(), np.zeros((40, 40), np.uint8)])
