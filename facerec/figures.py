"""Evaluation figures made of images or score distributions: prediction grids and open-set scores."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from facerec.image_store import FolderImages, PackedImages, open_images
from facerec.open_set import roc_points

GRID_COLUMNS = 6
THUMBNAIL_PX = 160  # enough to recognise a face, small enough for a 24-image grid


def _thumbnail(images: FolderImages | PackedImages, relative: str) -> np.ndarray:
    """The image as RGB, fitted into a square thumbnail (grey when it can no longer be read)."""
    try:
        with Image.open(images.open(relative)) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            return np.asarray(image)
    except OSError:
        return np.full((THUMBNAIL_PX, THUMBNAIL_PX, 3), 128, np.uint8)


def image_grid(rows: pd.DataFrame, images_at: Path, path: Path, title: str) -> None:
    """Grid of images captioned true / predicted (confidence); green when right, red when wrong.

    `rows` needs the columns path, true, predicted and confidence; an empty frame yields a figure
    that says so, because DVC expects the declared file either way.
    """
    columns = min(GRID_COLUMNS, max(1, len(rows)))
    grid_rows = max(1, math.ceil(len(rows) / columns))
    # Bare Figures, not pyplot: no global state or GUI backend in a headless stage.
    figure = Figure(figsize=(2.4 * columns, 2.9 * grid_rows + 0.6))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    images = open_images(images_at)
    if rows.empty:
        axes[0, 0].text(0.5, 0.5, "no images to show", ha="center", va="center", fontsize=12)
    for axis, row in zip(axes.flat, rows.itertuples(index=False), strict=False):
        axis.imshow(_thumbnail(images, row.path))
        correct = row.true == row.predicted
        caption = f"true: {row.true}\npred: {row.predicted} ({100 * row.confidence:.0f} %)"
        axis.set_title("\n".join(textwrap.shorten(line, 34) for line in caption.split("\n")),
                       fontsize=8, color="darkgreen" if correct else "firebrick")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_open_set(known: np.ndarray, unknown: np.ndarray | None, threshold: float, score_name: str,
                  path: Path, title: str) -> None:
    """Score histograms of known test vs unknown images with the threshold, plus the ROC when unknowns exist."""
    panels = 2 if unknown is not None and len(unknown) else 1
    figure = Figure(figsize=(6.5 * panels, 4.5))
    axes = figure.subplots(1, panels, squeeze=False)
    histogram = axes[0, 0]
    # Bins span the threshold too, so its line always sits inside the drawn range.
    everything = np.r_[known, unknown, threshold] if panels == 2 else np.r_[known, threshold]
    bins = np.linspace(everything.min(), everything.max(), 40)
    histogram.hist(known, bins=bins, alpha=0.6, density=True, label=f"known test ({len(known)} images)")
    if panels == 2:
        histogram.hist(unknown, bins=bins, alpha=0.6, density=True, label=f"unknown ({len(unknown)} images)")
    histogram.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g} (from val)")
    histogram.set_xlabel(f"{score_name} score (higher = more like a trained identity)")
    histogram.set_ylabel("density")
    histogram.legend(fontsize=8)
    if panels == 2:
        false_accept, true_accept = roc_points(known, unknown)
        roc = axes[0, 1]
        roc.plot(false_accept, true_accept)
        roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
        roc.scatter([np.mean(unknown >= threshold)], [np.mean(known >= threshold)], color="black", zorder=3,
                    label="chosen threshold")
        roc.set_xlabel("false-accept rate (unknown images accepted)")
        roc.set_ylabel("known test images accepted")
        roc.legend(fontsize=8, loc="lower right")
    # The title states what was measured on, so it is long: wrap it to the figure's width.
    figure.suptitle(textwrap.fill(title, width=80 * panels), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
