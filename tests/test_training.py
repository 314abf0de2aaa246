"""Training-loop tests on a tiny stand-in base: phases, DVCLive axis, resume bookkeeping, weights."""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import tiny_config
from dvclive import Live

from facerec.data import ShuffledEpochs
from facerec.errors import ParamsError
from facerec.training import (
    EpochAlignedLive,
    balanced_class_weights,
    compile_model,
    drop_rows_from,
    drop_unreadable_summary,
    fit_phases,
    open_backup,
    steps_per_execution_for,
    unfreeze_top,
)

# Two short phases on the stand-in base, with the better recipe's regularisation.
SCHEDULE = tiny_config(train={"epochs": 2, "learning_rate": 1e-2, "fine_tune_epochs": 2,
                              "fine_tune_learning_rate": 1e-3, "fine_tune_from": "conv5_block1_1_conv",
                              "label_smoothing": 0.1, "weight_decay": 0.004}).train


def stand_in_model() -> keras.Model:
    """A few-hundred-weight network whose base is named like ResNet50's, so fit_phases runs in seconds."""
    base_in = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, name="conv1_conv")(base_in)
    hidden = keras.layers.BatchNormalization(name="conv1_bn")(hidden)
    hidden = keras.layers.Conv2D(4, 3, name="conv5_block1_1_conv")(hidden)
    base = keras.Model(base_in, keras.layers.GlobalAveragePooling2D()(hidden), name="resnet50")
    base.trainable = False
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(base(inputs, training=False)))


def data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices((rng.normal(size=(12, 8, 8, 3)).astype("float32"),
                                               np.arange(12) % 3)).batch(4)


def logged(live_dir, metric: str) -> pd.DataFrame:
    return pd.read_csv(live_dir / "plots/metrics" / f"{metric}.tsv", sep="\t")


def test_both_phases_log_loss_accuracy_and_learning_rate_on_one_axis(tmp_path):
    live = Live(dir=str(tmp_path / "dvclive"), dvcyaml=None, save_dvc_exp=False)
    outcome = fit_phases(stand_in_model(), data(), data(), SCHEDULE, [EpochAlignedLive(live=live)])
    live.end()
    for metric in ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy", "train/learning_rate"):
        assert logged(tmp_path / "dvclive", metric)["step"].tolist() == [0, 1, 2, 3], f"{metric}: one row per epoch"
    rates = logged(tmp_path / "dvclive", "train/learning_rate")["learning_rate"].tolist()
    assert rates == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3]), "phase 2 runs at fine_tune_learning_rate"
    assert (outcome.phase1_epochs, outcome.epochs_completed) == (2, 4)


class _Interrupt(keras.callbacks.Callback):
    """Stops the process's training at the start of `epoch`, like a crash after the previous one."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_phase2_resumes_at_its_next_epoch(tmp_path):
    backup, live_dir = tmp_path / "backup", tmp_path / "dvclive"
    assert not open_backup(backup, {"run": 1}), "a new run starts from scratch"
    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False)
    with pytest.raises(KeyboardInterrupt):
        fit_phases(stand_in_model(), data(), data(), SCHEDULE, [EpochAlignedLive(live=live), _Interrupt(3)], backup_dir=backup)
    assert open_backup(backup, {"run": 1}), "the same run finds state to resume"
    assert (backup / "phase1.json").is_file(), "phase 1 is marked complete"
    resumed_live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=True)
    epochs_run = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: ran.append(epoch))
    ran: list[int] = []
    outcome = fit_phases(stand_in_model(), data(), data(), SCHEDULE, [EpochAlignedLive(live=resumed_live), epochs_run],
                         backup_dir=backup)
    resumed_live.end()
    assert ran == [3], "phase 1 is skipped and phase 2 continues after its last backed-up epoch"
    assert outcome.phase1_epochs == 2 and outcome.epochs_completed == 4, "resumed run ends where a full one would"
    assert logged(live_dir, "train/loss")["step"].tolist() == [0, 1, 2, 3], "the DVCLive axis is continuous"
    assert not (backup / "phase2").exists(), "a finished fit deletes its backup"


def test_backups_every_n_epochs_redo_at_most_n_minus_1_epochs(tmp_path):
    schedule = tiny_config(train={"epochs": 4, "fine_tune_epochs": 0, "backup_every_epochs": 2}).train
    backup, live_dir = tmp_path / "backup", tmp_path / "dvclive"
    open_backup(backup, {"run": 1})
    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False)
    with pytest.raises(KeyboardInterrupt):  # epochs 0-2 done, only the first two backed up
        fit_phases(stand_in_model(), data(), data(), schedule, [EpochAlignedLive(live=live), _Interrupt(3)],
                   backup_dir=backup)
    saved = json.loads((backup / "phase1/training_metadata.json").read_text(encoding="utf-8"))
    assert saved["epoch"] == 2, "epoch 2 (the third) is not a multiple of 2 epochs: no backup after it"
    ran: list[int] = []
    resumed_live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=True)
    epochs_run = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: ran.append(epoch))
    fit_phases(stand_in_model(), data(), data(), schedule, [EpochAlignedLive(live=resumed_live), epochs_run],
               backup_dir=backup)
    resumed_live.end()
    assert ran == [2, 3], "the resumed run redoes the one epoch after the last backup (N - 1 = 1) and goes on"
    assert logged(live_dir, "train/loss")["step"].tolist() == [0, 1, 2, 3], "the redone epoch's row is replaced"


def test_backup_of_another_run_is_discarded(tmp_path):
    open_backup(tmp_path / "backup", {"params": 1})
    (tmp_path / "backup" / "phase1.json").write_text("{}", encoding="utf-8")
    assert not open_backup(tmp_path / "backup", {"params": 2}), "changed params or data never resume old state"
    assert json.loads((tmp_path / "backup/run.json").read_text(encoding="utf-8")) == {"params": 2}
    assert not (tmp_path / "backup" / "phase1.json").exists()


def test_rows_logged_after_the_backup_are_dropped(tmp_path):
    tsv = tmp_path / "train" / "loss.tsv"
    tsv.parent.mkdir()
    tsv.write_text("timestamp\tstep\tloss\n1\t0\t0.9\n2\t1\t0.8\n3\t2\t0.7\n", encoding="utf-8")
    drop_rows_from(tmp_path, 2)
    assert pd.read_csv(tsv, sep="\t")["step"].tolist() == [0, 1], "epoch 2 is re-run, so its old row goes"


def test_balanced_class_weights_equalise_identities():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0}), "n / (classes × count)"


def test_weight_decay_spares_batchnorm_and_biases():
    model = stand_in_model()
    unfreeze_top(model, "conv1_conv")
    compile_model(model, 1e-3, SCHEDULE)
    decayed = {variable.name for variable in model.trainable_variables if model.optimizer._use_weight_decay(variable)}
    assert decayed == {"kernel"}, "only kernels shrink towards zero"


def shuffled_epochs(size: int, batch_size: int) -> ShuffledEpochs:
    rng = np.random.default_rng(0)
    examples = tf.data.Dataset.from_tensor_slices((rng.normal(size=(size, 8, 8, 3)).astype("float32"),
                                                   np.arange(size) % 3))
    return ShuffledEpochs(examples, size, batch_size, seed=0)


def test_keras_executions_run_past_an_epoch_they_do_not_divide():
    stream = shuffled_epochs(14, 4)  # 4 steps an epoch, the last one short
    model = stand_in_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", steps_per_execution=3)
    model.fit(stream.epochs(0, 3), steps_per_epoch=stream.steps_per_epoch, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 12, \
        "Keras 3.15 runs whole executions (2 × 3 steps per 4-step epoch): why steps_per_execution is cut to a divisor"


def test_steps_per_execution_is_cut_to_a_divisor_of_the_epoch():
    assert steps_per_execution_for(32, 384) == 32, "the default divides Pins' 384 steps at batch 32"
    assert steps_per_execution_for(32, 385) == 11 and steps_per_execution_for(3, 4) == 2, "largest divisor below"
    assert steps_per_execution_for(32, 383) == 1, "a prime epoch length runs step by step"
    assert steps_per_execution_for(32, 8) == 8 and steps_per_execution_for(5, None) == 5, "short or unknown epochs"


def test_both_phases_read_exactly_their_epochs_with_several_steps_per_execution(tmp_path):
    schedule = replace(SCHEDULE, steps_per_execution=3, early_stopping_patience=5)
    stream = shuffled_epochs(14, 4)
    live = Live(dir=str(tmp_path / "dvclive"), dvcyaml=None, save_dvc_exp=False)
    model = stand_in_model()
    steps_seen: list[tuple[int, int, int]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: steps_seen.append(
        (epoch, model.steps_per_execution, int(model.optimizer.iterations))))
    outcome = fit_phases(model, stream, data(), schedule, [EpochAlignedLive(live=live), record],
                         backup_dir=tmp_path / "backup")
    live.end()
    assert steps_seen == [(0, 2, 4), (1, 2, 8), (2, 2, 4), (3, 2, 8)], \
        "4 steps an epoch in executions of 2 (the divisor of 4 below 3); phase 2's optimizer counts afresh"
    assert outcome.epochs_completed == 4 and logged(tmp_path / "dvclive", "eval/accuracy")["step"].tolist() == \
        [0, 1, 2, 3], "DVCLive, plateau, early stopping and backups still see one end per epoch"


def test_jit_compile_is_really_on_or_refused():
    model = stand_in_model()
    compile_model(model, 1e-3, replace(SCHEDULE, jit_compile=True, deterministic=False))
    assert model.jit_compile, "train.jit_compile = true compiles the step with XLA"
    inputs = keras.Input((8, 8, 3))
    rotating = keras.Model(inputs, stand_in_model()(keras.layers.RandomRotation(0.1)(inputs)))
    with pytest.raises(ParamsError, match=r"train.jit_compile = true.*RandomRotation.*set train.jit_compile = false"):
        compile_model(rotating, 1e-3, replace(SCHEDULE, jit_compile=True, deterministic=False))


def test_a_summary_cut_off_by_a_kill_does_not_block_the_resume(tmp_path):
    live = Live(dir=str(tmp_path / "dvclive"), dvcyaml=None, save_dvc_exp=False)
    live.log_metric("loss", 0.5)
    live.next_step()
    live.end()
    (tmp_path / "dvclive" / "metrics.json").write_text("", encoding="utf-8")  # killed while DVCLive rewrote it
    drop_unreadable_summary(tmp_path / "dvclive")
    resumed = Live(dir=str(tmp_path / "dvclive"), dvcyaml=None, save_dvc_exp=False, resume=True)
    assert (tmp_path / "dvclive/plots/metrics/loss.tsv").is_file(), "the logged rows stay"
    resumed.end()
    drop_unreadable_summary(tmp_path / "dvclive")
    assert (tmp_path / "dvclive" / "metrics.json").is_file(), "a whole summary is left alone"
