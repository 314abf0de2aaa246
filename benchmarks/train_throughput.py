"""Benchmark: training images/s of phase 1 (frozen base) and phase 2 (fine-tuning the top), CPU or GPU."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from facerec.model import ModelConfig, build_model
from facerec.training import PhaseSchedule, compile_model, unfreeze_top

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
    parser.add_argument("--fine-tune-from", default="conv5_block1_1_conv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = build_model(ModelConfig(num_classes=10, image_size_px=args.image_size, weights="none"))
    schedule = PhaseSchedule(epochs=1, learning_rate=1e-3, label_smoothing=0.1, weight_decay=0.004)
    compile_model(model, 1e-3, schedule)
    phase1 = images_per_second(model, args.batch_size, args.image_size, args.steps)
    unfreeze_top(model, args.fine_tune_from)
    compile_model(model, 1e-4, schedule)
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
