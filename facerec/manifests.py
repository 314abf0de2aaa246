"""Reading split manifests without TensorFlow, so light stages (analyze) start in a second."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_split(csv_path: Path) -> pd.DataFrame:
    """Read a split manifest, keeping paths and identities as strings."""
    return pd.read_csv(csv_path, dtype={"path": str, "identity": str}, keep_default_na=False)
