"""Benchmark: training images/s of phase 1 (frozen base) and phase 2 (fine-tuning the top), CPU or GPU."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace

import numpy as np
import tensorflow as tf

from facerec.config import load_config
from facerec.model import build_model
from facerec.training import compile_model, unfreeze_top

log = logging.getLogger("benchmarks.train_throughput")


def images_per_second(model, batch_size: int, image_size_px: int, steps: int) -> float:
    """Time `steps` training steps after one untimed step (graph tracing)."""
    rng = np.random.default_rng(0)
    batch = (rng.integers(0, 256, (batch_size, image_size_px, image_size_px, 3)).astype("uint8"),
             rng.integers(0, 10, batch_size))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fine-tune-from", help="first layer of phase 2 (default: train.fine_tune_from)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The project's train section (params.yaml), without pretrained weights, at the benchmark's size.
    train = replace(load_config().train, weights="none", image_size=args.image_size)
    args.fine_tune_from = args.fine_tune_from or train.fine_tune_from
    model = build_model(train, 10, seed=0)
    compile_model(model, train.learning_rate, train)
    phase1 = images_per_second(model, args.batch_size, args.image_size, args.steps)
    unfreeze_top(model, args.fine_tune_from)
    compile_model(model, train.fine_tune_learning_rate, train)
    phase2 = images_per_second(model, args.batch_size, args.image_size, args.steps)
    result = {"image_size_px": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
              "phase1_frozen_img_per_s": round(phase1, 1),
              f"phase2_from_{args.fine_tune_from}_img_per_s": round(phase2, 1),
              "devices": [device.name for device in tf.config.list_logical_devices()],
              "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()]}
    log.info("%s", json.dumps(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
