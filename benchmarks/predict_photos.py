"""Benchmark (not a test): `python -m facerec.predict` on group photos — seconds per photo, faces found.

Composes group photos from Pins images (FACES_PER_PHOTO people of different identities on one
canvas, at different sizes) under /tmp, and a ResNet50 (weights none, 224 px) saved the way the
train stage saves it, with the faces params of params.yaml in its card: the timing and the
detection do not depend on what the weights learned, so no training is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import load_average
from PIL import Image

from facerec.config import read_params

CANVAS_PX = (1600, 900)


def compose(raw_dir: Path, photos: int, faces_per_photo: int, seed: int, out_dir: Path) -> list[Path]:
    """Group photos of Pins faces pasted at random sizes without overlap on a grey canvas."""
    rng = np.random.default_rng(seed)
    folders = sorted(path for path in raw_dir.iterdir() if path.is_dir())
    paths = []
    for number in range(photos):
        canvas = Image.new("RGB", CANVAS_PX, (120, 120, 120))
        chosen = rng.choice(len(folders), faces_per_photo, replace=False)
        slot_px = CANVAS_PX[0] // faces_per_photo
        for slot, folder_index in enumerate(chosen):
            files = sorted(folders[folder_index].glob("*.jpg"))
            with Image.open(files[rng.integers(len(files))]) as face:
                height = int(rng.integers(120, 320))
                face = face.convert("RGB").resize((round(face.width * height / face.height), height))
            top = int(rng.integers(0, CANVAS_PX[1] - height))
            canvas.paste(face, (slot * slot_px + (slot_px - face.width) // 2, top))
        paths.append(out_dir / f"group_{number:02d}.jpg")
        canvas.save(paths[-1], quality=92)
    return paths


def save_untrained_model(model_dir: Path, faces: dict, classes: int) -> None:
    """A model folder as the train stage writes it: model.keras, labels.json, model_card.json."""
    from dataclasses import replace

    from facerec.config import load_config
    from facerec.model import build_model

    model_dir.mkdir(parents=True)
    train = replace(load_config().train, weights="none", image_size=224)
    build_model(train, classes, seed=0).save(model_dir / "model.keras")
    (model_dir / "labels.json").write_text(json.dumps([f"person {index}" for index in range(classes)]))
    (model_dir / "model_card.json").write_text(json.dumps({"faces": faces}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True, help="extracted Pins mirror (identity folders)")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--faces-per-photo", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from facerec.predict import main as predict

    faces = read_params(Path(__file__).resolve().parents[1] / "params.yaml")["faces"]
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as scratch:
        scratch = Path(scratch)
        (scratch / "photos").mkdir()
        photos = compose(args.raw_dir, args.photos, args.faces_per_photo, args.seed, scratch / "photos")
        save_untrained_model(scratch / "models", faces, classes=105)
        argv = [*map(str, photos), "--model", str(scratch / "models/model.keras"), "--json", "--threshold", "0"]
        load_before = load_average()
        runs = []
        for _ in range(2):  # the first run includes TensorFlow's tracing; both are reported
            output = io.StringIO()
            started = time.monotonic()
            with contextlib.redirect_stdout(output):
                predict(argv)
            runs.append(time.monotonic() - started)
        results = json.loads(output.getvalue())
        found = [len(result["faces"]) for result in results]
        report = {"photos": len(photos), "canvas_px": CANVAS_PX, "faces_per_photo": args.faces_per_photo,
                  "faces_found_per_photo": found, "faces_found": sum(found),
                  "faces_present": len(photos) * args.faces_per_photo,
                  "seconds_per_photo_incl_model_load": [round(seconds / len(photos), 2) for seconds in runs],
                  "photos_per_second": [round(len(photos) / seconds, 2) for seconds in runs],
                  "faces_params": faces, "load_average_before": load_before, "load_average_after": load_average()}
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
