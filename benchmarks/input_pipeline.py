"""Benchmark: images/s into the model — make_dataset vs the original ImageDataGenerator vs decode+resize alone.

Part 1 iterates each input path at 224 px, batch 32, over a train manifest of the Pins mirror.
Part 2 trains the frozen-base phase (weights none) for a few steps at a small size with each path.
Everything is extracted under a temporary folder and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)
import keras
import tensorflow as tf
from common import extract_mirror, load_average, mirror_argument, summary, train_manifest
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # Keras 3 keeps it, unexported

from facerec.config import load_config
from facerec.data import make_dataset
from facerec.model import build_model
from facerec.training import compile_model

log = logging.getLogger("benchmarks.input_pipeline")


def images_per_second(batches, max_batches: int | None = None) -> float:
    """Pull batches (an iterable of (images, labels)) and return images/s."""
    images, started = 0, time.perf_counter()
    for index, (batch_images, _) in enumerate(batches):
        images += int(batch_images.shape[0])
        if max_batches and index + 1 >= max_batches:
            break
    return images / (time.perf_counter() - started)


def ours(frame, raw_dir, labels, size_px: int, cache: str) -> tf.data.Dataset:
    return make_dataset(frame, raw_dir, labels, image_size_px=size_px, batch_size=32, shuffle=True, seed=42,
                        cache=cache)


def original(tree: Path, size_px: int, class_mode: str = "categorical"):
    """The original project's training input, verbatim (sparse labels only to fit our loss)."""
    generator = ImageDataGenerator(
        rotation_range=20, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
        horizontal_flip=True, preprocessing_function=keras.applications.resnet50.preprocess_input)
    return generator.flow_from_directory(str(tree), target_size=(size_px, size_px), batch_size=32, class_mode=class_mode)


def ceiling(frame, raw_dir, size_px: int) -> tf.data.Dataset:
    """Decode + resize on all cores and nothing else: what any input path can at most deliver."""
    paths = [str(raw_dir / relative) for relative in frame["path"]]

    def load(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (size_px, size_px)), 0

    return (tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(32).prefetch(tf.data.AUTOTUNE))


def link_tree(frame, raw_dir: Path, tree: Path) -> Path:
    """The train manifest as class folders of symlinks, the layout flow_from_directory reads."""
    for relative in frame["path"]:
        link = tree / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(raw_dir / relative)
    return tree


def input_only(frame, raw_dir, labels, tree, work, args) -> dict:
    """Part 1: images/s of each path at 224 px, every figure the median of args.repeats runs."""
    runs: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for cache in ("memory", "disk"):
            target = "memory" if cache == "memory" else str(work / f"cache-{repeat}" / "cache")
            dataset = ours(frame, raw_dir, labels, 224, target)
            runs.setdefault(f"a_ours_{cache}_epoch1_decode", []).append(images_per_second(dataset))
            runs.setdefault(f"a_ours_{cache}_epoch2_cached", []).append(images_per_second(dataset))
        runs.setdefault("b_original_generator", []).append(
            images_per_second(original(tree, 224), args.generator_batches))
        runs.setdefault("c_ceiling_decode_resize", []).append(images_per_second(ceiling(frame, raw_dir, 224)))
        log.info("repeat %d: %s (load %s)", repeat, {k: round(v[-1]) for k, v in runs.items()}, load_average())
    return {name: summary(values) for name, values in runs.items()}


def end_to_end(frame, raw_dir, labels, tree, args) -> dict:
    """Part 2: frozen-base training images/s at a small size, input path included."""
    size = args.e2e_size
    # The project's train section (params.yaml), without pretrained weights, at the benchmark's size.
    train = replace(load_config().train, weights="none", image_size=size)
    models, data = {}, {}
    # Ours: augmentation inside the model, warm memory cache (the steady state of epochs 2+).
    models["ours"] = build_model(train, len(labels), seed=0)
    data["ours"] = ours(frame, raw_dir, labels, size, "memory")
    images_per_second(data["ours"])  # fill the cache
    # Original: augmentation in the generator, so the model gets none (its preprocessing layer
    # then runs on preprocessed input: wrong numbers, same cost).
    no_augment = replace(train.model.augment, rotation_deg=0, shift_fraction=0, shear_fraction=0, zoom_fraction=0,
                         horizontal_flip=False)
    models["original"] = build_model(replace(train, model=replace(train.model, augment=no_augment)), len(labels),
                                     seed=0)
    data["original"] = original(tree, size, class_mode="sparse")
    # Compute alone: one fixed batch repeated, no input work at all.
    models["compute_only"] = build_model(train, len(labels), seed=0)
    first = next(iter(data["ours"]))
    data["compute_only"] = tf.data.Dataset.from_tensors(first).repeat()
    runs: dict[str, list[float]] = {name: [] for name in models}
    for name, model in models.items():
        compile_model(model, train.learning_rate, train)
        model.fit(data[name], steps_per_epoch=2, epochs=1, verbose=0)  # trace the graph
    for repeat in range(args.e2e_repeats):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(data[name], steps_per_epoch=args.e2e_steps, epochs=1, verbose=0)
            runs[name].append(args.e2e_steps * 32 / (time.perf_counter() - started))
        log.info("e2e repeat %d: %s (load %s)", repeat, {k: round(v[-1]) for k, v in runs.items()}, load_average())
    return {f"{name}_{size}px": summary(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generator-batches", type=int, default=40, help="batches per ImageDataGenerator run")
    parser.add_argument("--e2e-size", type=int, default=64)
    parser.add_argument("--e2e-steps", type=int, default=25)
    parser.add_argument("--e2e-repeats", type=int, default=5, help="interleaved: the shared CPU's speed drifts")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--run-epochs", type=int, default=60,
                        help="epochs of the training run the ratios average over")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keras.utils.set_random_seed(42)
    result = {"load_average_before": load_average(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="facerec-bench-input-") as scratch:
        work = Path(scratch)
        raw_dir = extract_mirror(args.mirror, work / "raw")
        frame = train_manifest(raw_dir)
        labels = sorted(frame["identity"].unique())
        tree = link_tree(frame, raw_dir, work / "tree")
        result.update(train_images=len(frame), identities=len(labels))
        result["input_224px_img_per_s"] = input_only(frame, raw_dir, labels, tree, work, args)
        result["load_average_after_input"] = load_average()
        if not args.skip_e2e:
            result["frozen_base_training_img_per_s"] = end_to_end(frame, raw_dir, labels, tree, args)
    medians = {name: values["median"] for name, values in result["input_224px_img_per_s"].items()}
    best_first_epoch = max(medians["a_ours_memory_epoch1_decode"], medians["a_ours_disk_epoch1_decode"])
    result["ratios"] = {
        "a_cached/b": round(medians["a_ours_memory_epoch2_cached"] / medians["b_original_generator"], 1),
        "a_decode/b": round(best_first_epoch / medians["b_original_generator"], 1),
        "a_decode/c": round(best_first_epoch / medians["c_ceiling_decode_resize"], 2),
    }
    # A training run: 1 decoding epoch, then cached ones (images/s averaged over the run's time).
    epochs = args.run_epochs
    for cache in ("memory", "disk"):
        first, later = medians[f"a_ours_{cache}_epoch1_decode"], medians[f"a_ours_{cache}_epoch2_cached"]
        average = epochs / (1 / first + (epochs - 1) / later)
        result["ratios"][f"a_{cache}_{epochs}_epochs_img_per_s"] = round(average)
        result["ratios"][f"a_{cache}_{epochs}_epochs/b"] = round(average / medians["b_original_generator"], 1)
        result["ratios"][f"a_{cache}_{epochs}_epochs/c"] = round(average / medians["c_ceiling_decode_resize"], 2)
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
