"""Export the trained model for serving elsewhere (SavedModel, TFLite, ONNX) and check each against Keras."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from facerec.data import resize_square

SAVED_MODEL_DIR, TFLITE_FILE, ONNX_FILE = "saved_model", "model.tflite", "model.onnx"
OUTPUTS = ("probabilities", "embeddings")

Runner = Callable[[np.ndarray], dict]  # uint8 (images, size, size, 3) → {"probabilities", "embeddings"}


def inference_network(model: keras.Model) -> keras.Model:
    """uint8 square images → probabilities and unit-length embeddings, without the augmentation layers.

    Augmentation is inactive at inference but its random ops would still be traced into the
    exported graphs, and neither TFLite's built-in ops nor ONNX have them.
    """
    names = [layer.name for layer in model.layers]
    if "resnet_preprocess" not in names or names[-1] != "identity":
        raise ValueError(f"not a facerec model (layers {names}); export needs the model the train stage saves")
    size = model.input_shape[1]
    images = keras.Input((size, size, 3), dtype="uint8", name="images")
    hidden = images
    # build_model's layers after augmentation form one chain, so replaying them in order rebuilds it.
    for layer in model.layers[names.index("resnet_preprocess"):-1]:
        hidden = layer(hidden)
    probabilities = model.get_layer("identity")(hidden)
    embeddings = keras.layers.UnitNormalization(name="embeddings")(hidden)
    return keras.Model(images, {"probabilities": probabilities, "embeddings": embeddings}, name="facerec_serving")


def write_saved_model(network: keras.Model, directory: Path) -> None:
    """SavedModel whose `serving_default` signature takes uint8 images of any size."""
    size = network.input_shape[1]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, "images")])
    def serve(images):
        # The training pipeline's resize (anti-aliased when shrinking), so any photo size gives training's input.
        return network(resize_square(images, size), training=False)

    # A plain tf.Module tracking the TensorFlow variables the function captures: Keras 3.15's
    # ExportArchive tracks the Keras wrappers as well and so stores every weight twice (keras#23553).
    module = tf.Module()
    module.weights = [variable.value for variable in network.variables]
    module.serve = serve
    tf.saved_model.save(module, str(directory), signatures={"serving_default": serve.get_concrete_function()})


def write_tflite(network: keras.Model, path: Path, quantisation: str) -> None:
    """TFLite through Keras' LiteRT exporter: uint8 images already at the model's size (resize before calling)."""
    settings = {}
    if quantisation in ("dynamic_range", "float16"):
        settings["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantisation == "float16":
        settings["target_spec"] = {"supported_types": [tf.float16]}
    network.export(str(path), format="litert", verbose=False, **settings)


def write_onnx(network: keras.Model, path: Path) -> None:
    """ONNX through Keras' exporter (tf2onnx): uint8 images at the model's size in, both outputs out."""
    network.export(str(path), format="onnx", verbose=False)


def load_saved_model(directory: Path) -> Runner:
    """Call the SavedModel's serving signature on a batch."""
    signature = tf.saved_model.load(str(directory)).signatures["serving_default"]
    return lambda images: {name: value.numpy() for name, value in signature(images=tf.constant(images)).items()}


def load_tflite(path: Path) -> Runner:
    """Run the TFLite model through its signature (which resizes the batch dimension as needed)."""
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=None)
    runner = interpreter.get_signature_runner()
    return lambda images: runner(images=images)


def load_onnx(path: Path) -> Runner:
    """Run the ONNX model with ONNX Runtime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [output.name for output in session.get_outputs()]

    def run(images):
        values = session.run(None, {input_name: images})
        return {_output_key(name, value): value for name, value in zip(output_names, values, strict=True)}

    return run


def _output_key(name: str, value: np.ndarray) -> str:
    """Map an exporter's output name onto ours (ONNX names may carry suffixes such as ':0')."""
    for key in OUTPUTS:
        if key in name:
            return key
    raise ValueError(f"unexpected ONNX output {name!r} of shape {value.shape}")


def run_batches(runner: Runner, images: np.ndarray, batch_size: int) -> dict:
    """All images through `runner` in batches, outputs concatenated in order."""
    parts = [runner(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
    return {key: np.concatenate([part[key] for part in parts]) for key in OUTPUTS}


def agreement(reference: np.ndarray, probabilities: np.ndarray, true_ids: np.ndarray) -> dict:
    """How closely a format reproduces the Keras model's probabilities on the same images."""
    return {"top1_agreement": round(float(np.mean(reference.argmax(1) == probabilities.argmax(1))), 6),
            "max_abs_diff": float(np.abs(reference - probabilities).max()),
            "accuracy": round(float(np.mean(probabilities.argmax(1) == true_ids)), 6)}


def speed(runner: Runner, images: np.ndarray, timing_images: int, batch_size: int) -> dict:
    """ms per image one at a time, and images/s in batches of `batch_size`, after one warm-up call each."""
    singles = images[:timing_images]
    runner(singles[:1])
    started = time.perf_counter()
    for row in range(len(singles)):
        runner(singles[row:row + 1])
    ms_per_image = 1000 * (time.perf_counter() - started) / len(singles)
    batch = np.resize(images, (batch_size, *images.shape[1:]))  # repeats images when the split is small
    runner(batch)
    batches = max(1, timing_images // batch_size)
    started = time.perf_counter()
    for _ in range(batches):
        runner(batch)
    return {"ms_per_image": round(ms_per_image, 3),
            "images_per_s": round(batches * batch_size / (time.perf_counter() - started), 2)}


def size_bytes(path: Path) -> int:
    """A file's size, or the total of a folder's files."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
