"""Face embeddings: the classifier head's features before its softmax, L2-normalised.

Two photos of one person point the same way in this space whether or not the person was
among the trained identities, so cosine similarity compares faces the model never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facerec.gallery import l2_normalise
from facerec.predict import Classifier, decode_files, predict_frame_with_features


def embed_images(classifier: Classifier, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Unit-length embeddings of a batch of uint8 RGB images already at the model's size."""
    return l2_normalise(classifier.predict_with_features(images, batch_size)[2])


def embed_files(classifier: Classifier, files: list[Path], batch_size: int = 32):
    """(decoded paths, their embeddings, [(path, reason)] for files that could not be read)."""
    decoded, images, errors = decode_files(files, classifier.image_size_px)
    if not images:
        return decoded, np.zeros((0, classifier.network.outputs[1].shape[-1]), np.float32), errors
    return decoded, embed_images(classifier, np.stack(images), batch_size), errors


def embed_frame(classifier: Classifier, frame: pd.DataFrame, images_at: Path, batch_size: int) -> np.ndarray:
    """Unit-length embeddings of every row of a split manifest, in its order."""
    return l2_normalise(predict_frame_with_features(classifier, frame, images_at, batch_size)[2])


def embed_faces(classifier: Classifier, finder, files: list[Path], batch_size: int = 32):
    """Like embed_files, but of the largest face in each photo, detected and aligned as predict does.

    A photo without a face, or with several, is reported with a reason; with several, the largest
    face is used (the person being enrolled is usually the one the photo is of).
    """
    from facerec.photo_faces import read_photos  # the detector loads only when photos are to be searched

    paths, photos, errors = read_photos(files)
    kept, crops, notes = [], [], list(errors)
    for path, photo, faces in zip(paths, photos, finder.find(photos), strict=True):
        if not faces:
            notes.append((path, "no face found; pass --no-detect if the photos are already face crops"))
            continue
        if len(faces) > 1:
            notes.append((path, f"{len(faces)} faces found; the largest is used"))
        crops.append(finder.crops(photo, faces[:1], classifier.image_size_px)[0])
        kept.append(path)
    if not crops:
        return kept, np.zeros((0, classifier.network.outputs[1].shape[-1]), np.float32), notes
    return kept, embed_images(classifier, np.stack(crops), batch_size), notes
