"""Model-layer tests: shapes, what each phase may change, overfitting, recipes, save/reload."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT, merged, tiny_config

from facerec.config import TrainConfig, read_params
from facerec.model import ResNetPreprocess, build_model
from facerec.training import compile_model, unfreeze_top

TRAIN = tiny_config().train  # 32 px, random (weights none) base
SIZE_PX = TRAIN.image_size
NO_AUGMENT = replace(TRAIN.model.augment, rotation_deg=0, shift_fraction=0, shear_fraction=0, zoom_fraction=0,
                     horizontal_flip=False)
# The original recipe, exactly as docs/training.md passes it to `dvc exp run -S`.
ORIGINAL_OVERRIDES = {"fine_tune_epochs": 0, "label_smoothing": 0.0, "weight_decay": 0.0,
                      "early_stopping_patience": 0}


def tiny_model(num_classes=3, weights="none", **model_changes) -> keras.Model:
    """32 px ResNet50 classifier with a random (or file) base, built in a second or two."""
    return build_model(replace(TRAIN, weights=weights, model=replace(TRAIN.model, **model_changes)), num_classes,
                       seed=0)


def images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, SIZE_PX, SIZE_PX, 3)).astype("float32"), np.arange(count) % 3


def eager_compile(model: keras.Model, learning_rate=1e-3, **train_changes) -> None:
    """compile_model, then run Keras' own train_step eagerly: no 10-20 s graph trace per test."""
    compile_model(model, learning_rate, replace(TRAIN, learning_rate=learning_rate, **train_changes))
    model.run_eagerly = True


def base_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.get_layer("resnet50").layers}


def test_output_is_one_probability_row_per_image():
    model = tiny_model(num_classes=5)
    batch, _ = images(2)
    probabilities = model.predict(batch, verbose=0)
    assert probabilities.shape == (2, 5), "one row per image, one column per identity"
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5), "rows are softmax distributions"


def test_weights_file_is_loaded_and_frozen_base_survives_a_step(tmp_path):
    weights_file = tmp_path / "x.weights.h5"
    reference = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                            input_shape=(SIZE_PX, SIZE_PX, 3))
    reference.save_weights(weights_file)
    model = tiny_model(weights=str(weights_file))
    expected = [w.numpy() for w in reference.weights]
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(expected, model.get_layer("resnet50").weights)), \
        "train.weights=<path> loads that file into the base"
    head_before = model.get_layer("identity").get_weights()[0].copy()
    eager_compile(model)
    model.train_on_batch(*images(6))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(expected, model.get_layer("resnet50").weights)), \
        "phase 1 leaves every base weight (BatchNorm statistics too) untouched"
    assert not np.array_equal(head_before, model.get_layer("identity").get_weights()[0]), "the head does learn"


def test_phase2_changes_only_unfrozen_non_batchnorm_base_layers():
    model = tiny_model()
    unfreeze_top(model, "conv5_block3_1_conv")
    eager_compile(model, learning_rate=1e-2)
    before = base_weights(model)
    model.train_on_batch(*images(6))
    after = base_weights(model)
    names = list(before)
    start = names.index("conv5_block3_1_conv")
    changed = {name for name in names if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}
    batchnorms = {layer.name for layer in model.get_layer("resnet50").layers
                  if isinstance(layer, keras.layers.BatchNormalization)}
    assert not changed & set(names[:start]), "layers before fine_tune_from stay frozen"
    assert not changed & batchnorms, "BatchNorm weights and statistics stay as they were"
    convs_after = {name for name in names[start:] if name.endswith("_conv")}
    assert convs_after and convs_after <= changed, "every conv layer from fine_tune_from on is trained"


def test_loss_falls_when_overfitting_a_handful_of_images():
    model = tiny_model(augment=NO_AUGMENT, head_dropout=(0.0, 0.0))
    eager_compile(model, learning_rate=1e-2, label_smoothing=0.0, weight_decay=0.0)  # plain cross-entropy
    batch, labels = images(6)
    first = model.train_on_batch(batch, labels)[0]
    for _ in range(7):
        last = model.train_on_batch(batch, labels)[0]
    assert last < 0.5 * first, f"the head can memorise 6 images (loss {first:.3f} → {last:.3f})"


def _recipe(train_overrides: dict, model_overrides: dict | None = None) -> tuple[keras.Model, TrainConfig]:
    """The project's own train section (not the tiny one) with `train_overrides`, at 32 px without weights."""
    params = merged(read_params(PROJECT_ROOT / "params.yaml")["train"],
                    {**train_overrides, "weights": "none", "image_size": SIZE_PX, "model": model_overrides or {}})
    config = TrainConfig.from_params(params)
    model = build_model(config, 3, seed=0)
    compile_model(model, config.learning_rate, config)
    return model, config


@pytest.mark.parametrize("recipe", ["original", "default"])
def test_recipes_build_the_intended_layers(recipe):
    original = recipe == "original"
    model, plan = (_recipe(ORIGINAL_OVERRIDES, {"head_dropout": [0.1, 0.4]}) if original else _recipe({}))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "RandomAffine", "ResNetPreprocess", "Functional", "BatchNormalization",
                     "Dropout", "Dense", "BatchNormalization", "Dropout", "Dense"], "augment → preprocess → base → head"
    augmentation = model.get_layer("augmentation").get_config()
    assert {key: augmentation[key] for key in ("rotation_deg", "shift_fraction", "shear_fraction", "zoom_fraction",
                                               "horizontal_flip")} == \
        {"rotation_deg": 20, "shift_fraction": 0.2, "shear_fraction": 0.2, "zoom_fraction": 0.2,
         "horizontal_flip": True}, "the ImageDataGenerator family with params.yaml's ranges"
    assert isinstance(model.layers[2], ResNetPreprocess) and not model.get_layer("resnet50").trainable
    dense = model.layers[6]
    assert (dense.units, dense.activation.__name__) == (1024, "elu"), "the original Dense 1024 elu"
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == ([0.1, 0.4] if original else [0.2, 0.5]), "dropout as the recipe says"
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adamax) and float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert (optimizer.weight_decay is None) == original, "weight decay only in the better recipe"
    assert (plan.fine_tune_epochs == 0) == original and (plan.early_stopping_patience == 0) == original
    assert plan.epochs == 60 and (plan.label_smoothing == 0) == original, "60 phase-1 epochs; smoothing 0.1"


# Two model instances run the same float32 graph but may not sum in the same order (thread
# scheduling under CPU load): predictions differ by ~1e-8. A wrong reload (weights or BatchNorm
# statistics of another state) moves them by far more than this.
SAME_PREDICTIONS_ATOL = 1e-6


def same_predictions(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two models' probabilities agree up to float32 summation-order noise."""
    return first.shape == second.shape and np.allclose(first, second, rtol=0, atol=SAME_PREDICTIONS_ATOL)


def test_saved_model_reloads_in_safe_mode_with_identical_predictions(tmp_path):
    model = tiny_model()
    eager_compile(model, label_smoothing=0.1, weight_decay=0.004)
    batch, labels = images(6)
    untrained_weights = [weights.copy() for weights in model.get_weights()]
    model.train_on_batch(batch, labels)  # moves BatchNorm statistics and the optimizer off their initial state
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    trained, restored = model.predict(batch, verbose=0), reloaded.predict(batch, verbose=0)
    assert same_predictions(trained, restored), \
        ("the saved model (augmentation and preprocessing inside) predicts as the trained one: "
         f"largest difference {np.abs(trained - restored).max():.2e}")
    reloaded.set_weights(untrained_weights)  # a reload that missed one training step
    wrong = reloaded.predict(batch, verbose=0)
    assert not same_predictions(trained, wrong), \
        f"the tolerance still catches a reload with the wrong weights (they differ by {np.abs(trained - wrong).max():.2e})"



def test_imagenet_weights_are_the_file_keras_itself_would_fetch():
    from keras.src.applications import resnet  # Keras' own constants, to catch drift after an upgrade

    from facerec.model import IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_MD5, IMAGENET_WEIGHTS_URL

    assert IMAGENET_WEIGHTS_URL == resnet.BASE_WEIGHTS_PATH + IMAGENET_WEIGHTS_FILE, "same URL and cache file name"
    assert IMAGENET_WEIGHTS_MD5 == resnet.WEIGHTS_HASHES["resnet50"][1], "same no-top weights checksum"


@pytest.fixture
def bfloat16_policy():
    from facerec.runtime import configure_mixed_precision

    assert configure_mixed_precision("bfloat16") == "mixed_bfloat16", "train.mixed_precision = bfloat16's policy"
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_computes_in_bfloat16_but_augments_and_answers_in_float32(bfloat16_policy):
    model = tiny_model()
    assert model.get_layer("resnet50").get_layer("conv1_conv").compute_dtype == "bfloat16", "the base runs bf16"
    assert model.get_layer("augmentation").compute_dtype == "float32", "the warp stays float32"
    assert model.get_layer("identity").compute_dtype == "float32", "the softmax stays float32"
    eager_compile(model)
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer), "bfloat16 needs no loss scaling"
    loss = model.train_on_batch(*images(6))[0]
    assert np.isfinite(loss), f"a bfloat16 step trains (loss {loss})"
    assert model.predict(images(2)[0], verbose=0).dtype == np.float32, "probabilities come out float32"


def test_the_project_model_compiles_with_xla_without_falling_back():
    import warnings

    model = tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_model(model, 1e-3, replace(TRAIN, jit_compile=True, deterministic=False))
    assert model.jit_compile, "augmentation, preprocessing, base and head all support XLA"
    assert not [str(w.message) for w in caught if "jit_compile" in str(w.message)], "no fallback warning"
