"""DVC stage: score the trained model on the test split and on held-out unknown identities."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from facerec.atomic import write_csv, write_json
from facerec.data import label_ids
from facerec.evaluation import (
    accuracy,
    misclassified,
    most_confused_pairs,
    per_identity_table,
    plot_confusion,
    prediction_rows,
    random_sample,
    summary_metrics,
)
from facerec.enrolment import enrolment_metrics
from facerec.figures import image_grid, plot_open_set
from facerec.gallery import known_gallery, l2_normalise, write_gallery
from facerec.manifests import load_split
from facerec.open_set import SCORES, known_score, model_digest, summarise
from facerec.params import load_params, require_choice, require_range
from facerec.predict import load_classifier, predict_frame_with_features
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.evaluate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True, help="test split CSV (its order is kept)")
    parser.add_argument("--val", type=Path, required=True, help="val split CSV: picks the unknown-face threshold")
    parser.add_argument("--unknown", type=Path, required=True,
                        help="held-out identities CSV; a missing file (split.unknown_identities: 0) skips "
                             "the false-accept rate and AUROC")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--threshold-out", type=Path, required=True,
                        help="open-set threshold for this model, read by `python -m facerec.predict`")
    parser.add_argument("--plots-dir", type=Path, required=True)
    parser.add_argument("--known-gallery", type=Path, required=True,
                        help="the trained identities' gallery (val centroids, cosine threshold) that "
                             "`python -m facerec.enroll` starts from")
    return parser.parse_args()


def check_params(params: dict) -> None:
    require_range("evaluate.top_k", params["top_k"], 1, 1000, integer=True)
    require_range("evaluate.batch_size", params["batch_size"], 1, 4096, integer=True)
    require_range("evaluate.known_acceptance_rate", params["known_acceptance_rate"], 0.01, 1.0)
    require_choice("evaluate.open_set_score", params["open_set_score"], SCORES)
    require_range("evaluate.grid_images", params["grid_images"], 1, 200, integer=True)
    require_range("evaluate.enrol_images", params["enrol_images"], 1, 1000, integer=True)


def scores_of(outputs) -> dict:
    """Every known-face score for one split's (probabilities, logits)."""
    return {name: known_score(*outputs, name) for name in SCORES}


def open_set_report(frames, outputs, args, params) -> dict:
    """Choose the threshold on val, measure it on test and unknown, write its file and figure."""
    unknown = frames.get("unknown")
    summary = summarise(scores_of(outputs["val"]), scores_of(outputs["test"]),
                        scores_of(outputs["unknown"]) if unknown is not None else None,
                        params["open_set_score"], params["known_acceptance_rate"],
                        unknown["identity"].nunique() if unknown is not None else 0)
    write_json(args.threshold_out, {
        key: summary[key] for key in ("score", "threshold", "known_acceptance_rate", "val_known_acceptance", "n_val")
    } | {"model_sha256": model_digest(args.model_dir / "model.keras")})
    name = params["open_set_score"]
    known = known_score(*outputs["test"], name)
    if unknown is not None:
        title = (f"Unknown-face rejection: AUROC {summary['auroc']:.3f}; false-accept "
                 f"{100 * summary['false_accept_rate']:.1f} % of {len(unknown)} images of "
                 f"{summary['n_unknown_identities']} unknown identities, false-reject "
                 f"{100 * summary['false_reject_rate']:.1f} % of {len(known)} test images of "
                 f"{frames['test']['identity'].nunique()} known identities")
        log.info("%s", title)
    else:
        title = (f"Known-face scores: {len(known)} test images of {frames['test']['identity'].nunique()} identities, "
                 f"false-reject {100 * summary['false_reject_rate']:.1f} % (no unknown identities held out)")
    plot_open_set(known, known_score(*outputs["unknown"], name) if unknown is not None else None,
                  summary["threshold"], name, args.plots_dir / "open_set_scores.png", title)
    return summary


def write_figures(frames, true_ids, probabilities, predicted, labels, metrics, args, params, seed) -> None:
    """Confusion heatmap and the two image grids, each title naming what it was measured on."""
    rows = prediction_rows(frames["test"], true_ids, probabilities, labels)
    on_what = f"{metrics['n_test']} test images of {metrics['n_test_identities']} identities"
    plot_confusion(true_ids, predicted, labels, args.plots_dir / "confusion.png")
    wrong = misclassified(rows, params["grid_images"])
    image_grid(wrong, args.raw_dir, args.plots_dir / "misclassified.png",
               f"Most confident mistakes: {len(wrong)} shown of {int((rows['true'] != rows['predicted']).sum())} "
               f"misclassified among {on_what}")
    sample = random_sample(rows, params["grid_images"], seed)
    image_grid(sample, args.raw_dir, args.plots_dir / "predictions.png",
               f"Predictions on {len(sample)} random never-seen test images "
               f"(accuracy {100 * metrics['accuracy']:.1f} % on all {on_what})")


def main() -> None:
    args = parse_args()
    all_params = load_params()
    params, seed = all_params["evaluate"], all_params["base"]["seed"]
    check_params(params)
    classifier = load_classifier(args.model_dir / "model.keras")
    labels = classifier.labels
    frames = {"test": load_split(args.test), "val": load_split(args.val)}
    if args.unknown.is_file() and not (unknown := load_split(args.unknown)).empty:
        frames["unknown"] = unknown
    full_outputs = {name: predict_frame_with_features(classifier, frame, args.raw_dir, params["batch_size"])
                    for name, frame in frames.items()}
    outputs = {name: (probabilities, logits) for name, (probabilities, logits, _) in full_outputs.items()}
    embeddings = {name: l2_normalise(features) for name, (_, _, features) in full_outputs.items()}
    true_ids = label_ids(frames["test"]["identity"], labels)
    probabilities = outputs["test"][0]

    metrics = summary_metrics(true_ids, probabilities, labels, params["top_k"])
    metrics["val_accuracy"] = round(accuracy(label_ids(frames["val"]["identity"], labels), outputs["val"][0]), 6)
    metrics["n_val"] = len(frames["val"])
    args.plots_dir.mkdir(parents=True, exist_ok=True)
    metrics["open_set"] = open_set_report(frames, outputs, args, params)
    gallery = known_gallery(embeddings["val"], label_ids(frames["val"]["identity"], labels), labels,
                            params["known_acceptance_rate"], model_digest(args.model_dir / "model.keras"))
    write_gallery(args.known_gallery, gallery)
    if "unknown" in frames:
        enrolment = enrolment_metrics(gallery, frames["unknown"], embeddings["unknown"], embeddings["test"],
                                      params["enrol_images"], seed)
        if enrolment is not None:
            metrics["enrolment"] = enrolment
            log.info("Enrolment: %d held-out identities enrolled from %d photos each; top-1 %.1f %% on their other "
                     "%d photos; %.1f %% of %d known test photos taken for an enrolled person",
                     enrolment["n_identities"], enrolment["enrol_images"], 100 * enrolment["top1_accuracy"],
                     enrolment["n"], 100 * enrolment["known_taken_for_enrolled_rate"], enrolment["n_known"])
    write_json(args.metrics, metrics)
    predicted = probabilities.argmax(axis=1)
    write_csv(args.plots_dir / "confusion.csv", pd.DataFrame(
        {"actual": [labels[i] for i in true_ids], "predicted": [labels[i] for i in predicted]}))
    write_csv(args.plots_dir / "per_identity.csv", per_identity_table(true_ids, predicted, labels))
    write_csv(args.plots_dir / "most_confused.csv", most_confused_pairs(true_ids, predicted, labels))
    write_figures(frames, true_ids, probabilities, predicted, labels, metrics, args, params, seed)
    low, high = metrics["accuracy_ci95"]
    log.info("Test accuracy %.2f %% (95 %% CI %.2f–%.2f %%), top-%d %.2f %%, macro F1 %.3f on %d images of %d "
             "identities; chance %.2f %%", 100 * metrics["accuracy"], 100 * low, 100 * high, params["top_k"],
             100 * metrics[f"top{params['top_k']}_accuracy"], metrics["macro_f1"], metrics["n_test"],
             metrics["n_test_identities"], 100 * metrics["chance_accuracy"])
    log.info("Validation accuracy %.2f %% on %d images of %d identities (should equal training's last "
             "val_accuracy)", 100 * metrics["val_accuracy"], metrics["n_val"], frames["val"]["identity"].nunique())


if __name__ == "__main__":
    run_stage(main)
