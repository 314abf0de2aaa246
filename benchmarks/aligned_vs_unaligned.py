"""Benchmark (not a test): does training on aligned faces beat the raw Pins crops, at CPU scale?

The same images (the first N identities whose face the faces stage kept), the same seeded split,
the same recipe (weights none) and the same wall-clock budget; only the pixels differ: the Pins
crop as downloaded vs the MTCNN-aligned crop. Both arms train at once, one thread each, so the
shared machine's load falls on both alike. Reports test accuracy with 95 % Wilson intervals and
an exact McNemar test on the paired test predictions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

log = logging.getLogger("benchmarks.aligned_vs_unaligned")
ARMS = ("unaligned", "aligned")


def split_frame(raw_dir: Path, crops_dir: Path, identities: int, seed: int) -> dict[str, pd.DataFrame]:
    """Seeded 70/15/15 within each of the first identities, over images that have an aligned crop."""
    folders = sorted(path for path in raw_dir.iterdir() if path.is_dir())[:identities]
    rows = [{"path": path.relative_to(raw_dir).as_posix(), "identity": folder.name.removeprefix("pins_")}
            for folder in folders for path in sorted(folder.glob("*.jpg"))]
    frame = pd.DataFrame(rows)
    frame = frame[[(crops_dir / path).is_file() for path in frame["path"]]]
    frame = frame.sample(frac=1.0, random_state=seed)
    position = frame.groupby("identity").cumcount() / frame.groupby("identity")["path"].transform("count")
    return {"train": frame[position < 0.7], "val": frame[(position >= 0.7) & (position < 0.85)],
            "test": frame[position >= 0.85].sort_values("path")}


def train_arm(args) -> dict:
    """Train one arm within the budget; return its accuracies and its test predictions."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from train_real_faces import TimeBudget

    from dataclasses import replace

    from facerec.config import load_config
    from facerec.data import make_dataset
    from facerec.model import build_model
    from facerec.runtime import configure_determinism
    from facerec.training import fit_phases

    configure_determinism(args.seed, deterministic=False)
    frames = split_frame(args.raw_dir, args.crops_dir, args.identities, args.seed)
    images_dir = args.crops_dir if args.arm == "aligned" else args.raw_dir
    labels = sorted(frames["train"]["identity"].unique())
    data = {name: make_dataset(frame, images_dir, labels, image_size_px=args.image_size, batch_size=32,
                               shuffle=name == "train", seed=args.seed, cache="memory")
            for name, frame in frames.items()}
    # The default recipe from params.yaml, except weights none (no internet for ImageNet here).
    train = replace(load_config().train, weights="none", image_size=args.image_size)
    model = build_model(train, len(labels), seed=args.seed)
    budget = args.budget_minutes * 60
    started = time.monotonic()
    outcome = fit_phases(model, data["train"], data["val"], train, [TimeBudget([budget * 0.6, budget * 0.4])])
    seconds = time.monotonic() - started
    predicted = model.predict(data["test"], verbose=0).argmax(axis=1)
    truth = frames["test"]["identity"].map({name: index for index, name in enumerate(labels)}).to_numpy()
    return {"arm": args.arm, "identities": len(labels), "images": {name: len(frame) for name, frame in frames.items()},
            "epochs_total": outcome.epochs_completed, "phase1_epochs": outcome.phase1_epochs,
            "train_seconds": round(seconds),
            "val_accuracy": round(float(model.evaluate(data["val"], verbose=0, return_dict=True)["accuracy"]), 4),
            "test_correct": [bool(value) for value in predicted == truth]}


def compare(results: dict[str, dict]) -> dict:
    """Accuracy with Wilson intervals per arm, and an exact McNemar test on the discordant test images."""
    from facerec.evaluation import wilson_interval

    report = {}
    for arm, result in results.items():
        correct, total = sum(result["test_correct"]), len(result["test_correct"])
        low, high = wilson_interval(correct, total)
        report[arm] = {**{key: value for key, value in result.items() if key != "test_correct"},
                       "test_accuracy": round(correct / total, 4), "test_accuracy_95ci": [round(low, 4), round(high, 4)],
                       "test_images": total}
    pairs = list(zip(results["aligned"]["test_correct"], results["unaligned"]["test_correct"]))
    only_aligned = sum(1 for aligned, raw in pairs if aligned and not raw)
    only_unaligned = sum(1 for aligned, raw in pairs if raw and not aligned)
    discordant = only_aligned + only_unaligned
    p_value = binomtest(only_aligned, discordant, 0.5).pvalue if discordant else 1.0
    report["paired"] = {"only_aligned_right": only_aligned, "only_unaligned_right": only_unaligned,
                        "mcnemar_exact_p": round(float(p_value), 4)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True, help="extracted Pins mirror (identity folders)")
    parser.add_argument("--crops-dir", type=Path, required=True,
                        help="aligned crops at the same relative paths (benchmarks/faces_stage.py --out-dir X → X/crops)")
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--budget-minutes", type=float, default=12.0, help="training wall clock per arm")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--arm", choices=ARMS, help="train one arm and print its JSON (used internally)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.arm:
        print(json.dumps(train_arm(args)))
        return
    load_before = [round(load, 2) for load in os.getloadavg()]
    arms = {arm: subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--arm", arm], stdout=subprocess.PIPE,
                                  text=True) for arm in ARMS}
    results = {}
    for arm, process in arms.items():
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"arm {arm} failed with exit status {process.returncode}")
        results[arm] = json.loads(out.strip().splitlines()[-1])
    report = {**compare(results), "image_size_px": args.image_size, "budget_minutes": args.budget_minutes,
              "load_average_before": load_before, "load_average_after": [round(load, 2) for load in os.getloadavg()]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
