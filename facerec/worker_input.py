"""Training input under MultiWorkerMirroredStrategy: each worker decodes, caches and reads only its share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import tensorflow as tf

from facerec.config import TrainConfig
from facerec.data import ShuffledEpochs, training_epochs
from facerec.errors import ParamsError
from facerec.runtime import split_batch, worker_share

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerEpochs:
    """One worker's ShuffledEpochs, handed to the strategy as that worker's own input pipeline.

    tf.distribute's AutoShardPolicy.DATA has every worker decode and cache the whole set and keep
    every n-th batch; here the file list was split before decoding. Every worker must take the same
    number of steps (a worker that runs out first leaves the others waiting in an all-reduce), so
    each epoch uses `steps_per_epoch` × local replicas full batches of the worker's shuffled share
    and leaves out the few images past them (others each epoch, as the order changes).
    """

    share: ShuffledEpochs  # batched per replica
    strategy: tf.distribute.Strategy
    steps_per_epoch: int
    local_replicas: int  # this worker's devices
    class_weights: tuple[float, ...] | None = None  # per label id; Keras cannot apply them to distributed input

    def epochs(self, first_epoch: int, end_epoch: int) -> tf.distribute.DistributedDataset:
        """Epochs first_epoch … end_epoch - 1 of this worker's share, one per-replica batch per replica and step."""
        stream = self.share.epochs(first_epoch, end_epoch, batches_per_epoch=self.steps_per_epoch * self.local_replicas)
        if self.class_weights:
            weights = tf.constant(self.class_weights, tf.float32)
            stream = stream.map(lambda images, labels: (images, labels, tf.gather(weights, labels)))
        position, _ = worker_share()

        def this_workers_stream(context: tf.distribute.InputContext) -> tf.data.Dataset:
            # Called once per worker: its own stream, split between its local replicas.
            if context.input_pipeline_id != position:
                raise RuntimeError(f"input pipeline {context.input_pipeline_id} was given worker {position}'s share")
            return stream

        return self.strategy.distribute_datasets_from_function(this_workers_stream)


def steps_per_worker_epoch(images: int, workers: int, global_batch: int) -> int:
    """Steps of an epoch when each of `workers` reads its share in full global batches (the smallest share decides)."""
    steps = (images // workers) // (global_batch // workers)
    if not steps:
        raise ParamsError(f"params.yaml: train.batch_size = {global_batch} is more than the {images} training images "
                          f"give {workers} workers for one step each; use at most {images // workers * workers}")
    return steps


def training_input(frame: pd.DataFrame, images_dir: Path, labels: list[str], config: TrainConfig, *, seed: int,
                   cache: str, strategy: tf.distribute.Strategy,
                   class_weight: dict[int, float] | None) -> tuple[ShuffledEpochs | WorkerEpochs, dict | None]:
    """The training set as fit_phases takes it, and the class weights fit() must apply (None if the input has them).

    train.batch_size is the global batch whatever the hardware, split evenly over the replicas, so
    the learning rate and the epoch-based patience keep the meaning they have on one device.
    """
    position, workers = worker_share()
    per_replica = split_batch(config.batch_size, strategy.num_replicas_in_sync, "train.batch_size")
    if workers == 1:  # one process: tf.distribute splits each global batch between the local devices
        return training_epochs(frame, images_dir, labels, image_size_px=config.image_size, batch_size=config.batch_size,
                               seed=seed, cache=cache, cache_shards=config.cache_shards,
                               fill_last_batch=config.jit_compile), class_weight
    share = training_epochs(frame, images_dir, labels, image_size_px=config.image_size, batch_size=per_replica,
                            seed=seed, cache=cache, cache_shards=config.cache_shards, share=(position, workers),
                            fill_last_batch=config.jit_compile)
    steps = steps_per_worker_epoch(len(frame), workers, config.batch_size)
    log.info("Worker %d of %d decodes and caches %d of %d training images; %d steps per epoch", position, workers,
             share.size, len(frame), steps)
    weights = tuple(class_weight[label] for label in range(len(labels))) if class_weight else None
    return WorkerEpochs(share, strategy, steps, strategy.num_replicas_in_sync // workers, weights), None
