"""Class-balance and image-size statistics of the split manifests, as tables and figures."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; CI and GPU servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from facerec.verify import open_rgb  # noqa: E402


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


def identity_mosaic(images, relatives: list[str], thumb_px: int):
    """Up to four photos of one identity as a 2×2 mosaic (PIL image)."""
    mosaic = Image.new("RGB", (2 * thumb_px, 2 * thumb_px), "white")
    for position, relative in enumerate(relatives[:4]):
        tile = open_rgb(images.open(relative)).resize((thumb_px, thumb_px))
        mosaic.paste(tile, ((position % 2) * thumb_px, (position // 2) * thumb_px))
    return mosaic


def _fitted(text: str, font, width_px: int) -> str:
    """`text`, cut with an ellipsis to fit `width_px` in `font`."""
    if font.getlength(text) <= width_px:
        return text
    while text and font.getlength(text + "…") > width_px:
        text = text[:-1]
    return text + "…"


def plot_samples(frame: pd.DataFrame, images, path, *, columns: int = 10, thumb_px: int = 48) -> None:
    """Every identity as a 2×2 mosaic of its first images with its name, ten identities a row.

    Pasted into one image with Pillow: a Matplotlib axis per identity cost seconds of layout.
    """
    identities = sorted(frame["identity"].unique())
    # Matplotlib's own font, so the names look like the other figures' text.
    font_file = font_manager.findfont("DejaVu Sans")
    name_font, title_font = ImageFont.truetype(font_file, 11), ImageFont.truetype(font_file, 15)
    cell_width, cell_height, title_height, gap = 2 * thumb_px + 16, 2 * thumb_px + 22, 36, 8
    rows = max(1, math.ceil(len(identities) / columns))
    sheet = Image.new("RGB", (gap + columns * cell_width, title_height + rows * cell_height + gap), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((sheet.width / 2, title_height / 2), f"Sample training images ({len(identities)} identities)",
              fill="black", font=title_font, anchor="mm")
    first_paths = frame.groupby("identity", sort=True)["path"].apply(lambda paths: list(paths.head(4)))
    for index, identity in enumerate(identities):
        left = gap + (index % columns) * cell_width
        top = title_height + (index // columns) * cell_height
        sheet.paste(identity_mosaic(images, first_paths[identity], thumb_px), (left + 8 - gap // 2, top))
        draw.text((left + cell_width / 2 - gap / 2, top + 2 * thumb_px + 11),
                  _fitted(identity, name_font, cell_width - 4), fill="black", font=name_font, anchor="mm")
    sheet.save(path, optimize=False)
