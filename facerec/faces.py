"""Find faces in images (MTCNN, batched) and align each to a canonical square crop.

One module for the faces stage and for predict, so a face is cropped the same way when a
model learns from it and when it is recognised in a photo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.filters import gaussian
from skimage.transform import SimilarityTransform, warp

log = logging.getLogger("facerec.faces")

# Five landmarks in MTCNN's order: eye on the image's left, eye on the image's right, nose tip,
# mouth corner on the left, mouth corner on the right. Positions are the widely used ArcFace
# template (112 px square around the face) as fractions of that square.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
TEMPLATE_FRACTIONS = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041],
]) / 112.0


@dataclass(frozen=True)
class Face:
    """One detected face in the original image's pixels."""

    box: tuple[float, float, float, float]  # x, y, width, height
    landmarks: np.ndarray  # (5, 2) x, y in LANDMARK_NAMES order
    confidence: float

    @property
    def area_px(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class Alignment:
    """Where the template's landmarks sit in the aligned crop."""

    crop_size_px: int  # side of the square crop
    margin_fraction: float  # context added on every side, as a fraction of the template square

    def __post_init__(self):
        if not 16 <= self.crop_size_px <= 1024:
            raise ValueError(f"crop_size_px = {self.crop_size_px!r} must be between 16 and 1024")
        if not 0.0 <= self.margin_fraction <= 1.0:
            raise ValueError(f"margin_fraction = {self.margin_fraction!r} must be between 0 and 1")

    def template_px(self) -> np.ndarray:
        """The five target landmark positions in crop pixels."""
        scale = self.crop_size_px / (1.0 + 2.0 * self.margin_fraction)
        return (TEMPLATE_FRACTIONS + self.margin_fraction) * scale


def align_face(image: np.ndarray, landmarks: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Warp `image` (H×W×3 uint8) so the landmarks land on the template: a square uint8 crop.

    A similarity transform (rotation, uniform scale, shift) keeps the face's proportions.
    Shrinking smooths first, as an anti-aliased resize would; outside the photo is black.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"landmarks must be five finite (x, y) points, got shape {landmarks.shape}")
    to_crop = SimilarityTransform.from_estimate(landmarks, alignment.template_px())
    if not to_crop:
        raise ValueError(f"landmarks {landmarks.tolist()} do not define a similarity transform (collinear?)")
    size = alignment.crop_size_px
    # Work on the part of the photo the crop covers (plus a border for the smoothing), not all of it.
    corners = to_crop.inverse(np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    left, top = np.floor(corners.min(axis=0)).astype(int) - 4
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 4
    height, width = image.shape[:2]
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width), min(bottom, height)
    if right <= left or bottom <= top:
        return np.zeros((size, size, 3), np.uint8)  # landmarks far outside the photo: nothing to show
    region = image[top:bottom, left:right].astype(np.float32)
    shrink = 1.0 / to_crop.scale
    if shrink > 1.0:
        # skimage.transform.rescale's anti-aliasing sigma for this downscale factor.
        region = gaussian(region, sigma=max(0.0, (shrink - 1.0) / 2.0), channel_axis=-1, preserve_range=True)
    region_to_crop = SimilarityTransform(translation=(left, top)) + to_crop  # region → photo → crop
    crop = warp(region, region_to_crop.inverse, output_shape=(size, size), order=1, mode="constant", cval=0.0,
                preserve_range=True)
    return np.clip(np.round(crop), 0, 255).astype(np.uint8)


class FaceDetector:
    """MTCNN (weights shipped inside the `mtcnn` wheel, so offline) called on batches of images."""

    def __init__(self, *, min_face_size_px: int, batch_size: int, max_side_px: int, border_fraction: float):
        from mtcnn import MTCNN  # imports TensorFlow: only when a detector is wanted

        if not 12 <= min_face_size_px <= 1024:
            raise ValueError(f"min_face_size_px = {min_face_size_px!r} must be between 12 and 1024")
        if not 1 <= batch_size <= 1024:
            raise ValueError(f"batch_size = {batch_size!r} must be between 1 and 1024")
        if not 64 <= max_side_px <= 8192:
            raise ValueError(f"max_side_px = {max_side_px!r} must be between 64 and 8192")
        if not 0.0 <= border_fraction <= 1.0:
            raise ValueError(f"border_fraction = {border_fraction!r} must be between 0 and 1")
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
        self.min_face_size_px = min_face_size_px
        self.batch_size = batch_size
        self.max_side_px = max_side_px
        self.border_fraction = border_fraction

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Every face in each H×W×3 uint8 image, largest first; calls MTCNN once per batch of images."""
        for position, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image {position} must be H×W×3 uint8 RGB, got {image.shape} {image.dtype}")
        results: list[list[Face]] = [[] for _ in images]
        # Same-shape images share a batch: MTCNN pads a batch to its largest image, so mixing a
        # portrait with a landscape photo would search a mostly black canvas.
        order = sorted(range(len(images)), key=lambda index: images[index].shape[:2])
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            scales = [min(1.0, self.max_side_px / max(images[index].shape[:2])) for index in chunk]
            # A black border lets MTCNN find faces that fill the frame (tight crops like Pins').
            batch, borders = zip(*(_with_border(_downscale(images[index], scale), self.border_fraction)
                                   for index, scale in zip(chunk, scales)))
            # min_face_size is in the searched image's pixels; keep it in the original's.
            min_face = max(12, round(self.min_face_size_px * min(scales)))
            # Padding at the bottom right keeps every image's own coordinates: mtcnn 1.0.0's own
            # offset correction pairs offsets with the wrong images when some image has no face.
            rows = self._mtcnn.detect_faces(list(batch), box_format="xyxy", output_type="numpy", postprocess=False,
                                            batch_stack_justification="topleft", min_face_size=min_face)
            for row in np.asarray(rows, dtype=np.float64).reshape(-1, 16):
                position = int(row[0])
                index, scale, border = chunk[position], scales[position], borders[position]
                height, width = images[index].shape[:2]
                x1, x2 = np.clip((row[[1, 3]] - border) / scale, 0, width)
                y1, y2 = np.clip((row[[2, 4]] - border) / scale, 0, height)
                # MTCNN's numpy rows: image, x1, y1, x2, y2, confidence, five x's, then five y's.
                landmarks = (row[6:16].reshape(2, 5).T - border) / scale
                results[index].append(Face(box=(x1, y1, x2 - x1, y2 - y1), landmarks=landmarks,
                                           confidence=float(row[5])))
        return [sorted(faces, key=lambda face: -face.area_px) for faces in results]


def _with_border(image: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    """The image inside a black frame `fraction` of its longest side wide, and the frame's width."""
    border = round(fraction * max(image.shape[:2]))
    if border == 0:
        return image, 0
    return np.pad(image, ((border, border), (border, border), (0, 0))), border


def _downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """The image shrunk by `scale` (anti-aliased), or itself when scale is 1."""
    if scale >= 1.0:
        return image
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def choose_face(faces: Sequence[Face], min_confidence: float) -> tuple[str, Face | None]:
    """The face a training image stands for, and why: ok, several_faces (largest kept), no_face, low_confidence."""
    if not faces:
        return "no_face", None
    confident = [face for face in faces if face.confidence >= min_confidence]
    if not confident:
        return "low_confidence", None
    largest = max(confident, key=lambda face: face.area_px)
    return ("several_faces" if len(confident) > 1 else "ok"), largest
