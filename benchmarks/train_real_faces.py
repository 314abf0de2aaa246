"""Benchmark (not a test): does the default recipe learn real faces without ImageNet weights, in bounded time?

Extracts a few identities of the Pins archive under /tmp (never into the project), splits
them 70/15/15 per identity with the seed, trains phase 1 then phase 2 until a wall-clock
budget runs out, and reports val/test accuracy against chance.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import keras
import pandas as pd

from facerec.config import load_config
from facerec.data import make_dataset
from facerec.model import build_model
from facerec.runtime import configure_determinism
from facerec.training import fit_phases

log = logging.getLogger("benchmarks.train_real_faces")


class TimeBudget(keras.callbacks.Callback):
    """Stop each fit() once its share of the wall-clock budget is spent (phase 1 gets the first share)."""

    def __init__(self, seconds_per_fit: list[float]):
        super().__init__()
        self.seconds_per_fit, self.deadline = list(seconds_per_fit), 0.0

    def on_train_begin(self, logs=None):
        self.deadline = time.monotonic() + (self.seconds_per_fit.pop(0) if self.seconds_per_fit else 0)

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


def extract_identities(archive: Path, work_dir: Path, identities: int) -> Path:
    """Unzip the first `identities` folders (by name) into `work_dir`; reuse an earlier extraction."""
    with zipfile.ZipFile(archive) as bundle:
        names = [name for name in bundle.namelist() if name.lower().endswith((".jpg", ".jpeg", ".png"))]
        folders = sorted({Path(name).parent.as_posix() for name in names})[:identities]
        wanted = [name for name in names if Path(name).parent.as_posix() in folders]
        missing = [name for name in wanted if not (work_dir / name).is_file()]
        bundle.extractall(work_dir, members=missing)
    return work_dir / Path(folders[0]).parent


def split_frame(raw_dir: Path, seed: int) -> dict[str, pd.DataFrame]:
    """Seeded 70/15/15 split within each identity (a manifest, no copying)."""
    rows = [{"path": path.relative_to(raw_dir).as_posix(), "identity": path.parent.name.removeprefix("pins_")}
            for path in sorted(raw_dir.rglob("*.jpg"))]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    position = frame.groupby("identity").cumcount() / frame.groupby("identity")["path"].transform("count")
    return {"train": frame[position < 0.7], "val": frame[(position >= 0.7) & (position < 0.85)],
            "test": frame[position >= 0.85]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archive", type=Path, default=Path("/work/shared/data/pins-face-recognition-160.zip"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/facerec-real-faces"))
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--budget-minutes", type=float, default=7.0, help="training wall clock, both phases")
    parser.add_argument("--phase1-share", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_determinism(args.seed, deterministic=False)
    raw_dir = extract_identities(args.archive, args.work_dir, args.identities)
    frames = split_frame(raw_dir, args.seed)
    labels = sorted(frames["train"]["identity"].unique())
    data = {name: make_dataset(frame, raw_dir, labels, image_size_px=args.image_size, batch_size=32,
                               shuffle=name == "train", seed=args.seed, cache="memory")
            for name, frame in frames.items()}
    # The default recipe from params.yaml, except weights none (no internet for ImageNet here).
    train = replace(load_config().train, weights="none", image_size=args.image_size)
    model = build_model(train, len(labels), seed=args.seed)
    budget = args.budget_minutes * 60
    started = time.monotonic()
    outcome = fit_phases(model, data["train"], data["val"], train,
                         [TimeBudget([budget * args.phase1_share, budget * (1 - args.phase1_share)])])
    seconds = time.monotonic() - started
    counts = frames["train"]["identity"].value_counts()
    result = {
        "identities": len(labels), "image_size_px": args.image_size,
        "images": {name: len(frame) for name, frame in frames.items()},
        "phase1_epochs": outcome.phase1_epochs, "epochs_total": outcome.epochs_completed,
        "train_seconds": round(seconds), "chance_accuracy": round(1 / len(labels), 3),
        "majority_class_test_accuracy": round(float((frames["test"]["identity"] == counts.index[0]).mean()), 3),
        **{f"{name}_accuracy": round(float(model.evaluate(data[name], verbose=0, return_dict=True)["accuracy"]), 3)
           for name in ("val", "test")},
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
    }
    log.info("%s", json.dumps(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
