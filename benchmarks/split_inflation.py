"""Benchmark (not a test): how much test accuracy the random split gains from duplicates on Pins.

Same identities, images, model, seed and wall-clock budget; only split.strategy differs
(grouped: duplicate groups share a split; random: images one by one, duplicates ignored). Reports
test accuracy with 95 % Wilson intervals, their difference with a Newcombe interval, and the
accuracy on test images that have a duplicate in training. Extracts under /tmp, never into the
project.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import DEFAULT_MIRROR, load_average
from benchmarks.train_real_faces import TimeBudget, extract_identities
from facerec.config import load_config
from facerec.data import make_dataset
from facerec.fingerprints import compute_fingerprints
from facerec.evaluation import wilson_interval
from facerec.model import build_model
from facerec.runtime import configure_determinism
from facerec.split import split_manifest
from facerec.training import fit_phases

log = logging.getLogger("benchmarks.split_inflation")


def mirror_manifest(raw_dir: Path, identities: int) -> pd.DataFrame:
    """Manifest rows (path, identity, sha256, status ok) of the first `identities` folders by name."""
    folders = sorted(path for path in raw_dir.iterdir() if path.is_dir())[:identities]
    paths = sorted(path for folder in folders for path in folder.rglob("*.jpg"))
    return pd.DataFrame({
        "path": [path.relative_to(raw_dir).as_posix() for path in paths],
        "identity": [path.parent.name.removeprefix("pins_") for path in paths],
        "sha256": [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths],
        "status": "ok",
    })


def difference_interval(first: tuple[int, int], second: tuple[int, int]) -> tuple[float, float]:
    """Newcombe's 95 % interval for p1 - p2 of two independent proportions (successes, trials)."""
    (hits1, n1), (hits2, n2) = first, second
    p1, p2 = hits1 / n1, hits2 / n2
    (low1, high1), (low2, high2) = wilson_interval(hits1, n1), wilson_interval(hits2, n2)
    difference = p1 - p2
    return (difference - float(np.hypot(p1 - low1, high2 - p2)), difference + float(np.hypot(high1 - p1, p2 - low2)))


def train_and_score(splits: dict[str, pd.DataFrame], raw_dir: Path, args, seed: int) -> dict:
    """Train the default recipe (weights none) under the budget; score the test split."""
    configure_determinism(seed, deterministic=False)
    labels = sorted(splits["train"]["identity"].unique())
    data = {name: make_dataset(splits[name], raw_dir, labels, image_size_px=args.image_size, batch_size=32,
                               shuffle=name == "train", seed=seed, cache="memory")
            for name in ("train", "val", "test")}
    train = replace(load_config().train, weights="none", image_size=args.image_size)
    model = build_model(train, len(labels), seed=seed)
    budget = args.budget_minutes * 60
    started = time.monotonic()
    outcome = fit_phases(model, data["train"], data["val"], train,
                         [TimeBudget([budget * args.phase1_share, budget * (1 - args.phase1_share)])])
    seconds = time.monotonic() - started
    predicted = model.predict(data["test"], verbose=0).argmax(axis=1)
    test = splits["test"]
    correct = predicted == test["identity"].map({name: index for index, name in enumerate(labels)}).to_numpy()
    # A test image "leaks" when a duplicate of it (same group) is in the training split.
    leaked = test["group"].isin(set(splits["train"]["group"])).to_numpy()
    hits, trials = int(correct.sum()), len(test)
    return {
        "train_images": len(splits["train"]), "test_images": trials, "epochs": outcome.epochs_completed,
        "train_seconds": round(seconds), "test_correct": hits,
        "test_accuracy": round(hits / trials, 4), "test_accuracy_ci95": [round(v, 4) for v in wilson_interval(hits, trials)],
        "test_images_with_duplicate_in_train": int(leaked.sum()),
        "accuracy_on_those": round(float(correct[leaked].mean()), 4) if leaked.any() else None,
        "accuracy_on_the_rest": round(float(correct[~leaked].mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="the Pins archive")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/facerec-split-inflation"))
    parser.add_argument("--identities", type=int, default=20, help="the first N identities by folder name")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="training wall clock per run, both phases")
    parser.add_argument("--phase1-share", type=float, default=0.6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--out", type=Path, default=Path("/tmp/facerec-split-inflation/result.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw_dir = extract_identities(args.mirror, args.work_dir, args.identities)
    manifest = mirror_manifest(raw_dir, args.identities)
    fingerprints = compute_fingerprints([raw_dir / path for path in manifest["path"]])
    runs = []
    for seed in args.seeds:
        for strategy in ("grouped", "random"):
            config = replace(load_config().split, strategy=strategy)
            result = split_manifest(manifest, raw_dir, config, seed, fingerprints=fingerprints)
            scored = train_and_score(result.splits, raw_dir, args, seed)
            leak = {key: result.report[key] for key in ("groups_in_several_splits", "exact_pairs_across_splits",
                                                        "near_pairs_across_splits")}
            runs.append({"seed": seed, "strategy": strategy, **leak, **scored})
            log.info("%s", json.dumps(runs[-1]))
    comparisons = []
    for seed in args.seeds:
        grouped, spread = (next(run for run in runs if run["seed"] == seed and run["strategy"] == name)
                           for name in ("grouped", "random"))
        low, high = difference_interval((spread["test_correct"], spread["test_images"]),
                                        (grouped["test_correct"], grouped["test_images"]))
        comparisons.append({"seed": seed, "random_minus_grouped": round(spread["test_accuracy"] - grouped["test_accuracy"], 4),
                            "ci95": [round(low, 4), round(high, 4)]})
    report = {"identities": args.identities, "image_size_px": args.image_size, "budget_minutes": args.budget_minutes,
              "runs": runs, "comparisons": comparisons, "load_average_1_5_15": load_average()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("%s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
