"""Extract a .zip or tar archive without ever writing outside the target folder."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from facerec.errors import PipelineInputError
from facerec.layout import printable_name

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = ".zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz"
_COPY_BUFFER_BYTES = 1 << 20
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


class UnsupportedArchiveError(PipelineInputError):
    """The file is neither a zip nor a tar archive (judged by content)."""


@dataclass(frozen=True)
class ExtractionLimits:
    """How much an archive may write: guards the disk against zip bombs and mislabelled files."""

    max_bytes: int  # download.max_extracted_gb, in bytes
    max_ratio: float  # download.max_extraction_ratio: extracted bytes per archive byte
    archive_bytes: int

    def budget(self) -> int:
        """Bytes the archive may write in total."""
        return min(self.max_bytes, round(self.max_ratio * self.archive_bytes))

    def explain(self) -> str:
        """Which param set the budget, with its value, for the error message."""
        if self.budget() < self.max_bytes:
            return (f"download.max_extraction_ratio = {self.max_ratio:g} times the archive's "
                    f"{self.archive_bytes / 1e6:.1f} MB")
        return f"download.max_extracted_gb = {self.max_bytes / 1e9:g}"


@dataclass(frozen=True)
class RefusedEntry:
    """An archive entry that was not extracted, and why."""

    name: str
    # path_traversal | absolute_path | drive_letter | symlink | hardlink | special_file | encrypted
    # | non_utf8_name
    reason: str


# One archive entry as both formats can describe it: name, kind, and how to open its data.
@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str  # "file", "dir", or a refusal reason
    open_data: Callable[[], AbstractContextManager[IO[bytes]]] | None = None
    size: int = 0  # bytes of data as the archive declares them (zip never yields more: it checks)
    member: str = ""  # the name the archive library opens the entry by


def _safe_parts(name: str) -> tuple[list[str], str | None]:
    """Split an entry name into path parts, or return the reason it must be refused."""
    # Windows-made archives may use backslashes as separators: treat them as such, so that
    # `..\\..\\evil` is caught here and `a\\b.jpg` lands in folder a on every platform.
    posix_name = name.replace("\\", "/")
    if printable_name(posix_name) != posix_name:
        # tar stores raw bytes; a name that is not UTF-8 cannot be written to the manifest.
        return [], "non_utf8_name"
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
        yield _Entry(_zip_name(info), kind, lambda info=info: archive.open(info), info.file_size, info.filename)


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


def _copy_capped(source: IO[bytes], sink: IO[bytes], budget_bytes: int) -> int:
    """Stream source into sink in chunks; stop once more than budget_bytes would be written."""
    written = 0
    while chunk := source.read(_COPY_BUFFER_BYTES):
        written += len(chunk)
        if written > budget_bytes:
            break
        sink.write(chunk)
    return written


def _name_clash(name: str) -> PipelineInputError:
    return PipelineInputError(
        f"Archive member {name!r} clashes with a file and a folder of the same name in the "
        "archive; re-pack it so that no file shares its name with a folder."
    )


def _extract_entries(entries: Iterator[_Entry], target_dir: Path, limits: ExtractionLimits) -> list[RefusedEntry]:
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
    budget_left = limits.budget()
    for entry in entries:
        parts, reason = _safe_parts(entry.name)
        reason = reason or (entry.kind if entry.kind not in ("file", "dir") else None)
        destination = os.path.join(real_target, *parts)
        folder = destination if entry.kind == "dir" else os.path.dirname(destination)
        try:
            if not reason and not ensure_dir(folder):
                reason = "path_traversal"
            if reason:
                refused.append(RefusedEntry(printable_name(entry.name), reason))
                continue
            if entry.kind == "dir" or not parts:
                continue
            sink = open(destination, "wb", opener=_open_no_follow)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
            raise _name_clash(entry.name) from error
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            refused.append(RefusedEntry(entry.name, "symlink"))  # pre-existing link in target
            continue
        with entry.open_data() as source, sink:
            budget_left -= _copy_capped(source, sink, budget_left)
        if budget_left < 0:
            raise _over_budget(entry.name, limits)
    return refused


def _over_budget(name: str, limits: ExtractionLimits) -> PipelineInputError:
    return PipelineInputError(
        f"Extraction stopped at archive member {name!r}: the archive expands to more "
        f"than {limits.budget() / 1e6:,.0f} MB ({limits.explain()}). If the archive is "
        "genuine, raise that param in params.yaml; a small archive that expands this much "
        "is usually a zip bomb."
    )


def _log_refused(archive_path: Path, refused: list[RefusedEntry]) -> None:
    """Warn once with a count per reason and a few example names."""
    if not refused:
        return
    reasons = sorted(Counter(entry.reason for entry in refused).items())
    counts = ", ".join(f"{reason}: {count}" for reason, count in reasons)
    examples = ", ".join(repr(entry.name) for entry in refused[:5])
    log.warning("Refused %d unsafe entries in %s (%s), e.g. %s",
                len(refused), archive_path, counts, examples)


@dataclass(frozen=True)
class ZipListing:
    """The safe files of a zip archive, to be read in place, and the entries refused."""

    files: dict[str, tuple[str, int]]  # POSIX path → (member name to open, declared bytes)
    folders: set[str]  # every folder, named or implied by a file's path
    refused: list[RefusedEntry]


def _parent_folders(path: str) -> Iterator[str]:
    """'a/b/c.jpg' → 'a', 'a/b'."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


def list_zip(archive_path: Path, limits: ExtractionLimits) -> ZipListing:
    """Classify a zip's entries as extraction would, without writing any: files, folders, refusals.

    The byte budget is checked against the sizes the archive declares, which bound what reading
    a member can return (zipfile stops there and checks the CRC).
    """
    archive_path = Path(archive_path)
    files: dict[str, tuple[str, int]] = {}
    folders: set[str] = set()
    refused: list[RefusedEntry] = []
    budget_left = limits.budget()
    with _readable_zip(archive_path) as archive:
        for entry in _zip_entries(archive):
            parts, reason = _safe_parts(entry.name)
            reason = reason or (entry.kind if entry.kind not in ("file", "dir") else None)
            if reason:
                refused.append(RefusedEntry(printable_name(entry.name), reason))
                continue
            if not parts:
                continue
            path = "/".join(parts)
            if entry.kind == "dir":
                folders.add(path)
                continue
            folders.update(_parent_folders(path))
            budget_left += files.get(path, ("", 0))[1]  # a repeated name replaces the earlier member
            files[path] = (entry.member, entry.size)
            budget_left -= entry.size
            if budget_left < 0:
                raise _over_budget(entry.name, limits)
    clash = sorted(folders & set(files))
    if clash:
        raise _name_clash(clash[0])
    _log_refused(archive_path, refused)
    return ZipListing(files, folders, refused)


@contextlib.contextmanager
def _readable_zip(archive_path: Path) -> Iterator[zipfile.ZipFile]:
    """Open a zip, turning a damaged index or a false UTF-8 flag into one clear input error."""
    if not archive_path.is_file():
        raise PipelineInputError(f"Archive not found: {archive_path}")
    try:
        with zipfile.ZipFile(archive_path) as archive:
            yield archive
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise _corrupt(archive_path, str(error)) from error
    except UnicodeDecodeError as error:
        raise _false_utf8(archive_path, error) from error


# Leading bytes of the formats we read: a file that starts like one but is not readable as it
# was cut short (an interrupted download) or damaged, not of an unknown kind.
_MAGIC_NUMBERS = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _looks_like_supported_archive(archive_path: Path) -> bool:
    """True if the file starts like a zip, gzip, bzip2 or xz stream, or has a tar header."""
    with open(archive_path, "rb") as handle:
        head = handle.read(512)
    return head.startswith(_MAGIC_NUMBERS) or head[257:262] == b"ustar"


def _corrupt(archive_path: Path, detail: str) -> PipelineInputError:
    return PipelineInputError(
        f"Archive {archive_path} is truncated or corrupt ({detail}); download it again."
    )


def _false_utf8(archive_path: Path, error: UnicodeDecodeError) -> PipelineInputError:
    # zipfile decodes every name when opening; a name flagged UTF-8 that is not stops it there.
    member = error.object.decode("utf-8", "backslashreplace")
    return PipelineInputError(
        f"Archive {archive_path}: member '{member}' is marked as a UTF-8 name but is not valid "
        "UTF-8; re-pack the archive with UTF-8 names, or extract it with a tool of your choice "
        "and point download.source at the folder (such names are then skipped and reported)."
    )


def extract_archive(archive_path: Path, target_dir: Path, limits: ExtractionLimits) -> list[RefusedEntry]:
    """Extract a zip or tar archive into target_dir; return the entries refused as unsafe."""
    archive_path, target_dir = Path(archive_path), Path(target_dir)
    if not archive_path.is_file():
        raise PipelineInputError(f"Archive not found: {archive_path}")
    target_dir.mkdir(parents=True, exist_ok=True)
    # Judge by content, not extension: Kaggle names and user renames are unreliable.
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as archive:
                refused = _extract_entries(_zip_entries(archive), target_dir, limits)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path, mode="r|*") as archive:
                refused = _extract_entries(_tar_entries(archive), target_dir, limits)
        elif _looks_like_supported_archive(archive_path):
            raise _corrupt(archive_path, "it starts like a zip or tar archive but its index or end is missing")
        else:
            raise UnsupportedArchiveError(
                f"{archive_path} is not a supported archive; supported formats: "
                f"{SUPPORTED_FORMATS} (detected by content). Re-pack it as .zip or point "
                "the download source at the extracted folder."
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise _corrupt(archive_path, str(error)) from error
    except UnicodeDecodeError as error:
        raise _false_utf8(archive_path, error) from error
    _log_refused(archive_path, refused)
    return refused


# Zips opened by this process, by (process id, path): a forked worker must open its own (a shared
# file offset would mix reads), and opening once per chunk of work would re-read the index each time.
_OPEN_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


@dataclass(frozen=True)
class ZipMemberReader:
    """Reads a zip member's bytes by name; picklable, so process-pool workers can read in place."""

    archive_path: str

    def __call__(self, member: str) -> bytes:
        key = (os.getpid(), self.archive_path)
        if key not in _OPEN_ZIPS:
            _OPEN_ZIPS[key] = zipfile.ZipFile(self.archive_path)
        try:
            return _OPEN_ZIPS[key].read(member)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise _corrupt(Path(self.archive_path), f"member {member!r}: {error}") from error
