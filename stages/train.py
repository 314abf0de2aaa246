"""DVC stage: train the ResNet50 transfer-learning classifier and save it with its labels."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from dvclive import Live

from facerec.atomic import atomic_dir, write_json
from facerec.data import label_ids, make_dataset
from facerec.manifests import load_split
from facerec.model import ModelConfig, build_model
from facerec.params import load_params, require_choice, require_range
from facerec.runtime import (
    configure_determinism,
    configure_mixed_precision,
    distribution_strategy,
    is_chief,
    shard_by_data,
    worker_label,
)
from facerec.stage_runner import run_stage
from facerec.training import (
    EpochAlignedLive,
    PhaseSchedule,
    balanced_class_weights,
    fit_phases,
    open_backup,
)

log = logging.getLogger("facerec.train")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True)
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


def check_params(params: dict) -> None:
    require_range("train.image_size", params["image_size"], 32, 1024, integer=True)
    require_range("train.batch_size", params["batch_size"], 1, 4096, integer=True)
    require_range("train.epochs", params["epochs"], 1, 10_000, integer=True)
    require_range("train.fine_tune_epochs", params["fine_tune_epochs"], 0, 10_000, integer=True)
    require_range("train.learning_rate", params["learning_rate"], 1e-7, 1.0)
    require_range("train.fine_tune_learning_rate", params["fine_tune_learning_rate"], 1e-8, 1.0)
    require_range("train.label_smoothing", params["label_smoothing"], 0.0, 0.5)
    require_range("train.weight_decay", params["weight_decay"], 0.0, 1.0)
    require_range("train.lr_factor", params["lr_factor"], 0.01, 0.99)
    require_range("train.lr_patience", params["lr_patience"], 0, 1000, integer=True)
    require_range("train.early_stopping_patience", params["early_stopping_patience"], 0, 1000, integer=True)
    require_choice("train.class_weights", params["class_weights"], ["none", "balanced"])
    require_choice("train.mixed_precision", params["mixed_precision"], ["auto", "on", "off"])
    for flag in ("freeze_base", "jit_compile", "deterministic"):
        require_choice(f"train.{flag}", params[flag], [True, False])
    require_choice("train.cache", params["cache"], ["disk", "memory", "none"])


def model_config(params: dict, num_classes: int) -> ModelConfig:
    """ModelConfig from train.model plus the top-level train keys that shape the network."""
    return ModelConfig.from_params(num_classes, {
        **params["model"], "image_size_px": params["image_size"], "weights": str(params["weights"]),
        "freeze_base": params["freeze_base"],
    })


def cache_target(setting: str, cache_dir: Path, split_csv: Path, image_size_px: int) -> str:
    """Where tf.data caches decoded images; a disk cache is keyed by the split's content and size."""
    if setting != "disk":
        return setting
    digest = hashlib.sha256(split_csv.read_bytes()).hexdigest()[:16]
    # One cache per task: workers sharing a host must not write the same cache files.
    worker = f"-{worker_label()}" if os.environ.get("TF_CONFIG") else ""
    return str(cache_dir / f"{split_csv.stem}-{digest}-{image_size_px}px{worker}" / "cache")


def schedule(params: dict) -> PhaseSchedule:
    keys = ["epochs", "learning_rate", "fine_tune_epochs", "fine_tune_learning_rate", "fine_tune_from",
            "label_smoothing", "weight_decay", "lr_factor", "lr_patience", "min_learning_rate",
            "early_stopping_patience"]
    return PhaseSchedule(**{key: params[key] for key in keys})


def weights_sha256(model: keras.Model) -> str:
    """Digest of every weight (BatchNorm statistics too): equal digests mean identical models."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def main() -> None:
    args = parse_args()
    all_params = load_params()
    params, seed = all_params["train"], all_params["base"]["seed"]
    check_params(params)
    strategy = distribution_strategy()  # first: the multi-worker runtime must start before other TF work
    configure_determinism(seed, params["deterministic"])
    mixed = configure_mixed_precision(params["mixed_precision"])
    global_batch = params["batch_size"] * strategy.num_replicas_in_sync
    chief = is_chief()

    train_frame, val_frame = load_split(args.train), load_split(args.val)
    labels = sorted(train_frame["identity"].unique())
    datasets = {
        name: shard_by_data(make_dataset(
            frame, args.raw_dir, labels, image_size_px=params["image_size"], batch_size=global_batch,
            shuffle=name == "train", seed=seed, cache=cache_target(params["cache"], args.cache_dir, csv,
                                                                   params["image_size"])))
        for name, frame, csv in (("train", train_frame, args.train), ("val", val_frame, args.val))
    }
    class_weight = (balanced_class_weights(label_ids(train_frame["identity"], labels), len(labels))
                    if params["class_weights"] == "balanced" else None)
    log.info("Training on %d images of %d identities, validating on %d; global batch %d on %d replica(s), "
             "mixed precision %s", len(train_frame), len(labels), len(val_frame), global_batch,
             strategy.num_replicas_in_sync, "on" if mixed else "off")

    # Non-chief workers train in lockstep but keep their copies of the outputs out of the project.
    scratch = None if chief else Path(tempfile.mkdtemp(prefix=f"facerec-{worker_label()}-"))
    live_dir = args.live_dir if chief else scratch / "dvclive"
    backup_dir = args.backup_dir if chief else args.backup_dir.with_name(f"{args.backup_dir.name}-{worker_label()}")
    run_id = {"train": params, "seed": seed, "replicas": strategy.num_replicas_in_sync,
              "splits": [hashlib.sha256(path.read_bytes()).hexdigest() for path in (args.train, args.val)]}
    resuming = open_backup(backup_dir, run_id)
    if resuming:
        log.info("Resuming the interrupted run from %s", backup_dir)
    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=resuming)

    started = time.monotonic()
    with strategy.scope():
        model = build_model(model_config(params, len(labels)), seed=seed)
        outcome = fit_phases(model, datasets["train"], datasets["val"], schedule(params),
                             [EpochAlignedLive(live=live)], backup_dir=backup_dir,
                             jit_compile=params["jit_compile"], class_weight=class_weight)
    live.end()
    seconds = time.monotonic() - started
    digest = weights_sha256(model)
    log.info("Final weights sha256 %s (%s)", digest, worker_label() if not chief else "chief")
    card = {"labels": len(labels), "train_images": len(train_frame), "epochs_run": outcome.epochs_completed,
            "phase1_epochs": outcome.phase1_epochs, "final_epoch_metrics": outcome.final_metrics,
            "train_seconds_this_attempt": round(seconds, 1), "weights_sha256": digest,
            "global_batch_size": global_batch, "replicas": strategy.num_replicas_in_sync,
            "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(), "params": params}
    save_model(model, labels, card, scratch / "models" if scratch else args.model_dir)
    # Only a finished run gets here; its backups would otherwise make the next run "resume".
    shutil.rmtree(backup_dir, ignore_errors=True)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def save_model(model, labels, card, model_dir: Path) -> None:
    """Write model.keras, labels.json and model_card.json together, replacing the folder atomically."""
    import platform

    import dvc
    import tensorflow as tf

    card = {**card, "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                                 "keras": keras.__version__, "dvc": dvc.__version__}}
    with atomic_dir(model_dir) as staging:
        model.save(staging / "model.keras")
        (staging / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n",
                                             encoding="utf-8")
        write_json(staging / "model_card.json", card)
    log.info("Saved %s (%d identities); final %s", model_dir, len(labels), card["final_epoch_metrics"])


if __name__ == "__main__":
    run_stage(main)
