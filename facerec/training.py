"""Two-phase transfer learning: train the new head on a frozen base, then fine-tune its top."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive.keras import DVCLiveCallback

from facerec.atomic import atomic_path, write_json
from facerec.config import TrainConfig
from facerec.data import ShuffledEpochs
from facerec.errors import ParamsError
from facerec.resume import (
    ResumableBackup,
    backed_up_epoch,
    describe_difference,
    random_state,
    set_random_state,
)
from facerec.worker_input import WorkerEpochs

log = logging.getLogger(__name__)

PHASE1_WEIGHTS, PHASE1_DONE, RUN_ID = "phase1.weights.h5", "phase1.json", "run.json"


@dataclass
class TrainingOutcome:
    """Where the continuous epoch axis ended and the metrics of its last epoch."""

    epochs_completed: int = 0  # on the axis shared by both phases (early stopping may cut it)
    phase1_epochs: int = 0
    final_metrics: dict = field(default_factory=dict)


def steps_per_execution_for(configured: int, steps_per_epoch: int | None) -> int:
    """The largest divisor of an epoch's steps up to `configured` (all of it without a known epoch length).

    Keras runs whole executions: with 32 steps each, a 385-step epoch would run 416 and eat into
    the next epoch's batches, so a resumed run would no longer read what the killed one read.
    """
    if not steps_per_epoch:
        return configured
    return max(count for count in range(1, min(configured, steps_per_epoch) + 1) if steps_per_epoch % count == 0)


def compile_model(model: keras.Model, learning_rate: float, config: TrainConfig, *,
                  steps_per_epoch: int | None = None) -> None:
    """Adamax as in the original recipe; sparse labels keep targets one int per image."""
    optimizer = keras.optimizers.Adamax(learning_rate=learning_rate, weight_decay=config.weight_decay or None)
    # Decay shrinks kernels only: pulling BatchNorm scales/offsets or biases towards 0 is not regularisation.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    smoothing = config.label_smoothing
    steps_per_execution = steps_per_execution_for(config.steps_per_execution, steps_per_epoch)
    if steps_per_execution < config.steps_per_execution:
        # Far below the setting, most of the saving is lost: say how to get it back.
        level = logging.WARNING if 2 * steps_per_execution < config.steps_per_execution else logging.INFO
        log.log(level, "train.steps_per_execution = %d runs as %d: the largest divisor of the epoch's %d steps "
                "(a train.batch_size giving a step count with a divisor near %d keeps it)",
                config.steps_per_execution, steps_per_execution, steps_per_epoch, config.steps_per_execution)
    if steps_per_execution > 1 and isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        # Keras 3.15's multi-step loop fails on a multi-worker iterator: "You must feed a value for
        # placeholder tensor 'while/cond/Placeholder'" (seen with two local workers).
        log.warning("train.steps_per_execution = %d runs as 1 with several workers: Keras 3.15's multi-step loop "
                    "cannot read multi-worker input", config.steps_per_execution)
        steps_per_execution = 1
    model.compile(optimizer=optimizer,
                  loss=_SmoothedSparseLoss(smoothing) if smoothing else "sparse_categorical_crossentropy",
                  weighted_metrics=[CountedAccuracy()], jit_compile=config.jit_compile,
                  steps_per_execution=steps_per_execution)
    if config.jit_compile and not model.jit_compile:
        unsupported = sorted({type(layer).__name__ for layer in model._flatten_layers() if not layer.supports_jit})
        raise ParamsError(f"params.yaml: train.jit_compile = true, but Keras cannot compile this model with XLA "
                          f"(layers without XLA support: {', '.join(unsupported) or 'none; the platform refuses'}); "
                          "set train.jit_compile = false")
    log.info("Compiled the training step: XLA %s, %d steps per execution", "on" if model.jit_compile else "off",
             steps_per_execution)


@keras.saving.register_keras_serializable(package="facerec")
class CountedAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy over the images whose sample weight is positive, each counted once.

    A padded validation batch (padding weighs 0) then scores exactly its real images, and class
    weights (all positive) leave it the plain share of correct answers.
    """

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            sample_weight = keras.ops.cast(keras.ops.greater(sample_weight, 0), self.dtype)
        return super().update_state(y_true, y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="facerec")
class _SmoothedSparseLoss(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing (Keras' sparse loss has none)."""

    def __init__(self, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def balanced_class_weights(targets: np.ndarray, num_classes: int) -> dict[int, float]:
    """n / (classes × count): every identity contributes the same total weight to the loss."""
    counts = np.bincount(targets, minlength=num_classes)
    return {label: float(len(targets) / (num_classes * count)) if count else 0.0
            for label, count in enumerate(counts)}


def phase_callbacks(config: TrainConfig) -> list[keras.callbacks.Callback]:
    """Learning-rate reduction (the original's) and optional early stopping with best weights."""
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.ReduceLROnPlateau(
        monitor="val_accuracy", mode="max", factor=config.lr_factor,
        patience=config.lr_patience, min_lr=config.min_learning_rate)]
    if config.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=config.early_stopping_patience,
            restore_best_weights=True))
    return callbacks


def unfreeze_top(model: keras.Model, first_layer_name: str) -> int:
    """Make base layers from `first_layer_name` on trainable; return how many were unfrozen."""
    base = model.get_layer("resnet50")
    names = [layer.name for layer in base.layers]  # facerec.config checked the name against these
    base.trainable = True
    start = names.index(first_layer_name)
    for position, layer in enumerate(base.layers):
        # BatchNorm stays frozen, so it keeps the statistics the base was trained with; a
        # small face set would otherwise re-estimate (and wreck) them batch by batch.
        layer.trainable = position >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)


class EpochAlignedLive(DVCLiveCallback):
    """DVCLive logging whose step is the epoch on the run's axis, so phases and resumes join up."""

    def on_train_begin(self, logs=None):
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            # A killed run may have logged epochs its backup never saw; they are re-run now.
            drop_rows_from(Path(self.live.plots_dir) / "metrics", epoch)
            self._first_epoch = False
        self.live.step = epoch

    def on_train_end(self, logs=None):
        """Leave live.end() to the caller: one Live spans both fit() calls."""


def drop_unreadable_summary(live_dir: Path) -> None:
    """Delete DVCLive's metrics.json when it does not parse, so Live(resume=True) can start.

    DVCLive rewrites it in place after every epoch: a run killed mid-write leaves it empty and
    every later resume failed on it. Without it DVCLive resumes from its .tsv rows, and the next
    epoch writes a whole summary again.
    """
    summary = Path(live_dir) / "metrics.json"
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        log.warning("DVCLive's %s was cut off by the interruption; it is rewritten after the next epoch", summary)
        summary.unlink()


def drop_rows_from(metrics_dir: Path, first_step: int) -> None:
    """Delete DVCLive rows at or after `first_step` from every metrics .tsv under `metrics_dir`."""
    for tsv in metrics_dir.rglob("*.tsv"):
        with open(tsv, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        kept = [row for row in rows if int(row["step"]) < first_step]
        if len(kept) < len(rows) and rows:
            with atomic_path(tsv) as temp_path, open(temp_path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
                writer.writeheader()
                writer.writerows(kept)


def open_backup(backup_dir: Path, run_id: dict) -> bool:
    """Prepare `backup_dir` for this run; True when it holds state of the same run to resume."""
    id_file = backup_dir / RUN_ID
    if id_file.is_file():
        saved = json.loads(id_file.read_text(encoding="utf-8"))
        if saved == run_id:
            return any(path != id_file for path in backup_dir.iterdir())
        log.info("Not resuming the interrupted run in %s: it was another run (changed: %s); starting afresh",
                 backup_dir, describe_difference(saved, run_id))
    # Another run's state (different params, data or code) must not leak into this one.
    shutil.rmtree(backup_dir, ignore_errors=True)
    backup_dir.mkdir(parents=True)
    write_json(id_file, run_id)
    return False


def _fit(model, train_data, val_data, *, first_epoch, last_epoch, schedule_callbacks, callbacks, backup,
         every_epochs, class_weight):
    """One fit() with its own backup; return (epochs completed on the axis, last logs)."""
    # The backup follows the plateau/early-stop callbacks (it saves their state after they update
    # it, and restores it after they reset it) and precedes DVCLive (an epoch is backed up before
    # it is logged).
    backup_callbacks = [ResumableBackup(backup, schedule_callbacks, every_epochs=every_epochs,
                                        first_epoch=first_epoch)] if backup else []
    steps = {}
    if isinstance(train_data, ShuffledEpochs | WorkerEpochs):
        # Epoch k's order is fixed by k, so a resumed fit reads the very batches the killed one would have.
        start = max(first_epoch, backed_up_epoch(backup)) if backup else first_epoch
        steps = {"steps_per_epoch": train_data.steps_per_epoch}
        train_data = train_data.epochs(start, last_epoch)
    model._initial_epoch = None  # BackupAndRestore sets this private field and never clears it
    history = model.fit(train_data, validation_data=val_data, initial_epoch=first_epoch, epochs=last_epoch,
                        callbacks=schedule_callbacks + backup_callbacks + callbacks, class_weight=class_weight,
                        verbose=2, shuffle=False, **steps)  # the tf.data pipeline shuffles, seeded, itself
    resumed_at = model._initial_epoch or first_epoch
    model._initial_epoch = None
    ended = history.epoch[-1] + 1 if history.epoch else resumed_at
    return ended, {key: float(values[-1]) for key, values in history.history.items()}


def fit_phases(model, train_data, val_data, config: TrainConfig, extra_callbacks, *, backup_dir=None,
               class_weight=None) -> TrainingOutcome:
    """Run phase 1 and (if asked) phase 2 on one continuous epoch axis, resuming from backups."""
    backup_dir = Path(backup_dir) if backup_dir else None
    done_file = backup_dir / PHASE1_DONE if backup_dir else None
    outcome = TrainingOutcome()
    steps_per_epoch = train_data.steps_per_epoch if isinstance(train_data, ShuffledEpochs | WorkerEpochs) else None
    if done_file and done_file.is_file():
        # Phase 1 finished before the interruption: its weights and axis position are on disk.
        model.load_weights(backup_dir / PHASE1_WEIGHTS)
        saved = json.loads(done_file.read_text(encoding="utf-8"))
        set_random_state(model, saved["random_state"])  # phase 2's augmentation continues phase 1's draws
        outcome.phase1_epochs, outcome.final_metrics = saved["epochs"], saved["metrics"]
        log.info("Phase 1 already completed (%d epochs); resuming with phase 2", outcome.phase1_epochs)
    else:
        compile_model(model, config.learning_rate, config, steps_per_epoch=steps_per_epoch)
        outcome.phase1_epochs, outcome.final_metrics = _fit(
            model, train_data, val_data, first_epoch=0, last_epoch=config.epochs,
            schedule_callbacks=phase_callbacks(config), callbacks=list(extra_callbacks),
            backup=backup_dir / "phase1" if backup_dir else None, every_epochs=config.backup_every_epochs,
            class_weight=class_weight)
        if backup_dir and config.fine_tune_epochs > 0:
            model.save_weights(backup_dir / PHASE1_WEIGHTS)
            # Written last: its presence means the weights are whole.
            write_json(done_file, {"epochs": outcome.phase1_epochs, "metrics": outcome.final_metrics,
                                   "random_state": random_state(model)})
    outcome.epochs_completed = outcome.phase1_epochs
    if config.fine_tune_epochs > 0:
        unfrozen = unfreeze_top(model, config.fine_tune_from)
        log.info("Phase 2: fine-tuning %d base layers from %s at lr %g for %d epochs",
                 unfrozen, config.fine_tune_from, config.fine_tune_learning_rate, config.fine_tune_epochs)
        # Changing `trainable` only takes effect after compiling again; the lower rate keeps the
        # pretrained filters close to where they were.
        compile_model(model, config.fine_tune_learning_rate, config, steps_per_epoch=steps_per_epoch)
        outcome.epochs_completed, metrics = _fit(
            model, train_data, val_data, first_epoch=outcome.phase1_epochs,
            last_epoch=outcome.phase1_epochs + config.fine_tune_epochs,
            schedule_callbacks=phase_callbacks(config), callbacks=list(extra_callbacks),
            backup=backup_dir / "phase2" if backup_dir else None, every_epochs=config.backup_every_epochs,
            class_weight=class_weight)
        outcome.final_metrics = metrics or outcome.final_metrics
    return outcome
