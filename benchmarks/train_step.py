"""Benchmark: the train step on whatever device is visible — images/s per phase, host overhead, XLA on/off.

Each measurement is one function in MEASUREMENTS taking the parsed arguments and returning a
JSON-ready dict; add one there to extend the report. Run from the project root:
`PYTHONPATH=. .venv/bin/python benchmarks/train_step.py [--image-size 224] [--steps 6] [--only NAME ...]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import load_average, summary
from facerec.config import MIXED_PRECISION_SETTINGS, TrainConfig, load_config
from facerec.data import ShuffledEpochs
from facerec.model import build_augmentation, build_model
from facerec.resume import ResumableBackup
from facerec.runtime import configure_mixed_precision
from facerec.training import compile_model, unfreeze_top

log = logging.getLogger("benchmarks.train_step")
CLASSES = 10
PINS_TRAIN_IMAGES, PINS_VAL_IMAGES = 12_264, 2_633  # the split stage's train and val sets of the Pins mirror


def random_batches(batch_size: int, image_size_px: int) -> tf.data.Dataset:
    """One fixed batch of random uint8 images and labels, repeated: no input cost in the timing."""
    rng = np.random.default_rng(0)
    batch = (rng.integers(0, 256, (batch_size, image_size_px, image_size_px, 3)).astype("uint8"),
             rng.integers(0, CLASSES, batch_size).astype("int32"))
    return tf.data.Dataset.from_tensors(batch).repeat()


def warm_up(model: keras.Model, data: tf.data.Dataset) -> float:
    """Seconds of one execution that traces (and, with XLA, compiles) the step; not part of any rate."""
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=model.steps_per_execution, epochs=1, verbose=0)
    return time.perf_counter() - started


def timed_fit(model: keras.Model, data: tf.data.Dataset, steps: int) -> float:
    """Seconds of a `steps`-step fit() of a warmed-up model."""
    started = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - started


def bench_config(args: argparse.Namespace, **changes) -> TrainConfig:
    """The project's train section (params.yaml) at the benchmark's size, without pretrained weights."""
    return replace(load_config().train, weights="none", image_size=args.image_size, batch_size=args.batch_size,
                   **changes)


def fresh_session(args: argparse.Namespace) -> None:
    """Drop earlier models; clear_session also resets the dtype policy, so it is set again."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(args.dtype_policy)


def phase_rates(args: argparse.Namespace, config: TrainConfig) -> dict:
    """Images/s of phase 1 (frozen base) and phase 2 (fine-tuning from train.fine_tune_from) with `config`."""
    fresh_session(args)
    model = build_model(config, CLASSES, seed=0)
    data = random_batches(config.batch_size, config.image_size)
    rates, compiled, first_seconds = {}, {}, {}
    for phase, learning_rate in (("phase1_frozen", config.learning_rate),
                                 ("phase2_fine_tune", config.fine_tune_learning_rate)):
        if phase == "phase2_fine_tune":
            unfreeze_top(model, config.fine_tune_from)
        # As in training: steps_per_execution cut to a divisor of the (here: timed) epoch's steps.
        compile_model(model, learning_rate, config, steps_per_epoch=args.steps)
        first_seconds[phase] = round(warm_up(model, data), 1)
        runs = [args.steps * config.batch_size / timed_fit(model, data, args.steps) for _ in range(args.repeats)]
        rates[f"{phase}_img_per_s"] = summary(runs)
        compiled[phase] = bool(model.jit_compile)  # False when Keras fell back from jit_compile=True
    return {**rates, "xla_in_effect": compiled, "steps_per_execution": model.steps_per_execution,
            "first_execution_seconds": first_seconds}  # tracing, and compiling under XLA


def measure_phases(args: argparse.Namespace) -> dict:
    """Images/s per phase with params.yaml's settings (XLA as params.yaml says)."""
    return phase_rates(args, bench_config(args))


def measure_xla(args: argparse.Namespace) -> dict:
    """Images/s per phase with jit_compile off and on."""
    # XLA and op determinism exclude each other (facerec.config refuses both).
    return {f"jit_compile_{setting}": phase_rates(args, bench_config(args, jit_compile=setting, deterministic=False))
            for setting in (False, True)}


def measure_host_overhead(args: argparse.Namespace) -> dict:
    """ms of host-side loop per step: a trivial model, steps_per_execution 1 vs params.yaml's value.

    The model does almost no arithmetic, so a step's time is Keras' and TensorFlow's per-step
    bookkeeping: what a GPU step pays on top of its kernels.
    """
    configured = load_config().train.steps_per_execution
    steps = args.overhead_steps - args.overhead_steps % configured  # whole executions only
    data = tf.data.Dataset.from_tensors((np.zeros((1, 4), "float32"), np.zeros((1,), "float32"))).repeat()
    figures = {}
    for steps_per_execution in sorted({1, configured}):
        runs = []
        for _ in range(args.repeats):
            fresh_session(args)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
            warm_up(model, data)
            runs.append(1000 * timed_fit(model, data, steps) / steps)
        figures[f"ms_per_step_at_steps_per_execution_{steps_per_execution}"] = summary(runs)
    return {"steps": steps, **figures}


def seconds_of(action, repeats: int) -> dict:
    """Run `action` `repeats` times; the summary of its seconds."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        runs.append(time.perf_counter() - started)
    return summary(runs)


def measure_fixed_costs(args: argparse.Namespace) -> dict:
    """Per-epoch time of a Pins-sized epoch: training steps, validation, backups, and what the input can feed.

    Training and validation run on random batches (no input cost); a backup is ResumableBackup's
    save of the phase's model and optimizer; the input is ShuffledEpochs over a filled memory
    cache of random images (the disk cache's rates are benchmarks/cache_readback.py's). Shares are
    of the epoch's training time; the input overlaps training (prefetch) and only costs time when
    its share is above 1.
    """
    config = bench_config(args)
    fresh_session(args)
    model = build_model(config, CLASSES, seed=0)
    compile_model(model, config.learning_rate, config, steps_per_epoch=args.steps)
    train_batches = random_batches(config.batch_size, config.image_size)
    warm_up(model, train_batches)
    train_rate = args.steps * config.batch_size / timed_fit(model, train_batches, args.steps)
    val_rates = {}
    for batch_size in sorted({config.batch_size, config.val_batch_size}):
        batches = random_batches(batch_size, config.image_size)
        model.evaluate(batches.take(1), verbose=0)  # trace this batch shape
        timing = seconds_of(lambda: model.evaluate(batches.take(args.val_steps), verbose=0), args.repeats)  # noqa: B023
        val_rates[batch_size] = args.val_steps * batch_size / timing["median"]
    backups = {}
    with tempfile.TemporaryDirectory(prefix="facerec-bench-backup-") as folder:
        for phase in ("phase1_frozen", "phase2_fine_tune"):
            if phase == "phase2_fine_tune":  # more trainable weights: Adamax's moments for them too
                unfreeze_top(model, config.fine_tune_from)
                compile_model(model, config.fine_tune_learning_rate, config, steps_per_epoch=1)
                model.fit(random_batches(config.batch_size, config.image_size), steps_per_epoch=1, epochs=1, verbose=0)
            backup = ResumableBackup(Path(folder) / phase, [], every_epochs=1, first_epoch=0)
            backup.set_model(model)
            timing = seconds_of(backup._save_model, args.repeats)  # noqa: SLF001 - the save itself, as on_epoch_end runs it
            megabytes = sum(path.stat().st_size for path in (Path(folder) / phase).iterdir()) / 1e6
            backups[phase] = {"seconds": timing, "mb": round(megabytes)}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.input_images, config.image_size, config.image_size, 3), dtype=np.uint8)
    examples = tf.data.Dataset.from_tensor_slices((images, np.arange(args.input_images) % CLASSES)).cache()
    stream = ShuffledEpochs(examples, args.input_images, config.batch_size, seed=0)
    for _ in stream.epochs(0, 1):  # fill the cache
        pass
    input_timing = seconds_of(lambda: [None for _ in stream.epochs(1, 2)], args.repeats)
    input_rate = args.input_images / input_timing["median"]
    train_s = PINS_TRAIN_IMAGES / train_rate
    backup_s = backups["phase1_frozen"]["seconds"]["median"]
    epoch = {"train_s": round(train_s, 2),
             **{f"validation_at_batch_{size}_s": round(PINS_VAL_IMAGES / rate, 2) for size, rate in val_rates.items()},
             "backup_every_epoch_s": round(backup_s, 2),
             f"backup_every_{config.backup_every_epochs}_epochs_s": round(backup_s / config.backup_every_epochs, 2),
             "input_memory_cache_s": round(PINS_TRAIN_IMAGES / input_rate, 2)}
    shares = {key.removesuffix("_s"): float(f"{value / train_s:.2g}") for key, value in epoch.items() if key != "train_s"}
    return {"train_img_per_s": round(train_rate, 1), "val_img_per_s": {str(k): round(v, 1) for k, v in val_rates.items()},
            "backup": backups, "input_memory_cache_img_per_s": round(input_rate),
            "pins_epoch": {"train_images": PINS_TRAIN_IMAGES, "val_images": PINS_VAL_IMAGES, **epoch},
            "share_of_training_time": shares}




def keras_augmentation(config: TrainConfig) -> keras.Sequential:
    """The four resampling layers (plus flip) the model used before RandomAffine, at the same ranges."""
    from facerec.model import SymmetricShear

    augment = config.model.augment
    return keras.Sequential([
        keras.layers.RandomRotation(augment.rotation_deg / 360.0, fill_mode="nearest", seed=0),
        keras.layers.RandomTranslation(augment.shift_fraction, augment.shift_fraction, fill_mode="nearest", seed=1),
        SymmetricShear(augment.shear_fraction, augment.shear_fraction, fill_mode="nearest", seed=2),
        keras.layers.RandomZoom(augment.zoom_fraction, augment.zoom_fraction, fill_mode="nearest", seed=3),
        keras.layers.RandomFlip("horizontal", seed=4)])


def measure_augmentation(args: argparse.Namespace) -> dict:
    """Images/s of the augmentation alone in a tf.function: Keras' four resamplings vs the one warp."""
    config = bench_config(args)
    images = next(iter(random_batches(config.batch_size, config.image_size)))[0]
    figures = {}
    for name, layer in (("keras_four_layers", keras_augmentation(config)),
                        ("random_affine_one_warp", build_augmentation(config.model.augment, seed=0))):
        step = tf.function(lambda batch, layer=layer: layer(tf.cast(batch, tf.float32), training=True))
        step(images)  # trace
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for _ in range(args.steps):
                step(images).numpy()
            runs.append(args.steps * config.batch_size / (time.perf_counter() - started))
        figures[f"{name}_img_per_s"] = summary(runs)
    return figures


MEASUREMENTS = {"phases": measure_phases, "xla": measure_xla, "host_overhead": measure_host_overhead,
                "fixed_costs": measure_fixed_costs, "augmentation": measure_augmentation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224, help="px (the project's default is 224)")
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per phase and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--overhead-steps", type=int, default=2048, help="trivial-model steps per repeat")
    parser.add_argument("--val-steps", type=int, default=4, help="timed validation batches per repeat (fixed_costs)")
    parser.add_argument("--input-images", type=int, default=2048, help="random images in the input's memory cache")
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS), help="run only these measurements")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION_SETTINGS,
                        help="instead of params.yaml's train.mixed_precision")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.dtype_policy = configure_mixed_precision(args.mixed_precision or load_config().train.mixed_precision)
    result = {"image_size_px": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
              "repeats": args.repeats, "dtype_policy": args.dtype_policy,
              "devices": [device.name for device in tf.config.list_logical_devices()],
              "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                       for gpu in tf.config.list_physical_devices("GPU")],
              "load_average_before": load_average()}
    for name in args.only or MEASUREMENTS:
        started = time.perf_counter()
        result[name] = MEASUREMENTS[name](args)
        result[name]["seconds"] = round(time.perf_counter() - started, 1)
        log.info("%s: %s", name, json.dumps(result[name]))
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
