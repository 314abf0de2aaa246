"""Benchmark (not a test): the faces stage's code (MTCNN + alignment) on the Pins mirror.

Reports faces found of all images, the status counts, images/s, and writes a contact sheet of
images without a found face (to look at by eye) next to the crops, all under a /tmp folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import extract_mirror, load_average, mirror_argument
from PIL import Image

from facerec.config import FacesConfig, read_params
from stages.faces import detect_and_align, summary


def contact_sheet(paths: list[Path], target: Path, columns: int = 12, thumb_px: int = 120) -> None:
    """Thumbnails in a grid (first images of the list), as one PNG."""
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * thumb_px, rows * thumb_px), "white")
    for position, path in enumerate(paths):
        thumb = Image.open(path).convert("RGB")
        thumb.thumbnail((thumb_px, thumb_px))
        sheet.paste(thumb, ((position % columns) * thumb_px, (position // columns) * thumb_px))
    sheet.save(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--raw-dir", type=Path, help="an already extracted mirror (its identity folders)")
    parser.add_argument("--out-dir", type=Path, help="keep crops and faces.csv here (default: a temporary folder)")
    parser.add_argument("--every", type=int, default=1, help="take every N-th image (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    section = {**read_params(Path(__file__).resolve().parents[1] / "params.yaml")["faces"], "detector": "mtcnn"}
    config = FacesConfig.from_params(section)
    with tempfile.TemporaryDirectory(prefix="faces-bench-") as scratch:
        raw_dir = args.raw_dir or extract_mirror(args.mirror, Path(scratch))
        out_dir = args.out_dir or Path(scratch) / "faces"
        paths = sorted(path.relative_to(raw_dir).as_posix() for path in raw_dir.rglob("*.jpg"))[::args.every]
        images = pd.DataFrame({"path": paths, "identity": [path.split("/")[0].removeprefix("pins_") for path in paths]})
        started, load_before = time.monotonic(), load_average()
        faces = detect_and_align(images, raw_dir, out_dir / "crops", config)
        seconds = time.monotonic() - started
        out_dir.mkdir(parents=True, exist_ok=True)
        faces.to_csv(out_dir / "faces.csv", index=False)
        missing = faces.loc[faces["status"].isin(["no_face", "low_confidence"]), "path"]
        sample = missing.sample(min(48, len(missing)), random_state=0).sort_values() if len(missing) else missing
        contact_sheet([raw_dir / path for path in sample], out_dir / "no_face_examples.png")
        report = {"metrics": summary(faces, len(images), seconds), "seconds": round(seconds, 1),
                  "faces_params": section, "load_average_before": load_before, "load_average_after": load_average(),
                  "detections_per_image": faces["faces_detected"].value_counts().sort_index().to_dict(),
                  "confidence_quantiles": {str(q): round(float(faces["confidence"].quantile(q)), 4)
                                           for q in (0.01, 0.05, 0.5)},
                  "no_face_sheet": str(out_dir / "no_face_examples.png")}
        print(json.dumps(report, indent=1, default=lambda value: int(value) if isinstance(value, np.integer) else value))


if __name__ == "__main__":
    main()
