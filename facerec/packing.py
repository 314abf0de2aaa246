"""Verify, fingerprint and pack the dataset in one pass: each file is read and decoded once.

The packed dataset is a zip whose members are stored (not compressed: JPEG and PNG are already
compressed) under the manifest's relative paths, in manifest order, with fixed dates and modes, so
the same files always give the same bytes: DVC sees an unchanged dataset as unchanged, and a
changed, added or removed image as a new file that reruns every stage reading it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
from facerec.fingerprints import FINGERPRINT_COLUMNS, GREY_DRAFT_MODE, fingerprint
from facerec.verify import DatasetFiles, inspect_files

# The earliest date a zip can hold: member dates then say nothing about when the download ran.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
MEMBER_MODE = 0o100644  # a regular file, readable by all


def member_info(relative: str) -> zipfile.ZipInfo:
    """The header of one packed image: its manifest path, a fixed date and mode, stored."""
    info = zipfile.ZipInfo(relative, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = MEMBER_MODE << 16
    info.create_system = 3  # unix, so the mode above is read as one
    return info


def pack_dataset(files: DatasetFiles, packed_path: Path, *, min_side_px: int,
                 workers: int | None = None) -> pd.DataFrame:
    """Write every readable file into `packed_path` while verifying and fingerprinting it; return the manifest."""
    with zipfile.ZipFile(packed_path, "w", zipfile.ZIP_STORED) as packed:
        return inspect_files(files, min_side_px=min_side_px, workers=workers, describe=fingerprint,
                             draft_mode=GREY_DRAFT_MODE,
                             extra_columns=FINGERPRINT_COLUMNS,
                             on_bytes=lambda relative, data: packed.writestr(member_info(relative), data))
