"""The one typed reader of the manifest and split CSVs (no TensorFlow, so light stages start fast)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Unknown sizes are <NA> in nullable Int64 columns; unknown strings are "". Every column is
# typed on read: pandas 3 would otherwise read an all-empty or mixed column as strings.
MANIFEST_DTYPES = {
    "path": "str", "identity": "str", "bytes": "Int64", "sha256": "str",
    "width": "Int64", "height": "Int64", "mode": "str", "format": "str", "status": "str",
}
MANIFEST_COLUMNS = list(MANIFEST_DTYPES)
SPLIT_DTYPES = {"path": "str", "identity": "str", "group": "int64"}
# data/faces.csv: one row per verified image; box and landmarks in the raw image's pixels, empty
# (NaN) where no face was kept.
BOX_COLUMNS = ["box_x", "box_y", "box_width", "box_height"]
LANDMARK_COLUMNS = [f"{name}_{axis}" for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                    for axis in ("x", "y")]
FACES_DTYPES = {"path": "str", "identity": "str", "status": "str", "faces_detected": "Int64",
                "confidence": "float64", **{column: "float64" for column in BOX_COLUMNS + LANDMARK_COLUMNS}}
FACES_COLUMNS = list(FACES_DTYPES)


def _read_typed(csv_path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    """Read a CSV keeping names like 'NA' or 'null' as text; only the numeric columns know <NA> / NaN."""
    numeric_columns = [column for column, dtype in dtypes.items() if dtype in ("Int64", "float64")]
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False,
                        na_values={column: [""] for column in numeric_columns})
    present = {column: dtype for column, dtype in dtypes.items() if column in frame.columns}
    return frame.astype(present)


def read_manifest(csv_path: Path) -> pd.DataFrame:
    """Read data/manifest.csv with its column types."""
    return _read_typed(csv_path, MANIFEST_DTYPES)


def load_split(csv_path: Path) -> pd.DataFrame:
    """Read a split manifest (path, identity, group) with its column types."""
    return _read_typed(csv_path, SPLIT_DTYPES)


def read_faces(csv_path: Path) -> pd.DataFrame:
    """Read data/faces.csv (the faces stage's record) with its column types."""
    frame = _read_typed(csv_path, FACES_DTYPES)
    if list(frame.columns) != FACES_COLUMNS:
        raise ValueError(f"{csv_path}: columns {list(frame.columns)} are not faces.csv's {FACES_COLUMNS}; "
                         "rerun `dvc repro faces`")
    return frame
