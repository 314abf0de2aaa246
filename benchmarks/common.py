"""Shared helpers of the benchmarks: mirror path, extraction under /tmp, a train manifest, load figures."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO_ROOT.parent / "shared" / "data" / "pins-face-recognition-160.zip"
# Appended, not inserted: PYTHONPATH=/tmp/prototype runs a modified copy of facerec/ instead.
sys.path.append(str(REPO_ROOT))


def mirror_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR,
                        help="the Pins archive (never copied into the project)")


def extract_mirror(mirror: Path, work_dir: Path) -> Path:
    """Extract the mirror safely into work_dir (within params.yaml's caps); return the folder of identity folders."""
    from facerec.archive import extract_archive
    from facerec.config import load_config
    from facerec.layout import find_dataset_root
    from facerec.sources import extraction_limits

    limits = extraction_limits(load_config(REPO_ROOT / "params.yaml").download, mirror)
    extract_archive(mirror, work_dir / "extracted", limits)
    return find_dataset_root(work_dir / "extracted").root


def train_manifest(raw_dir: Path, seed: int = 42, train_fraction: float = 0.7) -> pd.DataFrame:
    """Seeded share of every identity's images (path, identity): the size of the real train split."""
    from facerec.layout import identity_from_folder

    rows = [{"path": path.relative_to(raw_dir).as_posix(), "identity": identity_from_folder(path.parent.name)}
            for path in sorted(raw_dir.rglob("*.jpg"))]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    position = frame.groupby("identity").cumcount() / frame.groupby("identity")["path"].transform("count")
    # Back in manifest order (by path), as the split stage writes it.
    return frame[position < train_fraction].sort_values("path").reset_index(drop=True)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: the CPU is shared, so every figure carries them."""
    return [round(load, 2) for load in os.getloadavg()]


def summary(values: list[float]) -> dict:
    """Median and range of repeated measurements."""
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": [round(value, 2) for value in values]}
