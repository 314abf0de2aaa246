"""Export stage: SavedModel, TFLite and ONNX written, reloaded and compared with the Keras model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_params, write_params
from trained_model import IMAGE_PX

EXPORT_PARAMS = {"formats": ["saved_model", "tflite", "onnx"], "tflite_quantization": "dynamic_range",
                 "timing_images": 4, "throughput_batch_size": 4}


@pytest.fixture(scope="module")
def test_split(project, classifier, synthetic_root):
    """(uint8 test images at the model's size, Keras probabilities, Keras unit embeddings)."""
    from facerec.embed import embed_frame
    from facerec.manifests import load_split
    from facerec.predict import predict_frame
    from stages.export import decoded_test_split

    frame = load_split(project / "splits/test.csv")
    probabilities, _ = predict_frame(classifier, frame, synthetic_root, 8)
    return (decoded_test_split(classifier, frame, synthetic_root), probabilities,
            embed_frame(classifier, frame, synthetic_root, 8))


def run_export(project: Path, raw_dir: Path, out_dir: Path, monkeypatch, **params) -> dict:
    """Run the stage's main() as dvc would, in a scratch working directory; return export.json."""
    from stages import export

    out_dir.mkdir()
    write_params(out_dir, tiny_params(export={**EXPORT_PARAMS, **params}))
    monkeypatch.chdir(out_dir)
    monkeypatch.setattr(sys, "argv", [
        "export", "--model-dir", str(project / "models"), "--raw", str(raw_dir),
        "--faces-dir", str(out_dir / "no-faces"), "--test", str(project / "splits/test.csv"), "--export-dir", "export", "--metrics", "metrics/export.json"])
    export.main()
    return json.loads((out_dir / "metrics/export.json").read_text(encoding="utf-8"))


def test_inference_network_is_the_keras_model_without_augmentation(classifier, test_split):
    from facerec.export import inference_network

    images, probabilities, embeddings = test_split
    outputs = inference_network(classifier.model).predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-5,
                               err_msg="the serving network computes the saved model's probabilities")
    np.testing.assert_allclose(outputs["embeddings"], embeddings, atol=1e-5,
                               err_msg="its embeddings are facerec.embed's (unit-length head features)")


def test_bad_params_are_refused_before_any_output(project, synthetic_root, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="export.tflite_quantization = 'int4'"):
        run_export(project, synthetic_root, tmp_path / "run", monkeypatch, tflite_quantization="int4")
    with pytest.raises(ValueError, match=r"export.formats = \['tflite', 'coreml'\]"):
        run_export(project, synthetic_root, tmp_path / "run2", monkeypatch, formats=["tflite", "coreml"])
    assert not (tmp_path / "run/export").exists(), "nothing written for a bad param"


@pytest.mark.slow
def test_every_format_reloads_and_agrees_with_keras(project, synthetic_root, classifier, test_split, tmp_path,
                                                    monkeypatch):
    from facerec.data import resize_square
    from facerec.export import load_onnx, load_saved_model, load_tflite

    metrics = run_export(project, synthetic_root, tmp_path / "run", monkeypatch)
    images, probabilities, embeddings = test_split
    for name in ("saved_model", "tflite", "onnx"):
        entry = metrics[name]
        assert {"top1_agreement", "max_abs_diff", "bytes", "ms_per_image", "images_per_s"} <= set(entry), name
        assert entry["bytes"] > 0 and entry["ms_per_image"] > 0 and entry["images_per_s"] > 0, f"{name} measured"
    export_dir = tmp_path / "run/export"
    assert json.loads((export_dir / "labels.json").read_text()) == classifier.labels, "labels shipped with the models"

    # Float formats reproduce Keras up to float rounding; tolerances, since kernels differ between runtimes.
    for name, loader in (("saved_model", load_saved_model(export_dir / "saved_model")),
                         ("onnx", load_onnx(export_dir / "model.onnx"))):
        outputs = loader(images)
        np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-4,
                                   err_msg=f"{name} probabilities match the Keras model")
        np.testing.assert_allclose(outputs["embeddings"], embeddings, atol=1e-3,
                                   err_msg=f"{name} embeddings match facerec.embed")
        # Near-ties may flip within float rounding on a barely trained model: judge the clear cases.
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        clear = top_two[:, 1] - top_two[:, 0] > 1e-3
        assert clear.any() and np.array_equal(outputs["probabilities"][clear].argmax(1), probabilities[clear].argmax(1)), \
            f"{name} picks Keras' top identity wherever Keras' choice is not a near-tie"
        assert metrics[name]["top1_agreement"] >= 1 - (~clear).sum() / len(clear), f"{name}: the stage measures the same"
    # int8 weights (dynamic range) move probabilities a little; the ranking must survive on most images.
    tflite = load_tflite(export_dir / "model.tflite")(images)
    assert np.abs(tflite["probabilities"] - probabilities).max() < 0.1, "TFLite stays close to Keras"
    weight_bytes = 4 * classifier.model.count_params()
    assert metrics["saved_model"]["bytes"] < 1.2 * weight_bytes, "the SavedModel stores each float32 weight once"
    assert metrics["tflite"]["bytes"] < 0.5 * weight_bytes, "int8 weights: a smaller file"

    # Any photo size: the SavedModel resizes inside, exactly like the training pipeline.
    large = np.repeat(np.repeat(images[:2], 3, axis=1), 3, axis=2)
    outputs = load_saved_model(export_dir / "saved_model")(large)
    keras_on_resized = classifier.model.predict(resize_square(large, IMAGE_PX).numpy(), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], keras_on_resized, atol=1e-4,
                               err_msg="a 3x larger photo is resized inside the SavedModel as training resizes")
