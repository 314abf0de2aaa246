"""DVC stage: score the trained model on the test split and on held-out unknown identities."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from facerec.atomic import write_csv, write_json
from facerec.config import load_config
from facerec.face_data import image_root
from facerec.data import label_ids
from facerec.enrolment import enrolment_metrics
from facerec.evaluation import accuracy, comparable_metrics, most_confused_pairs, per_identity_table, summary_metrics
from facerec.evaluation_report import open_set_report, write_figures
from facerec.gallery import known_gallery, l2_normalise, write_gallery
from facerec.manifests import load_split
from facerec.open_set import model_digest
from facerec.predict import load_classifier, predict_frame_with_features
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.evaluate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces-dir", type=Path, required=True, help="aligned crops (read when faces.detector is on)")
    parser.add_argument("--test", type=Path, required=True, help="test split CSV (its order is kept)")
    parser.add_argument("--val", type=Path, required=True, help="val split CSV: picks the unknown-face threshold")
    parser.add_argument("--unknown", type=Path, required=True,
                        help="held-out identities CSV; a missing file (split.unknown_identities: 0) skips "
                             "the false-accept rate and AUROC")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="DVC metrics: the numbers to compare across runs")
    parser.add_argument("--report", type=Path, required=True,
                        help="everything measured, with what it was measured on (not a DVC metric)")
    parser.add_argument("--threshold-out", type=Path, required=True,
                        help="open-set threshold for this model, read by `python -m facerec.predict`")
    parser.add_argument("--plots-dir", type=Path, required=True)
    parser.add_argument("--known-gallery", type=Path, required=True,
                        help="the trained identities' gallery (val centroids, cosine threshold) that "
                             "`python -m facerec.enroll` starts from")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    params = load_config()
    config, seed = params.evaluate, params.base.seed
    images_dir = image_root(params.faces.detector, args.raw, args.faces_dir)
    classifier = load_classifier(args.model_dir / "model.keras")
    labels = classifier.labels
    frames = {"test": load_split(args.test), "val": load_split(args.val)}
    if args.unknown.is_file() and not (unknown := load_split(args.unknown)).empty:
        frames["unknown"] = unknown
    full_outputs = {name: predict_frame_with_features(classifier, frame, images_dir, config.batch_size)
                    for name, frame in frames.items()}
    outputs = {name: (probabilities, logits) for name, (probabilities, logits, _) in full_outputs.items()}
    embeddings = {name: l2_normalise(features) for name, (_, _, features) in full_outputs.items()}
    true_ids = label_ids(frames["test"]["identity"], labels)
    probabilities = outputs["test"][0]

    metrics = summary_metrics(true_ids, probabilities, labels, config.top_k)
    metrics["val_accuracy"] = round(accuracy(label_ids(frames["val"]["identity"], labels), outputs["val"][0]), 6)
    metrics["n_val"] = len(frames["val"])
    args.plots_dir.mkdir(parents=True, exist_ok=True)
    metrics["open_set"] = open_set_report(frames, outputs, config, args.model_dir / "model.keras", args.threshold_out,
                                          args.plots_dir / "open_set_scores.png")
    gallery = known_gallery(embeddings["val"], label_ids(frames["val"]["identity"], labels), labels,
                            config.known_acceptance_rate, model_digest(args.model_dir / "model.keras"))
    write_gallery(args.known_gallery, gallery)
    if "unknown" in frames:
        enrolment = enrolment_metrics(gallery, frames["unknown"], embeddings["unknown"], embeddings["test"],
                                      config.enrol_images, seed)
        if enrolment is not None:
            metrics["enrolment"] = enrolment
            log.info("Enrolment: %d held-out identities enrolled from %d photos each; top-1 %.1f %% on their other "
                     "%d photos; %.1f %% of %d known test photos taken for an enrolled person",
                     enrolment["n_identities"], enrolment["enrol_images"], 100 * enrolment["top1_accuracy"],
                     enrolment["n"], 100 * enrolment["known_taken_for_enrolled_rate"], enrolment["n_known"])
    write_json(args.report, metrics)
    write_json(args.metrics, comparable_metrics(metrics, config.top_k))
    predicted = probabilities.argmax(axis=1)
    write_csv(args.plots_dir / "confusion.csv", pd.DataFrame(
        {"actual": [labels[i] for i in true_ids], "predicted": [labels[i] for i in predicted]}))
    write_csv(args.plots_dir / "per_identity.csv", per_identity_table(true_ids, predicted, labels))
    write_csv(args.plots_dir / "most_confused.csv", most_confused_pairs(true_ids, predicted, labels))
    write_figures(frames["test"], true_ids, probabilities, labels, metrics, images_dir, args.plots_dir, config, seed)
    low, high = metrics["accuracy_ci95"]
    log.info("Test accuracy %.2f %% (95 %% CI %.2f–%.2f %%), top-%d %.2f %%, macro F1 %.3f on %d images of %d "
             "identities; chance %.2f %%", 100 * metrics["accuracy"], 100 * low, 100 * high, config.top_k,
             100 * metrics[f"top{config.top_k}_accuracy"], metrics["macro_f1"], metrics["n_test"],
             metrics["n_test_identities"], 100 * metrics["chance_accuracy"])
    log.info("Validation accuracy %.2f %% on %d images of %d identities (should equal training's last "
             "val_accuracy)", 100 * metrics["val_accuracy"], metrics["n_val"], frames["val"]["identity"].nunique())


if __name__ == "__main__":
    run_stage(main)
