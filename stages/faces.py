"""DVC stage: detect and align the face in every image (faces.detector: mtcnn), or pass through (none)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from facerec.atomic import atomic_dir, write_csv, write_json
from facerec.config import FacesConfig, load_config
from facerec.face_data import STATUSES
from facerec.image_store import open_images
from facerec.manifests import BOX_COLUMNS, FACES_COLUMNS, LANDMARK_COLUMNS, read_manifest
from facerec.stage_runner import run_stage
from facerec.verify import open_rgb

log = logging.getLogger("facerec.faces")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces-dir", type=Path, required=True,
                        help="aligned crops at the raw images' relative paths (empty with detector none)")
    parser.add_argument("--faces", type=Path, required=True, help="CSV: one row per image, its face and status")
    parser.add_argument("--metrics", type=Path, required=True)
    return parser.parse_args()


def face_row(path: str, identity: str, status: str, detected: int, face) -> dict:
    """One faces.csv row; box and landmarks in the raw image's pixels, empty without a kept face."""
    row = {"path": path, "identity": identity, "status": status, "faces_detected": detected}
    if face is None:
        return {**row, "confidence": np.nan, **{column: np.nan for column in BOX_COLUMNS + LANDMARK_COLUMNS}}
    return {**row, "confidence": round(face.confidence, 5),
            **{column: round(float(value), 2) for column, value in zip(BOX_COLUMNS, face.box)},
            **{column: round(float(value), 2) for column, value in zip(LANDMARK_COLUMNS, face.landmarks.ravel())}}


def save_crop(crop: np.ndarray, path: Path) -> None:
    """Write a crop under the raw image's relative path: PNG if it is named .png, else JPEG.

    The format is chosen here, not from the name: a raw image may have any suffix or none (verify
    accepts by content), and a .gif crop would lose its colours to a palette. The decoders
    downstream read by content.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(crop).save(path, format=image_format, quality=95)


def detect_and_align(images: pd.DataFrame, raw_at: Path, out_dir: Path, config: FacesConfig) -> pd.DataFrame:
    """Detect faces in batches, write the kept face of each image aligned, return the faces.csv rows.

    `raw_at` is the packed dataset or a folder, both keyed by the images' paths.
    """
    from facerec.faces import Alignment, FaceDetector, align_face, choose_face

    detector = FaceDetector(min_face_size_px=config.min_face_size_px, batch_size=config.batch_size,
                            max_side_px=config.max_side_px, border_fraction=config.border_fraction)
    alignment = Alignment(config.crop_size_px, config.margin_fraction)
    raw = open_images(raw_at)
    rows = []
    with tqdm(total=len(images), unit="image", desc="faces") as progress:
        for start in range(0, len(images), config.batch_size):
            batch = images.iloc[start:start + config.batch_size]
            pixels = [np.asarray(open_rgb(raw.open(path))) for path in batch["path"]]
            for (path, identity), photo, faces in zip(batch[["path", "identity"]].itertuples(index=False),
                                                      pixels, detector.detect(pixels)):
                status, face = choose_face(faces, config.min_confidence)
                if face is not None:
                    save_crop(align_face(photo, face.landmarks, alignment), out_dir / path)
                rows.append(face_row(path, identity, status, len(faces), face))
            progress.update(len(batch))
    return pd.DataFrame(rows, columns=FACES_COLUMNS)


def summary(faces: pd.DataFrame, images: int, seconds: float) -> dict:
    """metrics/faces.json: how many images kept a face, and why the others did not."""
    counts = faces["status"].value_counts()
    count = {status: int(counts.get(status, 0)) for status in STATUSES}
    return {"images": images, "faces_found": count["ok"] + count["several_faces"], "no_face": count["no_face"],
            "several_faces": count["several_faces"], "low_confidence": count["low_confidence"],
            "images_per_second": round(images / max(seconds, 1e-9), 2)}


def main() -> None:
    args = parse_args()
    config = load_config().faces
    manifest = read_manifest(args.manifest)
    images = manifest.loc[manifest["status"] == "ok", ["path", "identity"]].reset_index(drop=True)
    started = time.monotonic()
    with atomic_dir(args.faces_dir) as staging:
        if config.detects:
            faces = detect_and_align(images, args.raw, staging, config)
        else:
            # Nothing to do: later stages read data/raw directly (docs/faces.md), so no image is copied.
            faces = pd.DataFrame(columns=FACES_COLUMNS)
    seconds = time.monotonic() - started
    write_csv(args.faces, faces)
    metrics = summary(faces, len(images), seconds) if config.detects else {"images": len(images)}
    write_json(args.metrics, metrics)
    if config.detects:
        log.info("Faces kept for %d of %d images (%d without a face, %d several, %d low confidence) at %.1f "
                 "images/s; aligned crops in %s", metrics["faces_found"], len(images), metrics["no_face"],
                 metrics["several_faces"], metrics["low_confidence"], metrics["images_per_second"], args.faces_dir)
    else:
        log.info("faces.detector is none: later stages read the %d images in %s as they are", len(images),
                 args.raw)


if __name__ == "__main__":
    run_stage(main)
