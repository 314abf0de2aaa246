"""Two-phase transfer learning: train the new head on a frozen base, then fine-tune its top."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseSchedule:
    """Epoch counts and learning rates of both phases plus the plateau/early-stop rules."""

    epochs: int  # phase 1: head only (the original recipe's 60)
    learning_rate: float
    fine_tune_epochs: int = 0  # phase 2: 0 reproduces the original single phase
    fine_tune_learning_rate: float = 1e-4
    fine_tune_from: str = "conv5_block1_1_conv"  # first base layer to unfreeze in phase 2
    label_smoothing: float = 0.0
    lr_factor: float = 0.5  # ReduceLROnPlateau on val accuracy
    lr_patience: int = 3
    min_learning_rate: float = 1e-6
    early_stopping_patience: int = 0  # 0 = off; otherwise restores the best weights


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float, jit_compile) -> None:
    """Adamax as in the original recipe; sparse labels keep targets one int per image."""
    model.compile(
        optimizer=keras.optimizers.Adamax(learning_rate=learning_rate),
        loss=_SmoothedSparseLoss(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


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


def phase_callbacks(schedule: PhaseSchedule) -> list[keras.callbacks.Callback]:
    """Learning-rate reduction (the original's) and optional early stopping with best weights."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_accuracy", mode="max", factor=schedule.lr_factor,
            patience=schedule.lr_patience, min_lr=schedule.min_learning_rate,
        )
    ]
    if schedule.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=schedule.early_stopping_patience,
            restore_best_weights=True,
        ))
    return callbacks


def unfreeze_top(model: keras.Model, first_layer_name: str) -> int:
    """Make base layers from `first_layer_name` on trainable; return how many were unfrozen."""
    base = model.get_layer("resnet50")
    names = [layer.name for layer in base.layers]
    if first_layer_name not in names:
        raise ValueError(f"params.yaml: train.fine_tune_from = {first_layer_name!r} is not a ResNet50 layer "
                         f"(e.g. 'conv5_block1_1_conv', 'conv4_block1_1_conv')")
    base.trainable = True
    start = names.index(first_layer_name)
    for position, layer in enumerate(base.layers):
        # BatchNorm layers stay frozen: the base is called with training=False anyway, and
        # frozen BN keeps the moving statistics ImageNet produced.
        layer.trainable = position >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in base.layers if layer.trainable)


def fit_phases(model, train_data, val_data, schedule: PhaseSchedule, extra_callbacks, *, jit_compile=False,
               class_weight=None) -> list[keras.callbacks.History]:
    """Run phase 1 and (if asked) phase 2 on one continuous epoch axis."""
    compile_model(model, schedule.learning_rate, schedule.label_smoothing, jit_compile)
    histories = [model.fit(train_data, validation_data=val_data, epochs=schedule.epochs,
                           callbacks=phase_callbacks(schedule) + extra_callbacks,
                           class_weight=class_weight, verbose=2)]
    if schedule.fine_tune_epochs > 0:
        unfrozen = unfreeze_top(model, schedule.fine_tune_from)
        log.info("Phase 2: fine-tuning %d base layers from %s at lr %g for %d epochs",
                 unfrozen, schedule.fine_tune_from, schedule.fine_tune_learning_rate, schedule.fine_tune_epochs)
        # Changing `trainable` only takes effect after compiling again.
        compile_model(model, schedule.fine_tune_learning_rate, schedule.label_smoothing, jit_compile)
        histories.append(model.fit(
            train_data, validation_data=val_data,
            initial_epoch=schedule.epochs, epochs=schedule.epochs + schedule.fine_tune_epochs,
            callbacks=phase_callbacks(schedule) + extra_callbacks, class_weight=class_weight, verbose=2,
        ))
    return histories
