"""Test-set metrics and report tables/figures from predicted probabilities."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support  # noqa: E402


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion; sensible even near 0 or 1 and for small n."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def top_k_accuracy(true_ids: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of images whose true identity is among the k most probable."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean([truth in row for truth, row in zip(true_ids, top, strict=True)]))


def summary_metrics(true_ids: np.ndarray, probabilities: np.ndarray, labels: list[str], top_k: int) -> dict:
    """metrics/eval.json: accuracy with its CI, top-k, F1s and loss, plus what they were measured on."""
    predicted = probabilities.argmax(axis=1)
    correct = int((predicted == true_ids).sum())
    low, high = wilson_interval(correct, len(true_ids))
    picked = probabilities[np.arange(len(true_ids)), true_ids]
    present = sorted(set(true_ids.tolist()))
    return {
        "accuracy": round(correct / len(true_ids), 5),
        "accuracy_ci95": [round(low, 5), round(high, 5)],
        f"top{top_k}_accuracy": round(top_k_accuracy(true_ids, probabilities, top_k), 5),
        "macro_f1": round(float(f1_score(true_ids, predicted, labels=present, average="macro", zero_division=0)), 5),
        "weighted_f1": round(float(f1_score(true_ids, predicted, labels=present, average="weighted",
                                            zero_division=0)), 5),
        "loss": round(float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))), 5),
        "n_test": int(len(true_ids)),
        "n_classes": len(labels),
        "n_test_identities": len(present),
        "chance_accuracy": round(1 / len(labels), 5),
    }


def per_identity_table(true_ids: np.ndarray, predicted: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per identity."""
    precision, recall, f1, support = precision_recall_fscore_support(
        true_ids, predicted, labels=range(len(labels)), zero_division=0)
    return pd.DataFrame({"identity": labels, "precision": precision.round(4), "recall": recall.round(4),
                         "f1": f1.round(4), "support": support})


def most_confused_pairs(true_ids: np.ndarray, predicted: np.ndarray, labels: list[str], top: int = 20) -> pd.DataFrame:
    """The (true, predicted) identity pairs the model mixes up most often."""
    wrong = true_ids != predicted
    pairs = pd.DataFrame({"true": [labels[i] for i in true_ids[wrong]],
                          "predicted": [labels[i] for i in predicted[wrong]]})
    counts = pairs.value_counts().rename("images").reset_index()
    return counts.sort_values(["images", "true", "predicted"], ascending=[False, True, True]).head(top)


def plot_confusion(true_ids: np.ndarray, predicted: np.ndarray, labels: list[str], path) -> None:
    """Row-normalised heatmap, sized so 105 identity names stay legible."""
    matrix = confusion_matrix(true_ids, predicted, labels=range(len(labels))).astype(float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = max(6.0, 0.16 * len(labels) + 3)
    figure, axes = plt.subplots(figsize=(side * 1.1, side))
    font = 10 if len(labels) <= 20 else 6
    sns.heatmap(normalised, ax=axes, cmap="viridis", vmin=0, vmax=1, square=True,
                xticklabels=labels, yticklabels=labels, cbar_kws={"label": "share of the true identity's images"})
    axes.tick_params(labelsize=font)
    axes.set_xlabel("predicted identity")
    axes.set_ylabel("true identity")
    axes.set_title(f"Confusion matrix, rows normalised ({len(true_ids)} test images)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
