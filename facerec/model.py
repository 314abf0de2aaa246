"""Build the ResNet50 transfer-learning classifier with preprocessing and augmentation inside."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import keras
from keras import layers

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
    """RandomShear whose saved config loads again.

    Keras 3.15 saves a factor f as [-f, f], which its own constructor then rejects, so a model
    with plain RandomShear cannot be reloaded.
    """

    def __init__(self, x_factor=0.0, y_factor=0.0, **kwargs):
        def symmetric(factor):
            return max(abs(value) for value in factor) if isinstance(factor, list | tuple) else factor

        super().__init__(symmetric(x_factor), symmetric(y_factor), **kwargs)


@dataclass(frozen=True)
class AugmentConfig:
    """The original ImageDataGenerator family, expressed as fractions Keras layers understand."""

    rotation_deg: float = 20.0  # max rotation either way
    shift_fraction: float = 0.2  # width and height shift
    shear_fraction: float = 0.2
    zoom_fraction: float = 0.2
    horizontal_flip: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides the network's layers; unknown keys raise in from_params."""

    num_classes: int
    image_size_px: int = 224
    weights: str = "imagenet"  # imagenet | none | path to a ResNet50 no-top weights file
    freeze_base: bool = True  # phase 1 trains only the head
    head_dropout: tuple[float, float] = (0.1, 0.4)  # the original head's two dropout rates
    head_units: int = 1024
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_params(cls, num_classes: int, params: dict) -> ModelConfig:
        """Build from the train.model section of params.yaml."""
        known = {f.name for f in fields(cls)} - {"num_classes"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"params.yaml: unknown train.model keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(params)
        if "augment" in values:
            values["augment"] = AugmentConfig(**values["augment"])
        if "head_dropout" in values:
            values["head_dropout"] = tuple(values["head_dropout"])
        return cls(num_classes=num_classes, **values)


def resolve_weights(weights: str) -> str | None:
    """Map the weights param onto what keras.applications expects, checking a path exists."""
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return None
    if not Path(weights).is_file():
        raise ValueError(
            f"params.yaml: train.weights = {weights!r} is neither 'imagenet', 'none' nor an existing file; "
            "give the path of a ResNet50 no-top weights file (.h5 / .weights.h5)"
        )
    return weights


def build_augmentation(config: AugmentConfig, seed: int) -> keras.Sequential:
    """Random geometric changes, active only while training (Keras skips them at inference)."""
    steps = [
        layers.RandomRotation(config.rotation_deg / 360.0, fill_mode="nearest", seed=seed),
        layers.RandomTranslation(config.shift_fraction, config.shift_fraction, fill_mode="nearest", seed=seed + 1),
        SymmetricShear(config.shear_fraction, config.shear_fraction, fill_mode="nearest", seed=seed + 2),
        layers.RandomZoom(config.zoom_fraction, config.zoom_fraction, fill_mode="nearest", seed=seed + 3),
    ]
    if config.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(steps, name="augmentation")


def build_model(config: ModelConfig, seed: int = 0) -> keras.Model:
    """Input (uint8-range RGB) → augmentation → preprocess → ResNet50 → the original head."""
    size = config.image_size_px
    inputs = keras.Input(shape=(size, size, 3), name="image")
    augmented = build_augmentation(config.augment, seed)(inputs)
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
    hidden = layers.Dropout(config.head_dropout[0], seed=seed)(hidden)
    hidden = layers.Dense(config.head_units, activation="elu")(hidden)
    hidden = layers.BatchNormalization(synchronized=True)(hidden)
    hidden = layers.Dropout(config.head_dropout[1], seed=seed + 1)(hidden)
    # float32 softmax keeps probabilities accurate when the rest runs in mixed precision.
    outputs = layers.Dense(config.num_classes, activation="softmax", dtype="float32", name="identity")(hidden)
    return keras.Model(inputs, outputs, name="resnet50_facerec")
