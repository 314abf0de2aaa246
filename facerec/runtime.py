"""Device-dependent training set-up: seeds, determinism, mixed precision, distribution strategy."""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


def configure_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TF; optionally force deterministic kernels (slower on GPU)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def configure_mixed_precision(setting: str) -> bool:
    """auto = float16 compute when a GPU is visible (the model keeps a float32 softmax)."""
    enabled = setting == "on" or (setting == "auto" and bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    return enabled


def distribution_strategy() -> tf.distribute.Strategy:
    """Several machines via TF_CONFIG, several local GPUs, or the default single device."""
    if os.environ.get("TF_CONFIG"):
        cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        log.info("TF_CONFIG found: multi-worker training over %d workers", len(cluster.get("worker", [])))
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("%d GPUs visible: mirrored training", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True on the one process that writes outputs (worker 0, or the only process)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and int(task.get("index", 0)) == 0
