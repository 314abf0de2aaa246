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


def _read_typed(csv_path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    """Read a CSV keeping names like 'NA' or 'null' as text; only the Int64 columns know <NA>."""
    int_columns = [column for column, dtype in dtypes.items() if dtype == "Int64"]
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False,
                        na_values={column: [""] for column in int_columns})
    present = {column: dtype for column, dtype in dtypes.items() if column in frame.columns}
    return frame.astype(present)


def read_manifest(csv_path: Path) -> pd.DataFrame:
    """Read data/manifest.csv with its column types."""
    return _read_typed(csv_path, MANIFEST_DTYPES)


def load_split(csv_path: Path) -> pd.DataFrame:
    """Read a split manifest (path, identity, group) with its column types."""
    return _read_typed(csv_path, SPLIT_DTYPES)
