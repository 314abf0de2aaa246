"""Class-balance and image-size statistics of the split manifests, as tables and figures."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; CI and GPU servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def counts_per_identity(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table identity, split, images, for DVC's bar plots and the PNG."""
    rows = [
        {"identity": identity, "split": name, "images": int(count)}
        for name, frame in splits.items()
        for identity, count in frame["identity"].value_counts().sort_index().items()
    ]
    return pd.DataFrame(rows, columns=["identity", "split", "images"])


def imbalance(counts: pd.Series) -> dict:
    """Min/median/max images per identity, max/min ratio and normalised entropy (1 = balanced)."""
    values = counts.to_numpy(dtype=float)
    shares = values / values.sum()
    entropy = float(-(shares * np.log(shares)).sum() / math.log(len(values))) if len(values) > 1 else 1.0
    return {
        "identities": int(len(values)),
        "images": int(values.sum()),
        "min_per_identity": int(values.min()),
        "median_per_identity": float(np.median(values)),
        "max_per_identity": int(values.max()),
        "max_min_ratio": round(float(values.max() / values.min()), 3),
        "normalised_entropy": round(entropy, 4),
    }


def data_metrics(splits: dict[str, pd.DataFrame], manifest: pd.DataFrame, split_report: dict) -> dict:
    """The data report: per-split balance, image sizes, duplicate counts."""
    ok = manifest[manifest["status"] == "ok"]
    metrics = {name: imbalance(frame["identity"].value_counts()) for name, frame in splits.items()}
    metrics["image_size_px"] = {
        "width_median": float(ok["width"].median()), "height_median": float(ok["height"].median()),
        "short_side_min": int(np.minimum(ok["width"], ok["height"]).min()),
    }
    # Indexed, not filtered: a key renamed in the split report must fail here, not vanish.
    metrics["duplicates"] = {
        key: split_report[key] for key in ("exact_duplicate_pairs", "near_duplicate_pairs",
                                           "images_in_duplicate_groups", "conflict_groups",
                                           "conflict_images_dropped")
    }
    return metrics


def plot_counts(counts: pd.DataFrame, path) -> None:
    """Horizontal stacked bars, one per identity, tall enough to read 105 names."""
    table = counts.pivot_table(index="identity", columns="split", values="images", fill_value=0)
    table = table[[name for name in ("train", "val", "test", "unknown") if name in table.columns]]
    table = table.loc[table.sum(axis=1).sort_values().index]
    figure, axes = plt.subplots(figsize=(9, max(4, 0.22 * len(table) + 1.5)))
    table.plot.barh(stacked=True, ax=axes, width=0.8, color=["#4c72b0", "#dd8452", "#55a868", "#8172b3"])
    axes.set_xlabel("images")
    axes.set_ylabel("identity")
    axes.set_title("Images per identity and split")
    axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_image_sizes(manifest: pd.DataFrame, path) -> None:
    """Scatter of width × height of the usable images (log-free: sizes here are hundreds of px)."""
    ok = manifest[manifest["status"] == "ok"]
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.scatter(ok["width"], ok["height"], s=4, alpha=0.3)
    axes.set_xlabel("width (px)")
    axes.set_ylabel("height (px)")
    axes.set_title(f"Image sizes ({len(ok)} usable images)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def identity_mosaic(paths: list, thumb_px: int):
    """Up to four photos of one identity as a 2×2 mosaic (PIL image)."""
    from PIL import Image

    from facerec.verify import open_rgb

    mosaic = Image.new("RGB", (2 * thumb_px, 2 * thumb_px), "white")
    for position, path in enumerate(paths[:4]):
        tile = open_rgb(path).resize((thumb_px, thumb_px))
        mosaic.paste(tile, ((position % 2) * thumb_px, (position // 2) * thumb_px))
    return mosaic


def plot_samples(frame: pd.DataFrame, raw_dir, path, *, columns: int = 10, thumb_px: int = 48) -> None:
    """Every identity as a 2×2 mosaic of its first images with its name, ten identities a row."""
    identities = sorted(frame["identity"].unique())
    rows = math.ceil(len(identities) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.85), squeeze=False)
    for cell in axes.flat:
        # No ticks at all, not just hidden ones: matplotlib would still lay out 2,000+ tick labels.
        cell.set_xticks([])
        cell.set_yticks([])
        cell.axis("off")
    for cell, identity in zip(axes.flat, identities, strict=False):
        paths = [raw_dir / relative for relative in frame.loc[frame["identity"] == identity, "path"].head(4)]
        cell.imshow(identity_mosaic(paths, thumb_px))
        cell.set_title(identity, fontsize=8)
    figure.suptitle(f"Sample training images ({len(identities)} identities)")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / figure.get_figheight()))  # leave room for the title
    figure.savefig(path, dpi=80)
    plt.close(figure)
