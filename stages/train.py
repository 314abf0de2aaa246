"""DVC stage: train the ResNet50 transfer-learning classifier and save it with its labels."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from dvclive import Live

from facerec.atomic import replace_dir
from facerec.config import as_plain_dict, load_config
from facerec.data import cache_target, decoded_gb, label_ids, make_dataset, resolve_cache
from facerec.face_data import image_root
from facerec.manifests import load_split
from facerec.model import build_model, resolve_weights
from facerec.model_files import save_model, weights_sha256
from facerec.runtime import (
    configure_determinism,
    configure_mixed_precision,
    device_names,
    distribution_strategy,
    is_chief,
    shard_by_data,
    split_batch,
    worker_label,
)
from facerec.resume import code_digests, library_versions
from facerec.stage_runner import run_stage
from facerec.training import (
    EpochAlignedLive,
    balanced_class_weights,
    drop_unreadable_summary,
    fit_phases,
    open_backup,
)
from facerec.worker_input import training_input

log = logging.getLogger("facerec.train")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces-dir", type=Path, required=True, help="aligned crops (read when faces.detector is on)")
    parser.add_argument("--train", type=Path, required=True, help="train split CSV")
    parser.add_argument("--val", type=Path, required=True, help="val split CSV")
    parser.add_argument("--manifest", type=Path, required=True, help="recorded in the model card by hash")
    parser.add_argument("--model-dir", type=Path, required=True, help="gets model.keras, labels.json, model_card.json")
    parser.add_argument("--live-dir", type=Path, required=True, help="DVCLive metrics and per-epoch plots")
    parser.add_argument("--cache-dir", type=Path, required=True,
                        help="decoded-image cache, kept between runs (not a DVC output)")
    parser.add_argument("--backup-dir", type=Path, required=True,
                        help="per-epoch training state for resuming a killed run (not a DVC output)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    params = load_config()
    config, seed = params.train, params.base.seed
    images_dir = image_root(params.faces.detector, args.raw, args.faces_dir)
    # What the split's paths point at: the manifest holds every image's sha256, so an image changed under
    # the same path is never read back from an older run's disk cache; plus how faces were aligned.
    images_from = hashlib.sha256(args.manifest.read_bytes()).hexdigest() + (
        json.dumps(as_plain_dict(params.faces), sort_keys=True) if params.faces.detects else "")
    # Fetch ImageNet weights (or find them in Keras' cache) first: offline, that is the error to see.
    resolve_weights(config.weights)  # a bad path fails here too, before any output is touched
    strategy = distribution_strategy()  # first: the multi-worker runtime must start before other TF work
    configure_determinism(seed, config.deterministic)
    dtype_policy = configure_mixed_precision(config.mixed_precision)
    # Both batch sizes are global, so the recipe (learning rate per batch, patience in epochs) is the same
    # on one device or many; a size the replicas cannot share evenly stops here, before any output.
    replicas = strategy.num_replicas_in_sync
    per_replica = split_batch(config.batch_size, replicas, "train.batch_size")
    split_batch(config.val_batch_size, replicas, "train.val_batch_size")
    chief = is_chief()

    train_frame, val_frame = load_split(args.train), load_split(args.val)
    labels = sorted(train_frame["identity"].unique())
    cached_images, free_gb = len(train_frame) + len(val_frame), psutil.virtual_memory().available / 1e9
    cache = resolve_cache(config.cache, cached_images, config.image_size, free_gb)
    log.info("Decoded-image cache: %s (train.cache: %s; %d images take %.2f GB decoded, %.1f GB RAM free)",
             cache, config.cache, cached_images, decoded_gb(cached_images, config.image_size), free_gb)
    class_weight = (balanced_class_weights(label_ids(train_frame["identity"], labels), len(labels))
                    if config.class_weights == "balanced" else None)
    train_data, class_weight = training_input(
        train_frame, images_dir, labels, config, seed=seed, strategy=strategy, class_weight=class_weight,
        cache=cache_target(cache, args.cache_dir, args.train, config.image_size, images_from, order_seed=seed))
    # With XLA every batch has one shape, else each phase compiles a second program for the last batch.
    val_data = shard_by_data(make_dataset(
        val_frame, images_dir, labels, image_size_px=config.image_size, batch_size=config.val_batch_size,
        shuffle=False, seed=seed, cache=cache_target(cache, args.cache_dir, args.val, config.image_size, images_from),
        cache_shards=config.cache_shards, pad_last_batch=config.jit_compile))
    log.info("Training on %d images of %d identities, validating on %d; global batch %d (%d per replica) on %d "
             "replica(s) at learning rate %g, as on one device; dtype policy %s", len(train_frame), len(labels),
             len(val_frame), config.batch_size, per_replica, replicas, config.learning_rate, dtype_policy)

    # Non-chief workers train in lockstep but keep their copies of the outputs out of the project.
    scratch = None if chief else Path(tempfile.mkdtemp(prefix=f"facerec-{worker_label()}-"))
    live_dir = args.live_dir if chief else scratch / "dvclive"
    backup_dir = args.backup_dir if chief else args.backup_dir.with_name(f"{args.backup_dir.name}-{worker_label()}")
    # The faces settings decide what the images look like even when the kept images (and so the
    # split CSVs) stay the same: a backup trained on other crops must not be resumed.
    run_id = {"train": as_plain_dict(config), "images_from": images_from, "seed": seed,
              "replicas": replicas,
              "splits": [hashlib.sha256(path.read_bytes()).hexdigest() for path in (args.train, args.val)],
              "code": code_digests(), "libraries": library_versions()}
    resuming = open_backup(backup_dir, run_id)
    if resuming:
        log.info("Resuming the interrupted run from %s", backup_dir)
    # Curves of the run in progress live with its backup; the last completed run's stay in
    # live_dir until this one completes, so a failed or killed run never costs them.
    staged_live_dir = backup_dir / "dvclive"
    if resuming:
        drop_unreadable_summary(staged_live_dir)
    live = Live(dir=str(staged_live_dir), dvcyaml=None, save_dvc_exp=False, resume=resuming)

    started = time.monotonic()
    with strategy.scope():
        model = build_model(config, len(labels), seed)
        outcome = fit_phases(model, train_data, val_data, config, [EpochAlignedLive(live=live)],
                             backup_dir=backup_dir, class_weight=class_weight)
    live.end()
    seconds = time.monotonic() - started
    digest = weights_sha256(model)
    log.info("Final weights sha256 %s (%s)", digest, worker_label() if not chief else "chief")
    card = {"labels": len(labels), "train_images": len(train_frame), "epochs_run": outcome.epochs_completed,
            "phase1_epochs": outcome.phase1_epochs, "final_epoch_metrics": outcome.final_metrics,
            "train_seconds_this_attempt": round(seconds, 1), "weights_sha256": digest,
            "global_batch_size": config.batch_size, "replicas": replicas,
            # What the run really did, where params and hardware could differ from what was asked.
            "effective": {"jit_compile": bool(model.jit_compile), "batch_size_per_replica": per_replica,
                          "global_batch_size": config.batch_size, "val_global_batch_size": config.val_batch_size,
                          "learning_rate": config.learning_rate,
                          "fine_tune_learning_rate": config.fine_tune_learning_rate, "cache": cache,
                          "backup_every_epochs": config.backup_every_epochs, "dtype_policy": dtype_policy,
                          "steps_per_execution": int(model.steps_per_execution),
                          "replicas": replicas, "devices": device_names()},
            "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(), "params": as_plain_dict(config),
            # predict detects and aligns faces in photos exactly as the training images were
            "faces": as_plain_dict(params.faces)}
    save_model(model, labels, card, scratch / "models" if scratch else args.model_dir)
    replace_dir(staged_live_dir, live_dir)
    # Only a finished run gets here; its backups would otherwise make the next run "resume".
    shutil.rmtree(backup_dir, ignore_errors=True)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    run_stage(main)
