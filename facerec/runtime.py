"""Device-dependent training set-up: seeds, determinism, mixed precision, distribution strategy."""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

from facerec.errors import ParamsError

log = logging.getLogger(__name__)


def configure_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TF; optionally force deterministic kernels (slower on GPU)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        # Process-wide and irreversible: ops without a deterministic kernel raise from now on.
        tf.config.experimental.enable_op_determinism()


def mixed_precision_policy(setting: str, gpu_visible: bool) -> str:
    """The Keras dtype policy of train.mixed_precision: auto = float16 compute on a GPU, float32 elsewhere."""
    if setting == "auto":
        return "mixed_float16" if gpu_visible else "float32"
    return {"off": "float32", "on": "mixed_float16", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[setting]


def configure_mixed_precision(setting: str) -> str:
    """Set and return the global dtype policy (the model keeps a float32 augmentation and softmax).

    float16 needs loss scaling (Keras adds it); bfloat16 has float32's range and needs none, but
    only Ampere-class GPUs and newer run it fast.
    """
    policy = mixed_precision_policy(setting, bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy(policy)
    if policy == "mixed_bfloat16" and not tf.config.list_physical_devices("GPU"):
        log.warning("train.mixed_precision = bfloat16 without a GPU: the CPU emulates bfloat16 and trains slower "
                    "than float32; use off on CPU")
    return policy


def _task() -> tuple[dict, dict]:
    """(cluster, task) from TF_CONFIG; both empty when it is not set."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return config.get("cluster", {}), config.get("task", {})


def distribution_strategy() -> tf.distribute.Strategy:
    """Several machines via TF_CONFIG, several local GPUs, or the default single device.

    Call it before any other TensorFlow work: MultiWorkerMirroredStrategy must start the
    collective runtime before ops run.
    """
    cluster, task = _task()
    if cluster:
        workers = sum(len(addresses) for addresses in cluster.values())
        log.info("TF_CONFIG found: multi-worker training, %s %s of %d tasks",
                 task.get("type"), task.get("index"), workers)
        return _KerasCompatibleMultiWorkerStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("%d GPUs visible: mirrored training", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class _KerasCompatibleMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy patched for two reduce() calls Keras 3.15's fit() gets wrong.

    See keras#20585 (MultiWorkerMirroredStrategy fails in fit()). First, fit() "reduces" its
    first (images, labels) batch as one tuple only to learn shapes and dtypes; collectives
    reject tuples and uint8. Every worker makes that call, so each answering with its local
    batch keeps them in step. Second, fit() averages each replica's scalar metric with
    axis=0, which scalars do not have; the mean across replicas (axis=None) is what it means,
    and it gives every worker the same logs, so the plateau/early-stop callbacks agree.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, (tuple, list, dict)):
            return tf.nest.map_structure(lambda part: self.experimental_local_results(part)[0], value)
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def device_names() -> list[str]:
    """What this process trains on: each visible GPU with its model name, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return [f"CPU ({os.cpu_count()} logical cores)"]
    return [f"{gpu.name.removeprefix('/physical_device:')} "
            f"{tf.config.experimental.get_device_details(gpu).get('device_name', 'unknown model')}" for gpu in gpus]


def is_chief() -> bool:
    """True on the one process that writes outputs: the chief task, else worker 0, else alone."""
    cluster, task = _task()
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0


def worker_share() -> tuple[int, int]:
    """(this task's input pipeline, how many there are): (0, 1) alone; tf.distribute's numbering otherwise."""
    cluster, task = _task()
    if not cluster:
        return 0, 1
    chiefs = len(cluster.get("chief", []))
    position = 0 if task.get("type") == "chief" else chiefs + int(task.get("index", 0))
    return position, chiefs + len(cluster.get("worker", []))


def split_batch(global_batch: int, replicas: int, key: str) -> int:
    """The per-replica share of a global batch; a batch the replicas cannot share evenly is refused."""
    if global_batch % replicas:
        raise ParamsError(f"params.yaml: {key} = {global_batch} is the global batch and cannot be split evenly "
                          f"over the {replicas} replicas found; use a multiple of {replicas}")
    return global_batch // replicas


def worker_label() -> str:
    """A name unique per task ('worker1'), for files that must not be shared between tasks."""
    _, task = _task()
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Let each worker keep its share of the elements of one identical, seeded stream.

    The input is a list of file names inside one tensor, not a set of files, so FILE
    sharding (what AUTO tries first) cannot apply; DATA says so up front.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
