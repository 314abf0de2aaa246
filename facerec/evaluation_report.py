"""The evaluate stage's open-set report and image grids, each titled with what it was measured on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from facerec.atomic import write_json
from facerec.config import EvaluateConfig
from facerec.evaluation import misclassified, plot_confusion, prediction_rows, random_sample
from facerec.figures import image_grid, plot_open_set
from facerec.open_set import SCORES, known_score, model_digest, summarise

log = logging.getLogger(__name__)


def scores_of(outputs) -> dict:
    """Every known-face score for one split's (probabilities, logits)."""
    return {name: known_score(*outputs, name) for name in SCORES}


def open_set_report(frames: dict, outputs: dict, config: EvaluateConfig, model_path: Path, threshold_path: Path,
                    figure_path: Path) -> dict:
    """Choose the threshold on val, measure it on test and unknown, write its file and figure."""
    unknown = frames.get("unknown")
    summary = summarise(scores_of(outputs["val"]), scores_of(outputs["test"]),
                        scores_of(outputs["unknown"]) if unknown is not None else None,
                        config.open_set_score, config.known_acceptance_rate,
                        unknown["identity"].nunique() if unknown is not None else 0)
    write_json(threshold_path, {
        key: summary[key] for key in ("score", "threshold", "known_acceptance_rate", "val_known_acceptance", "n_val")
    } | {"model_sha256": model_digest(model_path)})
    name = config.open_set_score
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
                  summary["threshold"], name, figure_path, title)
    return summary


def write_figures(test_frame: pd.DataFrame, true_ids: np.ndarray, probabilities: np.ndarray, labels: list[str],
                  metrics: dict, images_at: Path, plots_dir: Path, config: EvaluateConfig, seed: int) -> None:
    """Confusion heatmap and the two image grids, each title naming what it was measured on."""
    rows = prediction_rows(test_frame, true_ids, probabilities, labels)
    on_what = f"{metrics['n_test']} test images of {metrics['n_test_identities']} identities"
    plot_confusion(true_ids, probabilities.argmax(axis=1), labels, plots_dir / "confusion.png")
    wrong = misclassified(rows, config.grid_images)
    image_grid(wrong, images_at, plots_dir / "misclassified.png",
               f"Most confident mistakes: {len(wrong)} shown of {int((rows['true'] != rows['predicted']).sum())} "
               f"misclassified among {on_what}")
    sample = random_sample(rows, config.grid_images, seed)
    image_grid(sample, images_at, plots_dir / "predictions.png",
               f"Predictions on {len(sample)} random never-seen test images "
               f"(accuracy {100 * metrics['accuracy']:.1f} % on all {on_what})")
