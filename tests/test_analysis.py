"""Code tests of the class-balance measures and figures."""

from __future__ import annotations

import pandas as pd
import pytest

from facerec.analysis import counts_per_identity, imbalance, plot_counts, plot_samples
from facerec.image_store import open_images


def test_imbalance_of_a_balanced_and_a_skewed_set():
    balanced = imbalance(pd.Series([10, 10, 10, 10]))
    assert balanced["max_min_ratio"] == 1.0 and balanced["normalised_entropy"] == pytest.approx(1.0), \
        "equal classes: ratio 1 and full entropy"
    skewed = imbalance(pd.Series([100, 10, 5]))
    assert skewed["min_per_identity"] == 5 and skewed["max_per_identity"] == 100, "extremes reported"
    assert skewed["median_per_identity"] == 10 and skewed["max_min_ratio"] == 20.0, "median and ratio"
    assert 0 < skewed["normalised_entropy"] < 1, "skew lowers the normalised entropy"


def test_counts_per_identity_long_format():
    splits = {"train": pd.DataFrame({"identity": ["b", "a", "a"]}), "test": pd.DataFrame({"identity": ["a"]})}
    counts = counts_per_identity(splits)
    assert counts.to_dict("records") == [
        {"identity": "a", "split": "train", "images": 2}, {"identity": "b", "split": "train", "images": 1},
        {"identity": "a", "split": "test", "images": 1},
    ], "one row per identity and split, identities sorted"


def test_figures_are_drawn(tmp_path, synthetic_root):
    frame = pd.DataFrame([(path.relative_to(synthetic_root).as_posix(), path.parent.name[5:])
                          for path in sorted(synthetic_root.rglob("*.jpg"))], columns=["path", "identity"])
    plot_counts(counts_per_identity({"train": frame}), tmp_path / "counts.png")
    plot_samples(frame, open_images(synthetic_root), tmp_path / "samples.png")
    for name in ("counts.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 2000, f"{name} holds a real figure"
