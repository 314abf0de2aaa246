"""Evaluate stage: metrics, figures, manifest order and agreement with training's val accuracy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_params, write_params
from trained_model import IMAGE_PX

from facerec.evaluation import (
    accuracy,
    plot_confusion,
    summary_metrics,
    top_k_accuracy,
    wilson_interval,
)

def run_evaluate(project: Path, raw_dir: Path, out_dir: Path, monkeypatch, *, unknown: bool) -> tuple[dict, dict]:
    """Run the stage's main() as dvc would, in a scratch working directory; return its metrics and report."""
    from stages import evaluate

    out_dir.mkdir()
    write_params(out_dir, tiny_params(base={"seed": 0}, evaluate={"known_acceptance_rate": 0.9,
                                                                  "open_set_score": "max_softmax"}))
    monkeypatch.chdir(out_dir)
    splits = project / "splits"
    monkeypatch.setattr(sys, "argv", [
        "evaluate", "--raw", str(raw_dir), "--faces-dir", "data/faces", "--test", str(splits / "test.csv"),
        "--val", str(splits / "val.csv"),
        "--unknown", str(splits / ("unknown.csv" if unknown else "absent.csv")),
        "--model-dir", str(project / "models"), "--metrics", "metrics/eval.json", "--report", "reports/eval.json",
        "--threshold-out", "reports/open_set.json", "--plots-dir", "plots/eval", "--known-gallery", "known_gallery"])
    evaluate.main()
    return tuple(json.loads((out_dir / name).read_text(encoding="utf-8"))
                 for name in ("metrics/eval.json", "reports/eval.json"))


def only_numbers(metrics: dict) -> bool:
    """Whether every metric is a plain number (no hashes, names, lists or nested tables)."""
    return all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in metrics.values())


def test_wilson_interval_and_top_k():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4), "textbook Wilson CI"
    assert wilson_interval(0, 0) == (0.0, 1.0), "no test images: no information"
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    truth = np.array([1, 2, 2])
    assert top_k_accuracy(truth, probabilities, 2) == pytest.approx(2 / 3), "true class within the top 2"
    assert accuracy(truth, probabilities) == pytest.approx(1 / 3), "only the second row's argmax is right"


def test_summary_names_what_it_was_measured_on():
    probabilities = np.eye(4)[[0, 1, 2, 2]] * 0.9 + 0.025
    metrics = summary_metrics(np.array([0, 1, 2, 3]), probabilities, ["a", "b", "c", "d"], top_k=5)
    assert metrics["accuracy"] == 0.75 and metrics["n_test"] == 4, "3 of 4 right"
    assert metrics["n_test_identities"] == 4 and metrics["n_classes"] == 4, "counts of identities reported"
    assert {"top5_accuracy", "macro_f1", "weighted_f1", "loss", "accuracy_ci95"} <= set(metrics), "issue 6 keys"


def test_confusion_heatmap_fits_105_identities(tmp_path):
    labels = [f"Identity Number {index:03d}" for index in range(105)]
    truth = np.repeat(np.arange(105), 3)
    plot_confusion(truth, np.roll(truth, 1), labels, tmp_path / "confusion.png")
    from PIL import Image

    with Image.open(tmp_path / "confusion.png") as image:
        # ≥ 20 px per identity row leaves room for a 7 pt name on every row at 150 dpi.
        assert image.height >= 105 * 20, f"{image.size} is too small for 105 legible rows"


def test_val_accuracy_equals_training_final_val_accuracy(project, classifier, synthetic_root):
    from facerec.data import label_ids
    from facerec.manifests import load_split
    from facerec.predict import predict_frame

    val = load_split(project / "splits" / "val.csv")
    probabilities, _ = predict_frame(classifier, val, synthetic_root, batch_size=8)
    trained = json.loads((project / "history.json").read_text(encoding="utf-8"))["val_accuracy"][-1]
    measured = accuracy(label_ids(val["identity"], classifier.labels), probabilities)
    assert measured == pytest.approx(trained, abs=1e-6), "evaluate and training disagree on the same weights"


def test_predictions_stay_aligned_with_manifest_rows(project, classifier, synthetic_root):
    import tensorflow as tf

    from facerec.data import decode_and_resize
    from facerec.manifests import load_split
    from facerec.predict import predict_frame

    test = load_split(project / "splits" / "test.csv")
    batched, _ = predict_frame(classifier, test, synthetic_root, batch_size=4)
    one_by_one = classifier.model.predict(np.stack([decode_and_resize(tf.constant(str(synthetic_root / path)), IMAGE_PX)
                                         for path in test["path"]]), verbose=0)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5, err_msg="row i must be the prediction for test.csv row i")
    reversed_rows, _ = predict_frame(classifier, test.iloc[::-1], synthetic_root, batch_size=4)
    np.testing.assert_allclose(reversed_rows[::-1], batched, atol=1e-5, err_msg="order follows the manifest given")


def test_stage_with_unknown_identities(project, synthetic_root, tmp_path, monkeypatch):
    metrics, report = run_evaluate(project, synthetic_root, tmp_path / "run", monkeypatch, unknown=True)
    trained = json.loads((project / "history.json").read_text(encoding="utf-8"))["val_accuracy"][-1]
    assert metrics["val_accuracy"] == pytest.approx(trained, abs=1e-6), "eval.json's val accuracy equals training's"
    assert metrics["n_test"] == 9 and metrics["n_classes"] == 3 and "top2_accuracy" in metrics, "top-k from params"
    assert set(metrics) == {"accuracy", "accuracy_ci95_low", "accuracy_ci95_high", "top2_accuracy", "macro_f1", "loss",
                            "val_accuracy", "n_test", "n_val", "n_classes", "open_set_auroc", "enrolment_top1_accuracy"}, \
        "the metrics file holds what runs compare on"
    assert only_numbers(metrics), f"no hashes, names or tables among the metrics: {metrics}"
    assert [metrics["accuracy_ci95_low"], metrics["accuracy_ci95_high"]] == report["accuracy_ci95"], \
        "the interval as two numbers (DVC shows no lists)"
    open_set = report["open_set"]
    assert metrics["open_set_auroc"] == open_set["auroc"], "the metric is the report's AUROC"
    same_keys = set(metrics) & set(report)
    assert {key: report[key] for key in same_keys} == {key: metrics[key] for key in same_keys}, \
        "metrics are the report's numbers"
    assert open_set["n_unknown"] == 12 and open_set["n_unknown_identities"] == 1, "the held-out identity was scored"
    assert 0 <= open_set["false_accept_rate"] <= 1 and open_set["auroc"] is not None, "rejection measured"
    assert open_set["val_known_acceptance"] >= 0.9, "threshold accepts at least the target share of val images"
    record = json.loads((tmp_path / "run/reports/open_set.json").read_text(encoding="utf-8"))
    assert record["threshold"] == open_set["threshold"] and len(record["model_sha256"]) == 64, "threshold for predict"
    for name in ("confusion.png", "misclassified.png", "predictions.png", "open_set_scores.png",
                 "confusion.csv", "per_identity.csv", "most_confused.csv"):
        assert (tmp_path / "run/plots/eval" / name).stat().st_size > 0, f"{name} written"
    enrolment = report["enrolment"]
    assert metrics["enrolment_top1_accuracy"] == enrolment["top1_accuracy"], "the metric is the report's enrolment top-1"
    assert enrolment["n_identities"] == 1 and enrolment["n"] == 12 - 5, "held-out identity enrolled from 5, 7 probed"
    assert 0 <= enrolment["top1_accuracy"] <= 1 and len(enrolment["top1_accuracy_ci95"]) == 2, "accuracy with its CI"
    assert enrolment["n_known"] == 9 and 0 <= enrolment["known_taken_for_enrolled_rate"] <= 1, "known faces checked"
    gallery = json.loads((tmp_path / "run/known_gallery/gallery.json").read_text(encoding="utf-8"))
    assert len(gallery["known_identities"]) == 3 and gallery["enrolled"] == [], "trained identities' gallery written"
    assert gallery["model_sha256"] == record["model_sha256"], "the gallery names the model it was computed with"


def test_stage_without_unknown_split(project, synthetic_root, tmp_path, monkeypatch):
    metrics, report = run_evaluate(project, synthetic_root, tmp_path / "run", monkeypatch, unknown=False)
    assert "open_set_auroc" not in metrics and only_numbers(metrics), "no AUROC without unknown identities"
    open_set = report["open_set"]
    assert "false_accept_rate" not in open_set and "auroc" not in open_set, "no unknowns, no false-accept rate"
    assert open_set["false_reject_rate"] is not None, "the threshold is still chosen and checked on known test images"
    assert (tmp_path / "run/plots/eval/open_set_scores.png").is_file(), "the declared figure exists either way"
    assert "enrolment" not in report and "enrolment_top1_accuracy" not in metrics, "no held-out identities, nothing to enrol"
