"""DVC stage: export the trained model as SavedModel, TFLite and ONNX, each checked against Keras on the test split."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from facerec.atomic import atomic_dir, write_json
from facerec.config import ExportConfig, load_config
from facerec.data import label_ids, make_dataset
from facerec.face_data import image_root
from facerec.errors import PipelineInputError
from facerec.export import (
    ONNX_FILE,
    SAVED_MODEL_DIR,
    TFLITE_FILE,
    agreement,
    inference_network,
    load_onnx,
    load_saved_model,
    load_tflite,
    run_batches,
    size_bytes,
    speed,
    write_onnx,
    write_saved_model,
    write_tflite,
)
from facerec.manifests import load_split
from facerec.open_set import model_digest
from facerec.predict import load_classifier
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.export")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces-dir", type=Path, required=True, help="aligned crops (read when faces.detector is on)")
    parser.add_argument("--test", type=Path, required=True, help="test split CSV: the images every format is checked on")
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    return parser.parse_args()


def decoded_test_split(classifier, frame, images_at: Path) -> np.ndarray:
    """The test split decoded and resized exactly as evaluate reads it, as one uint8 array."""
    if frame.empty:
        raise PipelineInputError("the test split is empty, so the exported models cannot be checked")
    dataset = make_dataset(frame, images_at, classifier.labels, image_size_px=classifier.image_size_px, batch_size=64,
                           shuffle=False, seed=0)
    return np.concatenate([images.numpy() for images, _ in dataset])


def write_formats(network, staging: Path, config: ExportConfig) -> dict:
    """Write each requested format into `staging`; return its loader for the checks."""
    loaders = {}
    if "saved_model" in config.formats:
        write_saved_model(network, staging / SAVED_MODEL_DIR)
        loaders["saved_model"] = lambda: load_saved_model(staging / SAVED_MODEL_DIR)
    if "tflite" in config.formats:
        write_tflite(network, staging / TFLITE_FILE, config.tflite_quantization)
        loaders["tflite"] = lambda: load_tflite(staging / TFLITE_FILE)
    if "onnx" in config.formats:
        write_onnx(network, staging / ONNX_FILE)
        loaders["onnx"] = lambda: load_onnx(staging / ONNX_FILE)
    return loaders


def main() -> None:
    args = parse_args()
    params = load_config()
    config = params.export
    model_path = args.model_dir / "model.keras"
    classifier = load_classifier(model_path)
    frame = load_split(args.test)
    # The images the model was trained and evaluated on: aligned crops when the detector is on.
    images = decoded_test_split(classifier, frame, image_root(params.faces.detector, args.raw, args.faces_dir))
    true_ids = label_ids(frame["identity"], classifier.labels)
    reference, _ = classifier.predict(images, batch_size=config.throughput_batch_size)
    network = inference_network(classifier.model)
    keras_runner = lambda batch: network.predict_on_batch(batch)  # noqa: E731  timing baseline
    metrics = {"keras": {"accuracy": round(float(np.mean(reference.argmax(1) == true_ids)), 6),
                         **speed(keras_runner, images, config.timing_images, config.throughput_batch_size)}}
    with atomic_dir(args.export_dir) as staging:
        loaders = write_formats(network, staging, config)
        for name, load in loaders.items():
            runner = load()  # reloaded from disk: what a user of the file gets
            outputs = run_batches(runner, images, config.throughput_batch_size)
            metrics[name] = {**agreement(reference, outputs["probabilities"], true_ids),
                             "bytes": size_bytes(staging / {"saved_model": SAVED_MODEL_DIR, "tflite": TFLITE_FILE,
                                                            "onnx": ONNX_FILE}[name]),
                             **speed(runner, images, config.timing_images, config.throughput_batch_size)}
            log.info("%s: top-1 agreement %.4f with Keras, max |Δp| %.2g, accuracy %.4f (Keras %.4f) on %d test "
                     "images; %d bytes; %.1f ms/image at batch 1, %.1f images/s at batch %d", name,
                     metrics[name]["top1_agreement"], metrics[name]["max_abs_diff"], metrics[name]["accuracy"],
                     metrics["keras"]["accuracy"], len(images), metrics[name]["bytes"],
                     metrics[name]["ms_per_image"], metrics[name]["images_per_s"], config.throughput_batch_size)
        shutil.copy(args.model_dir / "labels.json", staging / "labels.json")
        (staging / "export.json").write_text(json.dumps({
            "model_sha256": model_digest(model_path), "image_size_px": classifier.image_size_px,
            "labels": "labels.json (index i names probability column i)", "formats": sorted(loaders),
            "tflite_quantization": config.tflite_quantization if "tflite" in loaders else None,
            "inputs": {"saved_model": "uint8 images [batch, any height, any width, 3], RGB; resized inside",
                       "tflite": f"uint8 images [batch, {classifier.image_size_px}, {classifier.image_size_px}, 3]",
                       "onnx": f"uint8 images [batch, {classifier.image_size_px}, {classifier.image_size_px}, 3]"},
            "outputs": {"probabilities": "[batch, identities] softmax", "embeddings": "[batch, width] unit length"},
        }, indent=1) + "\n", encoding="utf-8")
    metrics["n_test"] = len(images)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
