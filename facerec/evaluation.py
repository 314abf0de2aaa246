"""Test-set metrics and report tables/figures from predicted probabilities."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion; sensible even near 0 or 1 and for small n."""
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(true_ids: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of images whose most probable identity is the true one."""
    return float(np.mean(probabilities.argmax(axis=1) == true_ids)) if len(true_ids) else 0.0


def top_k_accuracy(true_ids: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of images whose true identity is among the k most probable."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean([truth in row for truth, row in zip(true_ids, top, strict=True)]))


def summary_metrics(true_ids: np.ndarray, probabilities: np.ndarray, labels: list[str], top_k: int) -> dict:
    """Accuracy with its CI, top-k, F1s and loss, plus what they were measured on (the eval report)."""
    predicted = probabilities.argmax(axis=1)
    correct = int((predicted == true_ids).sum())
    low, high = wilson_interval(correct, len(true_ids))
    picked = probabilities[np.arange(len(true_ids)), true_ids]
    present = sorted(set(true_ids.tolist()))
    return {
        # 6 decimals: the train→evaluate agreement check compares accuracies to 1e-6.
        "accuracy": round(correct / len(true_ids), 6),
        "accuracy_ci95": [round(low, 5), round(high, 5)],
        f"top{top_k}_accuracy": round(top_k_accuracy(true_ids, probabilities, top_k), 6),
        "macro_f1": round(float(f1_score(true_ids, predicted, labels=present, average="macro", zero_division=0)), 5),
        "weighted_f1": round(float(f1_score(true_ids, predicted, labels=present, average="weighted",
                                            zero_division=0)), 5),
        "loss": round(float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))), 5),
        "n_test": len(true_ids),
        "n_classes": len(labels),
        "n_test_identities": len(present),
        "chance_accuracy": round(1 / len(labels), 5),
    }


def comparable_metrics(report: dict, top_k: int) -> dict:
    """The numbers of the eval report worth comparing across experiments (the DVC metrics file)."""
    # accuracy first: `dvc exp show` keeps the first metric column whole however narrow the terminal.
    # The interval as two numbers: DVC shows no lists in `dvc exp show` or `dvc metrics diff`.
    low, high = report["accuracy_ci95"]
    metrics = {"accuracy": report["accuracy"], "accuracy_ci95_low": low, "accuracy_ci95_high": high}
    keys = (f"top{top_k}_accuracy", "macro_f1", "loss", "val_accuracy", "n_test", "n_val", "n_classes")
    metrics |= {key: report[key] for key in keys}
    if "auroc" in report["open_set"]:  # only with identities held out (split.unknown_identities)
        metrics["open_set_auroc"] = report["open_set"]["auroc"]
    if "enrolment" in report:  # held-out identities enrolled without retraining
        metrics["enrolment_top1_accuracy"] = report["enrolment"]["top1_accuracy"]
    return metrics


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
    many = len(labels) > 20
    # ~0.17 in per cell at 150 dpi is 25 px, room for a 7 pt name on every row and column.
    side = max(6.0, 0.17 * len(labels) + 4)
    # A bare Figure, not pyplot: no global state or GUI backend in a headless stage.
    figure = Figure(figsize=(side + 1, side))
    FigureCanvasAgg(figure)  # a canvas caches the renderer seaborn measures tick labels with
    axes = figure.subplots()
    # White for zero and a square-root scale, so a single mistake (1 of ~5 test images, 0.2) is a
    # clearly visible blue cell instead of drowning in a dark field.
    sns.heatmap(normalised, ax=axes, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), square=True, linewidths=0.3 if many else 0.5,
                linecolor="#eeeeee", xticklabels=labels, yticklabels=labels,
                cbar_kws={"label": "share of the true identity's test images", "shrink": 0.4, "pad": 0.01})
    axes.tick_params(labelsize=7 if many else 10, length=2)
    axes.set_xlabel("predicted identity", fontsize=12)
    axes.set_ylabel("true identity", fontsize=12)
    accuracy = float(np.mean(true_ids == predicted)) if len(true_ids) else 0.0
    title = (f"Confusion matrix, rows normalised: accuracy {100 * accuracy:.1f} % on {len(true_ids)} test "
             f"images of {len(set(true_ids.tolist()))} identities")
    # About 9 characters per inch at 14 pt: wrap so small matrices do not clip their own title.
    axes.set_title(textwrap.fill(title, width=int(9 * side)), fontsize=14)
    figure.tight_layout()
    figure.savefig(path, dpi=150 if many else 100)


def prediction_rows(frame: pd.DataFrame, true_ids: np.ndarray, probabilities: np.ndarray,
                    labels: list[str]) -> pd.DataFrame:
    """One row per image: path, true and predicted identity, and the predicted one's probability."""
    predicted = probabilities.argmax(axis=1)
    return pd.DataFrame({"path": frame["path"].to_numpy(), "true": [labels[i] for i in true_ids],
                         "predicted": [labels[i] for i in predicted],
                         "confidence": probabilities.max(axis=1).round(4)})


def misclassified(rows: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The `limit` most confident mistakes: confident errors say most about what the model learned."""
    wrong = rows[rows["true"] != rows["predicted"]]
    return wrong.sort_values(["confidence", "path"], ascending=[False, True]).head(limit)


def random_sample(rows: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """A seeded random sample of images, kept in manifest order."""
    return rows.sample(n=min(limit, len(rows)), random_state=seed).sort_index()
