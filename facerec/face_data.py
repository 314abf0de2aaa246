"""Face statuses, and where later stages read images: data/raw or the aligned crops.

Without TensorFlow, so the light stages (split, analyze) can ask which folder holds the
images the model sees: the raw download (`faces.detector: none`) or the aligned crops.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# ok = one face; several_faces = the largest confident one kept; the other two leave the dataset.
STATUSES = ("ok", "several_faces", "no_face", "low_confidence")
KEPT_STATUSES = ("ok", "several_faces")


def image_root(detector: str, raw: Path, faces_dir: Path) -> Path:
    """Where split, analyze, train and evaluate read images: aligned crops when a detector runs, else the raw dataset."""
    return Path(faces_dir) if detector != "none" else Path(raw)


def drop_faceless(manifest: pd.DataFrame, faces: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The manifest with images whose face was not kept marked by their face status, and the counts."""
    status = manifest["path"].map(faces.set_index("path")["status"])
    dropped = manifest["status"].eq("ok") & ~status.isin(KEPT_STATUSES)
    marked = manifest.assign(status=manifest["status"].where(~dropped, status.fillna("not_in_faces_csv")))
    counts = marked.loc[dropped, "status"].value_counts().sort_index()
    return marked, {str(name): int(count) for name, count in counts.items()}
