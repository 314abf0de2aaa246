"""The one-warp augmentation: ranges, identity, known transforms, seeding, inference, saving, XLA."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from facerec.augment import RandomAffine, affine_matrices, warp

SIZE_PX = 16


def dot_image(x: int, y: int) -> np.ndarray:
    """One 16 px black image with a single white pixel at (x, y)."""
    image = np.zeros((1, SIZE_PX, SIZE_PX, 3), "float32")
    image[0, y, x] = 255.0
    return image


def one_matrix(angle_deg=0.0, shift_px=(0.0, 0.0), shear=(0.0, 0.0), zoom=(1.0, 1.0), flip=0.0) -> np.ndarray:
    return affine_matrices(np.array([math.radians(angle_deg)], "float32"), np.array([shift_px], "float32"),
                           np.array([shear], "float32"), np.array([zoom], "float32"), np.array([flip], "float32"),
                           SIZE_PX, SIZE_PX)


def brightest(image: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(np.argmax(np.asarray(image)[0, :, :, 0]), (SIZE_PX, SIZE_PX))
    return int(x), int(y)


def test_drawn_parameters_stay_in_the_configured_ranges():
    layer = RandomAffine(rotation_deg=20, shift_fraction=0.2, shear_fraction=0.1, zoom_fraction=0.3,
                         horizontal_flip=True, seed=3)
    drawn = {name: np.asarray(value) for name, value in layer.sample_parameters(2000).items()}
    assert np.abs(drawn["angle_rad"]).max() <= math.radians(20) and np.abs(drawn["angle_rad"]).max() > math.radians(19)
    assert np.abs(drawn["shift_xy"]).max() <= 0.2 and np.abs(drawn["shear_xy"]).max() <= 0.1, "shift and shear"
    assert 0.7 <= drawn["zoom_xy"].min() and drawn["zoom_xy"].max() <= 1.3, "zoom in 1 ± zoom_fraction"
    assert not np.allclose(drawn["zoom_xy"][:, 0], drawn["zoom_xy"][:, 1]), "each axis zooms on its own draw"
    assert 0.45 < drawn["flip"].mean() < 0.55, "half the images are flipped"
    no_flip = RandomAffine(horizontal_flip=False, seed=3).sample_parameters(100)
    assert not np.asarray(no_flip["flip"]).any(), "horizontal_flip false never flips"


def test_zero_ranges_leave_images_exactly_as_they_are():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (4, SIZE_PX, SIZE_PX, 3)).astype("float32")
    layer = RandomAffine(seed=0)
    assert np.array_equal(np.asarray(layer(batch, training=True)), batch), "all ranges 0 and no flip: identity"
    assert np.allclose(one_matrix(), [[[1, 0, 0], [0, 1, 0]]]), "the identity matrix"


@pytest.mark.parametrize(("transform", "moved_to"), [
    ({"shift_px": (3.0, 0.0)}, (7, 10)),  # output x samples input x + 3: the dot moves 3 px left
    ({"shift_px": (0.0, -2.0)}, (10, 12)),  # output y samples input y - 2: the dot moves 2 px down
    ({"flip": 1.0}, (5, 10)),  # mirrored about the centre column 7.5: 15 - 10
    ({"angle_deg": 90.0}, (10, 5)),  # a quarter turn about the centre (7.5, 7.5): offset (2.5, 2.5) → (2.5, -2.5)
    ({"zoom": (0.5, 0.5)}, (12, 12)),  # zoom in 2×: offsets from the centre double (10 → 12.5, sampled to 12)
])
def test_a_known_transform_moves_a_known_pixel(transform, moved_to):
    out = warp(dot_image(10, 10), one_matrix(**transform))
    assert brightest(out) == moved_to, f"{transform} puts the dot at {moved_to}"


def test_same_seed_same_draws_and_inference_is_untouched():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, SIZE_PX, SIZE_PX, 3)).astype("uint8")
    first, second = (RandomAffine(20, 0.2, 0.2, 0.2, True, seed=7) for _ in range(2))
    assert np.allclose(first(batch, training=True), second(batch, training=True), atol=1e-3), "seeded: same warps"
    changed = np.asarray(first(batch, training=True))
    assert changed.dtype == np.float32 and not np.allclose(changed, batch), "training draws new changes"
    assert np.array_equal(np.asarray(first(batch, training=False)), batch.astype("float32")), \
        "inference passes images through unchanged (as float32)"


def test_layer_round_trips_through_keras_serialization():
    layer = RandomAffine(12, 0.1, 0.05, 0.15, False, seed=5, name="augmentation")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, RandomAffine) and restored.get_config() == layer.get_config(), "same settings"


def test_a_model_with_the_warp_compiles_with_xla():
    inputs = keras.Input((SIZE_PX, SIZE_PX, 3))
    hidden = RandomAffine(20, 0.2, 0.2, 0.2, True, seed=0)(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(hidden))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=True)
    assert model.jit_compile, "Keras keeps jit_compile=True (it falls back for its own augmentation layers)"
    model.fit(dot_image(3, 3).repeat(4, axis=0), np.arange(4) % 3, epochs=1, verbose=0)
    step = tf.function(lambda images: model(images, training=True), jit_compile=True)
    hlo = step.experimental_get_compiler_ir(tf.constant(dot_image(3, 3)))(stage="hlo")
    assert "gather" in hlo, "the warp lowers to XLA gathers"
