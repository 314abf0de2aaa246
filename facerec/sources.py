"""Bring the dataset from its source (Kaggle, local archive/folder, synthetic) into one folder."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from facerec.archive import ExtractionLimits, extract_archive
from facerec.errors import PipelineInputError
from facerec.layout import find_dataset_root, printable_name
from facerec.synthetic import generate_synthetic_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedDataset:
    """A dataset root (one folder per identity) inside the staging folder, and where it came from."""

    root: Path
    source: str
    version: str  # Kaggle version number, "synthetic-<seed>", or "local"
    # (entry as named in the source, reason) for everything that did not reach the dataset root
    skipped: list[tuple[str, str]] = field(default_factory=list)


def stage_synthetic(params: dict, seed: int, staging_dir: Path) -> StagedDataset:
    """Draw the demo dataset."""
    synthetic = params["synthetic"]
    root = generate_synthetic_dataset(
        staging_dir / "synthetic_faces", identities=synthetic["identities"],
        images_per_identity=synthetic["images_per_identity"], image_size_px=synthetic["image_size_px"], seed=seed,
    )
    return StagedDataset(root=root, source="synthetic", version=f"synthetic-seed{seed}")


def extraction_limits(params: dict, archive_path: Path) -> ExtractionLimits:
    """The byte budget for one archive: the stricter of the absolute cap and the ratio cap."""
    return ExtractionLimits(max_bytes=round(params["max_extracted_gb"] * 1e9),
                            max_ratio=params["max_extraction_ratio"],
                            archive_bytes=Path(archive_path).stat().st_size)


def stage_archive(archive_path: Path, staging_dir: Path, source: str, version: str, params: dict) -> StagedDataset:
    """Extract an archive safely (within the download section's caps) and locate the identity folders."""
    extracted = staging_dir / "extracted"
    refused = extract_archive(archive_path, extracted, extraction_limits(params, archive_path))
    found = find_dataset_root(extracted)
    skipped = [(entry.name, entry.reason) for entry in refused]
    skipped += [(printable_name(name), "outside_root") for name in found.ignored]
    return StagedDataset(found.root, source, version, skipped=skipped)


def stage_folder(folder: Path, staging_dir: Path) -> StagedDataset:
    """Copy a local folder mirror, so data/raw never aliases the user's own files."""
    found = find_dataset_root(folder)
    skipped = [(printable_name(name), "outside_root") for name in found.ignored]

    def skip_unsafe(directory: str, names: list[str]) -> set[str]:
        """Names not to copy: symlinks and names that are not UTF-8, recorded as skipped."""
        # A link's target is not what the user handed us; a non-UTF-8 name fits in no CSV.
        unsafe = {}
        for name in names:
            if os.path.islink(os.path.join(directory, name)):
                unsafe[name] = "symlink"
            elif printable_name(name) != name:
                unsafe[name] = "non_utf8_name"
        skipped.extend((printable_name(Path(directory, name).relative_to(folder).as_posix()), reason)
                       for name, reason in sorted(unsafe.items()))
        return set(unsafe)

    copy = staging_dir / "copied"
    shutil.copytree(found.root, copy, symlinks=True, ignore=skip_unsafe)
    return StagedDataset(copy, str(folder), "local", skipped=skipped)


def stage_kaggle(params: dict, staging_dir: Path, cache_dir: Path) -> StagedDataset:
    """Download (or reuse) the pinned Kaggle archive, then extract it like a local one."""
    from facerec.kaggle_source import download_dataset_archive  # pulls in requests only when needed

    archive = download_dataset_archive(
        params["kaggle_dataset"], params.get("kaggle_version") or None, cache_dir,
        max_attempts=params["max_attempts"], retry_wait_s=params["retry_wait_s"],
    )
    return stage_archive(archive.archive_path, staging_dir, f"kaggle:{params['kaggle_dataset']}", archive.version,
                         params)


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
        return stage_archive(path, staging_dir, str(path), "local", params)
    raise PipelineInputError(
        f"params.yaml: download.source = {source!r} is not 'kaggle', 'synthetic', or an existing "
        "archive (.zip, .tar[.gz|.bz2|.xz]) or folder with one sub-folder per identity"
    )
