"""Read dataset images by their manifest path, from a folder or from the packed dataset (a stored zip).

The download stage packs the verified dataset into one zip whose members are stored, not
compressed, under the manifest's relative paths: every image is then one byte range of one file,
which DVC hashes and links as a single output instead of thousands of files.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from facerec.errors import PipelineInputError

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"


class FolderImages:
    """Images as files under a folder (the aligned crops, a user's folder, the tests' datasets)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.location = self.root

    def read_bytes(self, relative: str) -> bytes:
        """The encoded image at `relative` (a manifest path)."""
        return (self.root / relative).read_bytes()

    def open(self, relative: str) -> io.BytesIO:
        """The encoded image as a file object, for Pillow."""
        return io.BytesIO(self.read_bytes(relative))

    def file_paths(self, relatives: Iterable[str]) -> list[str]:
        """Absolute file names of the images, for readers that open files themselves (tf.data)."""
        return [str(self.root / relative) for relative in relatives]


class PackedImages:
    """Images as stored members of one zip file, read by offset (safe across fork: pread, no shared seek)."""

    def __init__(self, path: Path):
        self.location = Path(path)
        try:
            with zipfile.ZipFile(self.location) as archive:
                infos = archive.infolist()
        except (OSError, zipfile.BadZipFile) as error:
            raise PipelineInputError(f"{self.location} is not a readable packed dataset ({error}); "
                                     "rerun `dvc repro download` (or `dvc checkout`) to restore it") from error
        compressed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise PipelineInputError(f"{self.location}: member {compressed[0]!r} is compressed, but the packed "
                                     "dataset stores its images; rerun `dvc repro download` to rebuild it")
        self._descriptor = os.open(self.location, os.O_RDONLY)
        self._ranges = {info.filename: self._data_range(info) for info in infos if not info.is_dir()}

    def _data_range(self, info: zipfile.ZipInfo) -> tuple[int, int]:
        """(offset, size) of a member's bytes: past its local header, whose name and extra lengths may differ."""
        header = _LOCAL_HEADER.unpack(os.pread(self._descriptor, _LOCAL_HEADER.size, info.header_offset))
        if header[0] != _LOCAL_HEADER_SIGNATURE:
            raise PipelineInputError(f"{self.location}: member {info.filename!r} has no local header; the file is "
                                     "damaged, rerun `dvc repro download` to rebuild it")
        name_length, extra_length = header[-2:]
        return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length, info.file_size

    def __del__(self):
        if getattr(self, "_descriptor", None) is not None:
            os.close(self._descriptor)

    def names(self) -> list[str]:
        """Every member's path, in the file's order."""
        return list(self._ranges)

    def byte_range(self, relative: str) -> tuple[int, int]:
        """(offset, size) of the image at `relative` inside the packed file."""
        try:
            return self._ranges[relative]
        except KeyError:
            raise PipelineInputError(f"{relative!r} is not in the packed dataset {self.location}; the manifests "
                                     "and the dataset disagree: rerun `dvc repro`") from None

    def read_range(self, offset: int, size: int) -> bytes:
        """The bytes of one member, given its range."""
        return os.pread(self._descriptor, size, offset)

    def read_bytes(self, relative: str) -> bytes:
        """The encoded image at `relative` (a manifest path)."""
        return self.read_range(*self.byte_range(relative))

    def open(self, relative: str) -> io.BytesIO:
        """The encoded image as a file object, for Pillow."""
        return io.BytesIO(self.read_bytes(relative))

    def read_ranges(self, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Several members at once as an object array of bytes (one call per batch from tf.data)."""
        return np.array([self.read_range(int(offset), int(size)) for offset, size in zip(offsets, sizes)],
                        dtype=object)


def open_images(location: Path) -> FolderImages | PackedImages:
    """The images at `location`: a folder of files, or the packed dataset file."""
    location = Path(location)
    if location.is_dir():
        return FolderImages(location)
    if location.is_file():
        return PackedImages(location)
    raise PipelineInputError(f"No dataset at {location}; run `dvc repro` (or `dvc checkout`) to create it")
