"""DVC stage: score the trained model on the held-out test split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import keras
import numpy as np
import pandas as pd

import facerec.model  # noqa: F401  registers the custom layers safe_mode needs
import facerec.training  # noqa: F401  registers the label-smoothing loss
from facerec.atomic import write_csv, write_json
from facerec.data import label_ids, load_split, make_dataset
from facerec.evaluation import most_confused_pairs, per_identity_table, plot_confusion, summary_metrics
from facerec.params import load_params, require_range
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.evaluate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True, help="test split CSV (its order is kept)")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots-dir", type=Path, required=True)
    return parser.parse_args()


def predict_split(model: keras.Model, frame: pd.DataFrame, raw_dir: Path, labels: list[str], batch_size: int):
    """Probabilities for every row of `frame`, in its order (no shuffling: rows stay aligned)."""
    image_size_px = model.input_shape[1]
    dataset = make_dataset(frame, raw_dir, labels, image_size_px=image_size_px, batch_size=batch_size,
                           shuffle=False, seed=0)
    return model.predict(dataset.map(lambda images, _: images), verbose=0)


def main() -> None:
    args = parse_args()
    params = load_params()["evaluate"]
    require_range("evaluate.top_k", params["top_k"], 1, 1000, integer=True)
    labels = json.loads((args.model_dir / "labels.json").read_text(encoding="utf-8"))
    model = keras.models.load_model(args.model_dir / "model.keras", safe_mode=True)
    test = load_split(args.test)
    probabilities = predict_split(model, test, args.raw_dir, labels, params["batch_size"])
    true_ids = label_ids(test["identity"], labels)
    predicted = probabilities.argmax(axis=1)

    metrics = summary_metrics(true_ids, probabilities, labels, params["top_k"])
    write_json(args.metrics, metrics)
    args.plots_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.plots_dir / "confusion.csv", pd.DataFrame(
        {"actual": [labels[i] for i in true_ids], "predicted": [labels[i] for i in predicted]}))
    write_csv(args.plots_dir / "per_identity.csv", per_identity_table(true_ids, predicted, labels))
    write_csv(args.plots_dir / "most_confused.csv", most_confused_pairs(true_ids, predicted, labels))
    plot_confusion(true_ids, predicted, labels, args.plots_dir / "confusion.png")
    low, high = metrics["accuracy_ci95"]
    log.info("Test accuracy %.2f %% (95 %% CI %.2f–%.2f %%) on %d images of %d identities; chance %.2f %%",
             100 * metrics["accuracy"], 100 * low, 100 * high, metrics["n_test"], metrics["n_test_identities"],
             100 * metrics["chance_accuracy"])


if __name__ == "__main__":
    run_stage(main)
