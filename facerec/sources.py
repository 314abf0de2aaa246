"""Bring the dataset from its source (Kaggle, local archive/folder, synthetic) into one folder."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from facerec.archive import extract_archive
from facerec.errors import PipelineInputError
from facerec.synthetic import generate_synthetic_dataset
from facerec.verify import find_dataset_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedDataset:
    """A dataset root (one folder per identity) inside the staging folder, and where it came from."""

    root: Path
    source: str
    version: str  # Kaggle version number, "synthetic-<seed>", or "local"
    refused_entries: int = 0


def stage_synthetic(params: dict, seed: int, staging_dir: Path) -> StagedDataset:
    """Draw the demo dataset."""
    synthetic = params["synthetic"]
    root = generate_synthetic_dataset(
        staging_dir / "synthetic_faces", identities=synthetic["identities"],
        images_per_identity=synthetic["images_per_identity"], image_size_px=synthetic["image_size_px"], seed=seed,
    )
    return StagedDataset(root=root, source="synthetic", version=f"synthetic-seed{seed}")


def stage_archive(archive_path: Path, staging_dir: Path, source: str, version: str) -> StagedDataset:
    """Extract an archive safely and locate the folder that holds the identity folders."""
    extracted = staging_dir / "extracted"
    refused = extract_archive(archive_path, extracted)
    return StagedDataset(find_dataset_root(extracted), source, version, refused_entries=len(refused))


def stage_folder(folder: Path, staging_dir: Path) -> StagedDataset:
    """Copy a local folder mirror, so data/raw never aliases the user's own files."""
    root = find_dataset_root(folder)
    copy = staging_dir / "copied"
    shutil.copytree(root, copy, symlinks=True)  # symlinks are copied as links, then rejected by verify
    return StagedDataset(copy, str(folder), "local")


def stage_kaggle(params: dict, staging_dir: Path, cache_dir: Path) -> StagedDataset:
    """Download (or reuse) the pinned Kaggle archive, then extract it like a local one."""
    from facerec.kaggle_source import download_dataset_archive  # pulls in requests only when needed

    archive = download_dataset_archive(
        params["kaggle_dataset"], params.get("kaggle_version") or None, cache_dir,
        max_attempts=params["max_attempts"], retry_wait_s=params["retry_wait_s"],
    )
    return stage_archive(archive.archive_path, staging_dir, f"kaggle:{params['kaggle_dataset']}", archive.version)


def stage_source(params: dict, seed: int, staging_dir: Path, kaggle_cache_dir: Path) -> StagedDataset:
    """Dispatch on download.source: 'kaggle', 'synthetic', or a path to a .zip/.tar or folder."""
    source = str(params["source"])
    if source == "synthetic":
        return stage_synthetic(params, seed, staging_dir)
    if source == "kaggle":
        return stage_kaggle(params, staging_dir, kaggle_cache_dir)
    path = Path(source).expanduser()
    if path.is_dir():
        return stage_folder(path, staging_dir)
    if path.is_file():
        return stage_archive(path, staging_dir, str(path), "local")
    raise PipelineInputError(
        f"params.yaml: download.source = {source!r} is not 'kaggle', 'synthetic', or an existing "
        "archive (.zip, .tar[.gz|.bz2|.xz]) or folder with one sub-folder per identity"
    )
