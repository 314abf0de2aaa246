"""Recognise every face in photos: detect, crop as in training, classify; draw the result.

The detector and the alignment come from the model card (the `faces` params the model was
trained with), so a photo's faces are cropped the way the training images were.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from facerec.atomic import atomic_path
from facerec.data import resize_square
from facerec.config import FacesConfig
from facerec.faces import Alignment, FaceDetector, align_face
from facerec.verify import open_rgb

log = logging.getLogger("facerec.photo_faces")

CHUNK_PHOTOS = 16  # full-size photos held in memory at once (a 12-megapixel photo is 36 MB)


class FaceFinder:
    """The model's detector and alignment, built from its model card."""

    def __init__(self, config: FacesConfig):
        self.config = config
        self.detector = FaceDetector(min_face_size_px=config.min_face_size_px, batch_size=config.batch_size,
                                     max_side_px=config.max_side_px, border_fraction=config.border_fraction)
        self.alignment = Alignment(config.crop_size_px, config.margin_fraction)

    @classmethod
    def for_model(cls, model_path: Path) -> FaceFinder:
        card_path = Path(model_path).parent / "model_card.json"
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
        if "faces" not in card:
            raise ValueError(f"{card_path} does not say how the model's faces were aligned (trained before face "
                             "detection existed); retrain with `dvc repro train`, or pass --no-detect for crops")
        return cls(FacesConfig.from_params(card["faces"]))

    def find(self, photos: list[np.ndarray]) -> list[list]:
        """Every face at least as confident as the model's faces.min_confidence, largest first."""
        minimum = self.config.min_confidence
        return [[face for face in faces if face.confidence >= minimum] for faces in self.detector.detect(photos)]

    def crops(self, photo: np.ndarray, faces: list, image_size_px: int) -> list[np.ndarray]:
        """Each face cut out as the model's training images were, resized as training resized them.

        A model trained on aligned crops gets aligned crops. One trained on the dataset's own crops
        (`detector: none`: tight, unrotated face boxes) gets the detected box with the margin,
        unrotated: an aligned crop would show it faces framed unlike anything it learned from.
        """
        cut = self._aligned if self.config.detects else self._boxed
        return [resize_square(tf.constant(cut(photo, face)), image_size_px).numpy() for face in faces]

    def _aligned(self, photo: np.ndarray, face) -> np.ndarray:
        return align_face(photo, face.landmarks, self.alignment)

    def _boxed(self, photo: np.ndarray, face) -> np.ndarray:
        x, y, width, height = face.box
        margin_x, margin_y = width * self.config.margin_fraction, height * self.config.margin_fraction
        left, top = max(int(round(x - margin_x)), 0), max(int(round(y - margin_y)), 0)
        right = min(int(round(x + width + margin_x)), photo.shape[1])
        bottom = min(int(round(y + height + margin_y)), photo.shape[0])
        return photo[top:max(bottom, top + 1), left:max(right, left + 1)]


def annotate(photo: np.ndarray, faces: list[dict], target: Path) -> None:
    """Write the photo as PNG with each face's box and predicted name (or `unknown`) drawn on it."""
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    line_px = max(2, round(max(image.size) / 400))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 50)))
    for face in faces:
        x, y, width, height = face["box"]
        colour = "red" if face["prediction"] == "unknown" else "lime"
        draw.rectangle((x, y, x + width, y + height), outline=colour, width=line_px)
        label = f"{face['prediction']} {face['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        # The name sits above the box, or inside it when the box touches the photo's top.
        shift = bottom - top + 2 * line_px if y - (bottom - top) - 2 * line_px >= 0 else -line_px
        draw.rectangle((left, top - shift, right + 2 * line_px, bottom - shift + line_px), fill=colour)
        draw.text((x + line_px, y - shift), label, fill="black", font=font)
    with atomic_path(target) as temp_path:
        image.save(temp_path, format="PNG")


def read_photos(files: list[Path]) -> tuple[list[Path], list[np.ndarray], list[tuple]]:
    """Each readable file upright (EXIF) as H×W×3 uint8; the others as (path, reason)."""
    paths, photos, errors = [], [], []
    for path in files:
        if not path.is_file():
            errors.append((path, "not found" if not path.exists() else "not a file"))
            continue
        try:
            photos.append(np.asarray(open_rgb(path)))
            paths.append(path)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            errors.append((path, f"not a readable image ({type(error).__name__})"))
    return paths, photos, errors


def classify_faces(classifier, finder: FaceFinder, files: list[Path], batch_size: int, name, *,
                   annotate_dir: Path | None) -> list[dict]:
    """Per file, every face found: its box, detection confidence and identity; photos go in batches.

    `name(path, probabilities, logits, features)` turns one face's outputs into its identity result.
    """
    results: list[dict] = []
    annotated_names: set[str] = set()
    for start in range(0, len(files), CHUNK_PHOTOS):
        paths, photos, errors = read_photos(files[start:start + CHUNK_PHOTOS])
        results.extend({"path": str(path), "error": reason} for path, reason in errors)
        found = finder.find(photos)
        crops = [crop for photo, faces in zip(photos, found)
                 for crop in finder.crops(photo, faces, classifier.image_size_px)]
        if crops:
            probabilities, logits, features = classifier.predict_with_features(np.stack(crops), batch_size)
        row = 0
        for path, photo, faces in zip(paths, photos, found):
            described = []
            for face in faces:
                result = name(path, probabilities[row], logits[row], features[row])
                del result["path"]
                described.append({"box": [round(float(value)) for value in face.box],
                                  "detection_confidence": round(face.confidence, 4), **result})
                row += 1
            results.append({"path": str(path), "faces": described})
            if annotate_dir:
                annotate(photo, described, annotate_dir / annotated_name(path, annotated_names))
    return results


def annotated_name(path: Path, taken: set[str]) -> str:
    """`<stem>.png`, numbered when two inputs share a stem."""
    name, number = f"{path.stem}.png", 1
    while name in taken:
        number += 1
        name = f"{path.stem}-{number}.png"
    taken.add(name)
    return name
