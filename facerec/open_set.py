"""Unknown-face rejection: a known-face score, its threshold from validation data, and its error rates."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from facerec.config import OPEN_SET_SCORES

log = logging.getLogger(__name__)

# max_softmax: the top probability (the classic baseline). max_logit: the top pre-softmax output;
# softmax divides by the sum over all identities and saturates at 1.0 in float32, so confident
# known and unknown faces tie there, while logits keep their spread (Hendrycks et al. 2022,
# "Scaling out-of-distribution detection"). Evaluate reports the AUROC of both.
SCORES = OPEN_SET_SCORES


def known_score(probabilities: np.ndarray, logits: np.ndarray, name: str) -> np.ndarray:
    """Per-image score, higher = more like a face the model was trained on."""
    if name == "max_softmax":
        return probabilities.max(axis=1).astype(np.float64)
    if name == "max_logit":
        return logits.max(axis=1).astype(np.float64)
    raise ValueError(f"unknown open-set score {name!r}; use one of {list(SCORES)}")


def choose_threshold(val_scores: np.ndarray, acceptance_rate: float) -> float:
    """Highest threshold that still accepts at least `acceptance_rate` of the known val images."""
    if len(val_scores) == 0:
        raise ValueError("the validation split is empty, so no open-set threshold can be chosen")
    ordered = np.sort(val_scores)
    # Scores >= threshold are accepted; rejecting at most floor((1 - rate) * n) keeps acceptance >= rate.
    # The epsilon stops float error (1 - 0.9 = 0.0999…) from rejecting one image fewer than allowed.
    rejected = min(len(ordered) - 1, math.floor((1.0 - acceptance_rate) * len(ordered) + 1e-9))
    return float(ordered[rejected])


def rejection_rates(known_scores: np.ndarray, unknown_scores: np.ndarray | None, threshold: float) -> dict:
    """False-reject rate on known images and, with unknowns, false-accept rate and AUROC."""
    rates = {"false_reject_rate": round(float(np.mean(known_scores < threshold)), 5) if len(known_scores) else None}
    if unknown_scores is not None and len(unknown_scores):
        rates["false_accept_rate"] = round(float(np.mean(unknown_scores >= threshold)), 5)
    return rates


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float | None:
    """Probability that a random known image outscores a random unknown one (ties count half)."""
    if not len(known_scores) or not len(unknown_scores):
        return None
    truth = np.r_[np.ones(len(known_scores)), np.zeros(len(unknown_scores))]
    return round(float(roc_auc_score(truth, np.r_[known_scores, unknown_scores])), 5)


def roc_points(known_scores: np.ndarray, unknown_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-accept rate on unknowns, true-accept rate on knowns) along all thresholds."""
    truth = np.r_[np.ones(len(known_scores)), np.zeros(len(unknown_scores))]
    false_accept, true_accept, _ = roc_curve(truth, np.r_[known_scores, unknown_scores])
    return false_accept, true_accept


def model_digest(model_path: Path) -> str:
    """sha256 of the saved model file, tying a threshold to the weights it was chosen for."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_threshold(path: Path, model_path: Path) -> dict | None:
    """Evaluate's threshold record for this model, or None (missing, or chosen for other weights)."""
    if not Path(path).is_file():
        return None
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if record.get("model_sha256") != model_digest(model_path):
        log.warning("%s was chosen for a different model than %s, so it is not applied; rerun "
                    "`dvc repro evaluate` or pass --threshold", path, model_path)
        return None
    return record


def summarise(val_scores: dict, test_scores: dict, unknown_scores: dict | None, score_name: str,
              acceptance_rate: float, unknown_identities: int) -> dict:
    """Threshold from val at the target acceptance, its error rates on test/unknown, and AUROCs."""
    threshold = choose_threshold(val_scores[score_name], acceptance_rate)
    chosen_unknown = unknown_scores[score_name] if unknown_scores else None
    summary = {"score": score_name, "threshold": threshold, "known_acceptance_rate": acceptance_rate,
               "val_known_acceptance": round(float(np.mean(val_scores[score_name] >= threshold)), 5),
               "n_val": len(val_scores[score_name]),
               **rejection_rates(test_scores[score_name], chosen_unknown, threshold),
               "n_known_test": len(test_scores[score_name])}
    if unknown_scores:
        summary["auroc"] = auroc(test_scores[score_name], chosen_unknown)
        # Both scores' AUROCs on the same images: the evidence for choosing evaluate.open_set_score.
        summary["auroc_by_score"] = {name: auroc(test_scores[name], unknown_scores[name]) for name in SCORES}
        summary["n_unknown"], summary["n_unknown_identities"] = len(chosen_unknown), unknown_identities
    return summary
