"""Extract a .zip or tar archive without ever writing outside the target folder."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from facerec.errors import PipelineInputError

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = ".zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz"
_COPY_BUFFER_BYTES = 1 << 20
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class UnsupportedArchiveError(PipelineInputError):
    """The file is neither a zip nor a tar archive (judged by content)."""


@dataclass(frozen=True)
class RefusedEntry:
    """An archive entry that was not extracted, and why."""

    name: str
    # path_traversal | absolute_path | drive_letter | symlink | hardlink | special_file | encrypted
    reason: str


# One archive entry as both formats can describe it: name, kind, and how to open its data.
@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str  # "file", "dir", or a refusal reason
    open_data: Callable[[], AbstractContextManager[IO[bytes]]] | None = None


def _safe_parts(name: str) -> tuple[list[str], str | None]:
    """Split an entry name into path parts, or return the reason it must be refused."""
    # Windows-made archives may use backslashes as separators: treat them as such, so that
    # `..\\..\\evil` is caught here and `a\\b.jpg` lands in folder a on every platform.
    posix_name = name.replace("\\", "/")
    if _DRIVE_LETTER.match(posix_name):
        return [], "drive_letter"
    if posix_name.startswith("/"):
        return [], "absolute_path"
    parts = [part for part in posix_name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return [], "path_traversal"
    return parts, None


def _zip_name(info: zipfile.ZipInfo) -> str:
    """Entry name as the archiver meant it (many tools write UTF-8 without setting the flag)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        # zipfile decoded the raw bytes as cp437; undo that and try UTF-8 (ASCII is unchanged).
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _zip_entries(archive: zipfile.ZipFile) -> Iterator[_Entry]:
    """Describe each zip member; unix file types live in the high 16 bits of external_attr."""
    for info in archive.infolist():
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if stat.S_ISLNK(file_type):
            kind = "symlink"
        elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "special_file"
        elif info.flag_bits & 0x1:
            kind = "encrypted"  # we have no password; reading would raise mid-extraction
        else:
            kind = "dir" if info.is_dir() else "file"
        yield _Entry(_zip_name(info), kind, lambda info=info: archive.open(info))


def _tar_entries(archive: tarfile.TarFile) -> Iterator[_Entry]:
    """Describe each tar member, in stream order so compressed tars are read once."""
    for member in archive:
        if member.issym():
            kind = "symlink"
        elif member.islnk():
            kind = "hardlink"
        elif member.isdir():
            kind = "dir"
        elif member.isreg():
            kind = "file"
        else:
            kind = "special_file"  # devices, fifos and unknown types
        yield _Entry(member.name, kind, lambda member=member: archive.extractfile(member))


def _open_no_follow(path: str, flags: int) -> int:
    """Open for writing but never through a symlink; permissions from our umask, not the archive."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def _extract_entries(entries: Iterator[_Entry], target_dir: Path) -> list[RefusedEntry]:
    """Write the safe entries under target_dir and return the refused ones."""
    real_target = os.path.realpath(target_dir)
    ready_dirs: dict[str, bool] = {}  # folder -> stays inside target; realpath is per folder

    def ensure_dir(folder: str) -> bool:
        """Create folder unless a pre-existing symlink would lead it out of target_dir."""
        if folder not in ready_dirs:
            inside = os.path.commonpath([real_target, os.path.realpath(folder)]) == real_target
            if inside:
                os.makedirs(folder, exist_ok=True)
            ready_dirs[folder] = inside
        return ready_dirs[folder]

    refused: list[RefusedEntry] = []
    for entry in entries:
        parts, reason = _safe_parts(entry.name)
        reason = reason or (entry.kind if entry.kind not in ("file", "dir") else None)
        destination = os.path.join(real_target, *parts)
        folder = destination if entry.kind == "dir" else os.path.dirname(destination)
        if not reason and not ensure_dir(folder):
            reason = "path_traversal"
        if reason:
            refused.append(RefusedEntry(entry.name, reason))
            continue
        if entry.kind == "dir" or not parts:
            continue
        try:
            sink = open(destination, "wb", opener=_open_no_follow)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            refused.append(RefusedEntry(entry.name, "symlink"))  # pre-existing link in target
            continue
        with entry.open_data() as source, sink:
            shutil.copyfileobj(source, sink, _COPY_BUFFER_BYTES)  # streamed in chunks
    return refused


def _log_refused(archive_path: Path, refused: list[RefusedEntry]) -> None:
    """Warn once with a count per reason and a few example names."""
    if not refused:
        return
    reasons = sorted(Counter(entry.reason for entry in refused).items())
    counts = ", ".join(f"{reason}: {count}" for reason, count in reasons)
    examples = ", ".join(repr(entry.name) for entry in refused[:5])
    log.warning("Refused %d unsafe entries in %s (%s), e.g. %s",
                len(refused), archive_path, counts, examples)


def extract_archive(archive_path: Path, target_dir: Path) -> list[RefusedEntry]:
    """Extract a zip or tar archive into target_dir; return the entries refused as unsafe."""
    archive_path, target_dir = Path(archive_path), Path(target_dir)
    if not archive_path.is_file():
        raise PipelineInputError(f"Archive not found: {archive_path}")
    target_dir.mkdir(parents=True, exist_ok=True)
    # Judge by content, not extension: Kaggle names and user renames are unreliable.
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                refused = _extract_entries(_zip_entries(archive), target_dir)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path, mode="r|*") as archive:
                refused = _extract_entries(_tar_entries(archive), target_dir)
        else:
            raise UnsupportedArchiveError(
                f"{archive_path} is not a supported archive; supported formats: "
                f"{SUPPORTED_FORMATS} (detected by content). Re-pack it as .zip or point "
                "the download source at the extracted folder."
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise PipelineInputError(
            f"Archive {archive_path} is corrupt or incomplete ({error}); download it again."
        ) from error
    _log_refused(archive_path, refused)
    return refused
