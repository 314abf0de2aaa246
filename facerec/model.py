"""Build the ResNet50 transfer-learning classifier with preprocessing and augmentation inside."""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from facerec.augment import RandomAffine
from facerec.config import AugmentConfig, TrainConfig
from facerec.errors import PipelineInputError

# ImageNet channel means in BGR order, as keras.applications.resnet50.preprocess_input ("caffe").
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="facerec")
class ResNetPreprocess(layers.Layer):
    """resnet50.preprocess_input as a saved layer, so evaluate/predict use exactly train's."""

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="facerec")
class SymmetricShear(layers.RandomShear):
    """RandomShear whose saved config loads again (models saved before RandomAffine hold it).

    Keras 3.15 saves a factor f as [-f, f], which its own constructor then rejects, so a model
    with plain RandomShear cannot be reloaded.
    """

    def __init__(self, x_factor=0.0, y_factor=0.0, **kwargs):
        def symmetric(factor):
            return max(abs(value) for value in factor) if isinstance(factor, list | tuple) else factor

        super().__init__(symmetric(x_factor), symmetric(y_factor), **kwargs)


# What keras.applications.ResNet50(weights="imagenet", include_top=False) downloads; fetching it
# ourselves, under the same name into Keras' own cache, lets an offline failure say what to do.
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{IMAGENET_WEIGHTS_FILE}"
IMAGENET_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"


def keras_cache_dir() -> Path:
    """The folder keras.utils.get_file keeps downloaded model weights in."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def resolve_weights(weights: str) -> str | None:
    """The weights file keras.applications should load (None: random initialisation)."""
    if weights == "none":
        return None
    if weights != "imagenet":
        return str(Path(weights).expanduser())  # facerec.config checked that the file exists
    try:
        return keras.utils.get_file(IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_URL, cache_subdir="models",
                                    file_hash=IMAGENET_WEIGHTS_MD5)
    except Exception as error:  # noqa: BLE001 - Keras wraps every fetch failure in a bare Exception
        cached = keras_cache_dir() / IMAGENET_WEIGHTS_FILE
        raise PipelineInputError(
            f"train.weights = 'imagenet' needs the ImageNet ResNet50 weights, and fetching them failed "
            f"({error}). Either copy the file, fetched on a machine with internet from {IMAGENET_WEIGHTS_URL}, "
            f"to {cached} (Keras' own cache; it is then used offline) or anywhere and set "
            f"`train.weights: /path/to/{IMAGENET_WEIGHTS_FILE}`; or train from random weights with "
            "`train.weights: none` (far lower accuracy; fine for the demo)") from None


def build_augmentation(config: AugmentConfig, seed: int) -> RandomAffine:
    """Random geometric changes in one warp, active only while training (Keras skips it at inference)."""
    return RandomAffine(config.rotation_deg, config.shift_fraction, config.shear_fraction, config.zoom_fraction,
                        config.horizontal_flip, seed=seed, name="augmentation")


def build_model(config: TrainConfig, num_classes: int, seed: int) -> keras.Model:
    """Input (uint8-range RGB) → augmentation → preprocess → ResNet50 → the original head."""
    size = config.image_size
    head = config.model
    inputs = keras.Input(shape=(size, size, 3), name="image")
    augmented = build_augmentation(head.augment, seed)(inputs)
    preprocessed = ResNetPreprocess(name="resnet_preprocess")(augmented)
    base = keras.applications.ResNet50(
        include_top=False, weights=resolve_weights(config.weights), input_shape=(size, size, 3), pooling="avg"
    )
    base.trainable = not config.freeze_base
    # A pretrained base runs with training=False, so its BatchNorm stays in inference mode even
    # when unfrozen for fine-tuning: re-estimating ImageNet statistics on a small dataset wrecks
    # the features. A base trained from scratch (weights none) needs batch statistics to learn.
    pretrained = config.weights != "none"
    features = base(preprocessed, training=False if pretrained else None)
    # synchronized: with several replicas, batch statistics come from the global batch, so every
    # worker ends with the same moving averages (unsynchronized, each keeps its own shard's).
    hidden = layers.BatchNormalization(synchronized=True)(features)
    hidden = layers.Dropout(head.head_dropout[0], seed=seed)(hidden)
    hidden = layers.Dense(head.head_units, activation="elu")(hidden)
    hidden = layers.BatchNormalization(synchronized=True)(hidden)
    hidden = layers.Dropout(head.head_dropout[1], seed=seed + 1)(hidden)
    # float32 softmax keeps probabilities accurate when the rest runs in mixed precision.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="identity")(hidden)
    return keras.Model(inputs, outputs, name="resnet50_facerec")
