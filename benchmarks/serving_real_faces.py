"""Benchmark (not a test): enrolment and exported formats on a model trained on real faces.

Extracts a few Pins identities under /tmp (never into the project), holds the last ones out,
trains the default recipe (weights none) within a wall-clock budget, then measures what
evaluate's `enrolment` block and the export stage's metrics measure, with the same library code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.train_real_faces import TimeBudget, extract_identities, split_frame
from facerec.config import load_config
from facerec.data import label_ids, make_dataset
from facerec.enrolment import enrolment_metrics
from facerec.export import (
    agreement,
    inference_network,
    load_onnx,
    load_saved_model,
    load_tflite,
    run_batches,
    size_bytes,
    speed,
    write_onnx,
    write_saved_model,
    write_tflite,
)
from facerec.gallery import known_gallery, l2_normalise
from facerec.model import build_model
from facerec.predict import load_classifier, predict_frame_with_features
from facerec.runtime import configure_determinism
from facerec.training import fit_phases

log = logging.getLogger("benchmarks.serving_real_faces")


def train(frames, raw_dir: Path, labels: list[str], args, model_dir: Path) -> None:
    """The default recipe (weights none) within the budget, saved as the train stage saves it."""
    data = {name: make_dataset(frames[name], raw_dir, labels, image_size_px=args.image_size, batch_size=32,
                               shuffle=name == "train", seed=args.seed, cache="memory") for name in ("train", "val")}
    config = replace(load_config().train, weights="none", image_size=args.image_size)
    model = build_model(config, len(labels), seed=args.seed)
    budget = args.budget_minutes * 60
    fit_phases(model, data["train"], data["val"], config, [TimeBudget([budget * 0.6, budget * 0.4])])
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / "model.keras")
    (model_dir / "labels.json").write_text(json.dumps(labels), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archive", type=Path, default=Path("/work/shared/data/pins-face-recognition-160.zip"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/facerec-real-faces"))
    parser.add_argument("--identities", type=int, default=12, help="the last --held-out of them are enrolled")
    parser.add_argument("--held-out", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--budget-minutes", type=float, default=6.0)
    parser.add_argument("--enrol-images", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_determinism(args.seed, deterministic=False)
    raw_dir = extract_identities(args.archive, args.work_dir, args.identities)
    frames = split_frame(raw_dir, args.seed)
    names = sorted(frames["train"]["identity"].unique())
    labels, held_out = names[:-args.held_out], names[-args.held_out:]
    # The held-out people's photos from every split play evaluate's unknown.csv.
    unknown = pd.concat([frame[frame["identity"].isin(held_out)] for frame in frames.values()], ignore_index=True)
    frames = {name: frame[~frame["identity"].isin(held_out)] for name, frame in frames.items()}
    model_dir = Path(tempfile.mkdtemp(prefix="serving-", dir=args.work_dir))
    started = time.monotonic()
    train(frames, raw_dir, labels, args, model_dir)
    classifier = load_classifier(model_dir / "model.keras")
    outputs = {name: predict_frame_with_features(classifier, frame, raw_dir, 64)
               for name, frame in {"val": frames["val"], "test": frames["test"], "unknown": unknown}.items()}
    gallery = known_gallery(l2_normalise(outputs["val"][2]), label_ids(frames["val"]["identity"], labels), labels,
                            0.95, "benchmark")
    enrolment = enrolment_metrics(gallery, unknown, l2_normalise(outputs["unknown"][2]),
                                  l2_normalise(outputs["test"][2]), args.enrol_images, args.seed)
    true_ids = label_ids(frames["test"]["identity"], labels)
    images = np.concatenate([batch.numpy() for batch, _ in make_dataset(
        frames["test"], raw_dir, labels, image_size_px=args.image_size, batch_size=64, shuffle=False, seed=0)])
    reference = outputs["test"][0]
    network = inference_network(classifier.model)
    exported = {"keras": {"accuracy": round(float(np.mean(reference.argmax(1) == true_ids)), 4),
                          **speed(network.predict_on_batch, images, 64, 32)}}
    writers = {"saved_model": (lambda path: write_saved_model(network, path), load_saved_model, "saved_model"),
               "tflite": (lambda path: write_tflite(network, path, "dynamic_range"), load_tflite, "model.tflite"),
               "tflite_float16": (lambda path: write_tflite(network, path, "float16"), load_tflite, "f16.tflite"),
               "onnx": (lambda path: write_onnx(network, path), load_onnx, "model.onnx")}
    for name, (write, load, file_name) in writers.items():
        write(model_dir / file_name)
        runner = load(model_dir / file_name)
        exported[name] = {**agreement(reference, run_batches(runner, images, 32)["probabilities"], true_ids),
                          "bytes": size_bytes(model_dir / file_name), **speed(runner, images, 64, 32)}
    result = {"identities_trained": len(labels), "held_out": held_out, "image_size_px": args.image_size,
              "test_images": len(images), "val_cosine_threshold": gallery.threshold, "enrolment": enrolment,
              "export": exported, "seconds": round(time.monotonic() - started),
              "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()], "work_dir": str(model_dir)}
    log.info("%s", json.dumps(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
