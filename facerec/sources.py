"""Bring the dataset from its source (Kaggle, local archive/folder, synthetic) into one folder."""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from facerec.archive import ExtractionLimits, ZipListing, ZipMemberReader, extract_archive, list_zip
from facerec.config import DownloadConfig
from facerec.errors import ParamsError
from facerec.layout import TreeEntry, find_dataset_root, is_image_data, layout_status, locate_root, printable_name
from facerec.synthetic import generate_synthetic_dataset
from facerec.verify import DatasetFiles, folder_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedDataset:
    """The files under the dataset root (one folder per identity), where to read them, and their origin."""

    files: DatasetFiles
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
    return StagedDataset(folder_files(root), source="synthetic", version=f"synthetic-seed{seed}")


def extraction_limits(config: DownloadConfig, archive_path: Path) -> ExtractionLimits:
    """The byte budget for one archive: the stricter of the absolute cap and the ratio cap."""
    return ExtractionLimits(max_bytes=round(config.max_extracted_gb * 1e9),
                            max_ratio=config.max_extraction_ratio,
                            archive_bytes=Path(archive_path).stat().st_size)


def stage_archive(archive_path: Path, staging_dir: Path, source: str, version: str,
                  config: DownloadConfig) -> StagedDataset:
    """Locate the identity folders of an archive within the download section's caps: a zip is read
    in place (nothing extracted), a tar is extracted safely into the staging folder."""
    limits = extraction_limits(config, archive_path)
    if zipfile.is_zipfile(archive_path):
        listing = list_zip(Path(archive_path), limits)
        files, ignored = _zip_dataset_files(Path(archive_path), listing)
        skipped = [(entry.name, entry.reason) for entry in listing.refused]
        skipped += [(printable_name(name), "outside_root") for name in ignored]
        return StagedDataset(files, source, version, skipped=skipped)
    extracted = staging_dir / "extracted"
    refused = extract_archive(archive_path, extracted, limits)
    found = find_dataset_root(extracted)
    skipped = [(entry.name, entry.reason) for entry in refused]
    skipped += [(printable_name(name), "outside_root") for name in found.ignored]
    return StagedDataset(folder_files(found.root), source, version, skipped=skipped)


def _zip_dataset_files(archive_path: Path, listing: ZipListing) -> tuple[DatasetFiles, list[str]]:
    """The files under a zip's dataset root, read in place, and what was left beside its wrappers."""
    read = ZipMemberReader(str(archive_path))
    children: dict[str, list[TreeEntry]] = {}
    for path in listing.folders:
        children.setdefault(path.rpartition("/")[0], []).append(TreeEntry(path, True))
    for path in listing.files:
        children.setdefault(path.rpartition("/")[0], []).append(TreeEntry(path, False))
    root, ignored = locate_root(lambda path: children.get(path, []),
                                lambda path: is_image_data(io.BytesIO(read(listing.files[path][0]))),
                                str(archive_path))
    prefix = f"{root}/" if root else ""
    entries = sorted(((path[len(prefix):], member, layout_status(tuple(path[len(prefix):].split("/"))))
                      for path, (member, _) in listing.files.items() if path.startswith(prefix)),
                     key=lambda entry: entry[0].encode("utf-8"))
    return DatasetFiles(entries, read), ignored


def stage_folder(folder: Path) -> StagedDataset:
    """Read a local folder mirror in place; links and non-UTF-8 names are skipped and reported."""
    found = find_dataset_root(folder)
    skipped = [(printable_name(name), "outside_root") for name in found.ignored]
    listed = folder_files(found.root)
    # A link's target is not what the user handed us; a non-UTF-8 name fits in no CSV.
    unsafe = [entry for entry in listed.entries if entry[2] in ("symlink", "non_utf8_name")]
    prefix = found.root.relative_to(folder).as_posix()
    skipped += [(printable_name(relative if prefix == "." else f"{prefix}/{relative}"), status)
                for relative, _, status in unsafe]
    kept = [entry for entry in listed.entries if entry[2] not in ("symlink", "non_utf8_name")]
    return StagedDataset(DatasetFiles(kept, listed.read), str(folder), "local", skipped=skipped)


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
        return stage_folder(path)
    return stage_archive(path, staging_dir, str(path), "local", config)
