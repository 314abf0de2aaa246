"""Bring the dataset from its source (Kaggle, local archive/folder, synthetic) into one folder."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from facerec.archive import ExtractionLimits, extract_archive
from facerec.config import DownloadConfig
from facerec.errors import ParamsError
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


def stage_synthetic(config: DownloadConfig, seed: int, staging_dir: Path) -> StagedDataset:
    """Draw the demo dataset."""
    synthetic = config.synthetic
    root = generate_synthetic_dataset(
        staging_dir / "synthetic_faces", identities=synthetic.identities,
        images_per_identity=synthetic.images_per_identity, image_size_px=synthetic.image_size_px, seed=seed,
    )
    return StagedDataset(root=root, source="synthetic", version=f"synthetic-seed{seed}")


def extraction_limits(config: DownloadConfig, archive_path: Path) -> ExtractionLimits:
    """The byte budget for one archive: the stricter of the absolute cap and the ratio cap."""
    return ExtractionLimits(max_bytes=round(config.max_extracted_gb * 1e9),
                            max_ratio=config.max_extraction_ratio,
                            archive_bytes=Path(archive_path).stat().st_size)


def stage_archive(archive_path: Path, staging_dir: Path, source: str, version: str,
                  config: DownloadConfig) -> StagedDataset:
    """Extract an archive safely (within the download section's caps) and locate the identity folders."""
    extracted = staging_dir / "extracted"
    refused = extract_archive(archive_path, extracted, extraction_limits(config, archive_path))
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


def stage_kaggle(config: DownloadConfig, staging_dir: Path, cache_dir: Path) -> StagedDataset:
    """Download (or reuse) the pinned Kaggle archive, then extract it like a local one."""
    from facerec.kaggle_source import download_dataset_archive  # pulls in requests only when needed

    archive = download_dataset_archive(
        config.kaggle_dataset, config.kaggle_version, cache_dir,
        max_attempts=config.max_attempts, retry_wait_s=config.retry_wait_s,
    )
    return stage_archive(archive.archive_path, staging_dir, f"kaggle:{config.kaggle_dataset}", archive.version,
                         config)


def check_source(config: DownloadConfig, project_dir: Path, output_dir: Path) -> None:
    """Refuse, before anything is written, a source that does not exist or holds the project or outputs."""
    if config.source in ("kaggle", "synthetic"):
        return
    path = Path(config.source).expanduser()
    if not path.exists():
        raise ParamsError(
            f"params.yaml: download.source = {config.source!r} is not allowed; use kaggle, synthetic, or the path "
            "of an existing archive (.zip, .tar[.gz|.bz2|.xz]) or folder with one sub-folder per identity")
    source = path.resolve()
    for inside, what in ((project_dir.resolve(), "the project folder"),
                         (output_dir.resolve(), "the folder the download stage writes to")):
        if inside.is_relative_to(source):
            where = "is" if inside == source else "contains"
            raise ParamsError(
                f"params.yaml: download.source = {config.source!r} {where} {what} ({inside}); copying it into "
                "the project would copy the copy until the disk is full. Use kaggle, synthetic, or the path of "
                "the dataset's own archive or folder outside the project, e.g. ~/datasets/105_classes_pins_dataset")


def stage_source(config: DownloadConfig, seed: int, staging_dir: Path, kaggle_cache_dir: Path) -> StagedDataset:
    """Dispatch on download.source (checked by check_source): kaggle, synthetic, an archive or a folder."""
    if config.source == "synthetic":
        return stage_synthetic(config, seed, staging_dir)
    if config.source == "kaggle":
        return stage_kaggle(config, staging_dir, kaggle_cache_dir)
    path = Path(config.source).expanduser()
    if path.is_dir():
        return stage_folder(path, staging_dir)
    return stage_archive(path, staging_dir, str(path), "local", config)
