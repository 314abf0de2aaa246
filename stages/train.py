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
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from facerec.atomic import write_json
from facerec.data import load_split, make_dataset
from facerec.model import ModelConfig, build_model
from facerec.params import load_params, require_choice, require_range
from facerec.runtime import configure_determinism, configure_mixed_precision, distribution_strategy, is_chief
from facerec.stage_runner import run_stage
from facerec.training import PhaseSchedule, fit_phases

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
    return parser.parse_args()


def check_params(params: dict) -> None:
    require_range("train.image_size", params["image_size"], 32, 1024, integer=True)
    require_range("train.batch_size", params["batch_size"], 1, 4096, integer=True)
    require_range("train.epochs", params["epochs"], 1, 10_000, integer=True)
    require_range("train.fine_tune_epochs", params["fine_tune_epochs"], 0, 10_000, integer=True)
    require_range("train.learning_rate", params["learning_rate"], 1e-7, 1.0)
    require_range("train.label_smoothing", params["label_smoothing"], 0.0, 0.5)
    require_choice("train.mixed_precision", params["mixed_precision"], ["auto", "on", "off"])
    require_choice("train.freeze_base", params["freeze_base"], [True, False])
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
    return str(cache_dir / f"{split_csv.stem}-{digest}-{image_size_px}px" / "cache")


def schedule(params: dict) -> PhaseSchedule:
    keys = ["epochs", "learning_rate", "fine_tune_epochs", "fine_tune_learning_rate", "fine_tune_from",
            "label_smoothing", "lr_factor", "lr_patience", "min_learning_rate", "early_stopping_patience"]
    return PhaseSchedule(**{key: params[key] for key in keys})


def main() -> None:
    args = parse_args()
    all_params = load_params()
    params, seed = all_params["train"], all_params["base"]["seed"]
    check_params(params)
    configure_determinism(seed, params["deterministic"])
    mixed = configure_mixed_precision(params["mixed_precision"])
    strategy = distribution_strategy()
    global_batch = params["batch_size"] * strategy.num_replicas_in_sync

    train_frame, val_frame = load_split(args.train), load_split(args.val)
    labels = sorted(train_frame["identity"].unique())
    datasets = {
        name: make_dataset(frame, args.raw_dir, labels, image_size_px=params["image_size"], batch_size=global_batch,
                           shuffle=name == "train", seed=seed,
                           cache=cache_target(params["cache"], args.cache_dir, csv, params["image_size"]))
        for name, frame, csv in (("train", train_frame, args.train), ("val", val_frame, args.val))
    }
    log.info("Training on %d images of %d identities, validating on %d; global batch %d on %d replica(s), "
             "mixed precision %s", len(train_frame), len(labels), len(val_frame), global_batch,
             strategy.num_replicas_in_sync, "on" if mixed else "off")

    started = time.monotonic()
    with strategy.scope():
        model = build_model(model_config(params, len(labels)), seed=seed)
        live = Live(dir=str(args.live_dir), dvcyaml=None, save_dvc_exp=False)
        histories = fit_phases(model, datasets["train"], datasets["val"], schedule(params),
                               [DVCLiveCallback(live=live)], jit_compile=params["jit_compile"])
    live.end()
    seconds = time.monotonic() - started
    if is_chief():
        save_model(model, labels, args, params, histories, seconds, len(train_frame))


def save_model(model, labels, args, params, histories, seconds, train_images) -> None:
    """Write model.keras, labels.json and model_card.json together, replacing the folder atomically."""
    import platform

    import dvc
    import tensorflow as tf

    last = {key: float(values[-1]) for key, values in histories[-1].history.items()}
    card = {
        "labels": len(labels), "train_images": train_images, "epochs_run": sum(len(h.epoch) for h in histories),
        "final_epoch_metrics": last, "train_seconds": round(seconds, 1),
        "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(),
        "params": params,
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "dvc": dvc.__version__},
    }
    args.model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".models-", dir=args.model_dir.parent))
    model.save(staging / "model.keras")
    (staging / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    write_json(staging / "model_card.json", card)
    if args.model_dir.exists():
        shutil.rmtree(args.model_dir)
    os.replace(staging, args.model_dir)
    log.info("Saved %s (%d identities) after %.0f s; final %s", args.model_dir, len(labels), seconds, last)


if __name__ == "__main__":
    run_stage(main)
