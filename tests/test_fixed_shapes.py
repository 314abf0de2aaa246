"""Batches of one shape for XLA: full training batches, a padded validation batch with exact metrics."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from facerec.data import make_dataset, training_epochs
from facerec.training import compile_model

SIZE_PX = 16


def frame_of(root: Path, count: int) -> tuple[pd.DataFrame, list[str]]:
    paths = sorted(root.rglob("*.jpg"))[:: max(1, len(list(root.rglob("*.jpg"))) // count)][:count]
    frame = pd.DataFrame({"path": [path.relative_to(root).as_posix() for path in paths],
                          "identity": [path.parent.name for path in paths]})
    return frame, sorted(frame["identity"].unique())


def test_padded_validation_has_full_batches_and_the_same_metrics(synthetic_root):
    frame, labels = frame_of(synthetic_root, 10)
    common = {"image_size_px": SIZE_PX, "batch_size": 4, "shuffle": False, "seed": 0}
    padded = make_dataset(frame, synthetic_root, labels, pad_last_batch=True, **common)
    batches = list(padded.as_numpy_iterator())
    assert [len(images) for images, _, _ in batches] == [4, 4, 4], "10 images → 3 full batches (2 blanks)"
    weights = np.concatenate([weight for _, _, weight in batches])
    assert (weights[10:] == 0).all() and np.allclose(weights[:10], 12 / 10), "padding weighs 0, images 12/10"
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(len(labels), activation="softmax")(hidden))
    compile_model(model, 1e-3, tiny_config(train={"label_smoothing": 0.0}).train)
    exact = model.evaluate(make_dataset(frame, synthetic_root, labels, **common), verbose=0, return_dict=True)
    masked = model.evaluate(padded, verbose=0, return_dict=True)
    assert masked == pytest.approx(exact, rel=1e-5), f"padding changes no metric ({masked} vs {exact})"


def test_training_epochs_fill_the_short_batch_from_its_own_images(synthetic_root):
    frame, labels = frame_of(synthetic_root, 10)
    stream = training_epochs(frame, synthetic_root, labels, image_size_px=SIZE_PX, batch_size=4, seed=0,
                             fill_last_batch=True)
    batches = list(stream.epochs(0, 2).as_numpy_iterator())
    assert stream.steps_per_epoch == 3 and [len(images) for images, _ in batches] == [4] * 6, "3 full batches an epoch"
    last_images, last_labels = batches[2]
    assert np.array_equal(last_images[2:], last_images[:2]) and np.array_equal(last_labels[2:], last_labels[:2]), \
        "the 2 images left over fill their batch by repeating"
    first_epoch = np.concatenate([images for images, _ in batches[:3]])[:10]
    assert len({image.tobytes() for image in first_epoch}) == 10, "every image of the split is in each epoch"
    plain = training_epochs(frame, synthetic_root, labels, image_size_px=SIZE_PX, batch_size=4, seed=0)
    assert [len(images) for images, _ in plain.epochs(0, 1).as_numpy_iterator()] == [4, 4, 2], "unfilled by default"


def test_base_seed_zero_trains(synthetic_root):
    import tensorflow as tf

    tf.random.set_seed(0)  # what configure_determinism does for base.seed = 0
    frame, labels = frame_of(synthetic_root, 10)
    stream = training_epochs(frame, synthetic_root, labels, image_size_px=SIZE_PX, batch_size=4, seed=0)
    assert len(list(stream.epochs(1, 3).as_numpy_iterator())) == 6, "epochs 1 and 2 of 3 batches each"


def test_accuracy_counts_each_weighted_image_once():
    from facerec.training import CountedAccuracy

    metric = CountedAccuracy()
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], "float32")
    metric.update_state(np.array([0, 0, 1]), probabilities, sample_weight=np.array([0.5, 2.0, 0.0]))
    assert float(metric.result()) == pytest.approx(0.5), "class weights do not tilt it; padding (0) is left out"
