"""DVC stage: fetch the dataset, verify and fingerprint every file, and pack it with its manifest."""

from __future__ import annotations

import argparse
import glob
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from facerec.atomic import atomic_path, remove_stale_staging, write_csv, write_json
from facerec.config import load_config
from facerec.packing import pack_dataset
from facerec.sources import check_source, stage_source
from facerec.stage_runner import run_stage
from facerec.verify import summarize_manifest

log = logging.getLogger("facerec.download")

STAGING_PREFIX = ".download-"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True,
                        help="the packed dataset: a zip of the files under the identity folders, stored")
    parser.add_argument("--manifest", type=Path, required=True, help="CSV with one row per file")
    parser.add_argument("--skipped", type=Path, required=True,
                        help="CSV of what never reached the raw folder (outside the root, refused entries)")
    parser.add_argument("--report", type=Path, required=True,
                        help="JSON summary of the download: counts, source, version, manifest hash")
    parser.add_argument("--kaggle-cache", type=Path, required=True,
                        help="kept between runs (not a DVC output) so interrupted downloads resume")
    return parser.parse_args()



def main() -> None:
    args = parse_args()
    params = load_config()
    config, seed = params.download, params.base.seed
    check_source(config, project_dir=Path.cwd(), output_dir=args.raw.parent)
    started = time.monotonic()
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    # A killed run's staged copy of the dataset and its half-written pack.
    remove_stale_staging(args.raw.parent, f"{STAGING_PREFIX}*")
    remove_stale_staging(args.raw.parent, f".{glob.escape(args.raw.name)}.*.tmp")
    # Synthetic images and tar contents are staged next to the outputs; zips and folders are read in place.
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=args.raw.parent) as staging:
        staged = stage_source(config, seed, Path(staging), args.kaggle_cache)
        log.info("Dataset from %s (version %s): %d files to verify after %.1f s",
                 staged.source, staged.version, len(staged.files.entries), time.monotonic() - started)
        # Written beside the target and renamed: a crash never leaves half a dataset.
        with atomic_path(args.raw) as packing:
            manifest = pack_dataset(staged.files, packing, min_side_px=config.min_side_px)

    skipped = pd.DataFrame(staged.skipped, columns=["entry", "reason"]).sort_values("entry")
    if len(skipped):
        log.warning("Skipped %d entries of the source that are not data (reasons: %s), listed in %s",
                    len(skipped), skipped["reason"].value_counts().sort_index().to_dict(), args.skipped)
    write_csv(args.skipped, skipped)
    write_csv(args.manifest, manifest)
    summary = summarize_manifest(manifest)
    write_json(args.report, {
        **summary,
        "skipped_entries": {str(reason): int(count)
                            for reason, count in skipped["reason"].value_counts().sort_index().items()},
        "source": staged.source,
        "dataset_version": staged.version,
        "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(),
    })
    log.info("Packed into %s; manifest: %d files, %d ok, rejected %s, %d identities (%.1f s in total)", args.raw,
             summary["files_seen"], summary["ok"], summary["rejected"] or "none",
             summary["identities"], time.monotonic() - started)


if __name__ == "__main__":
    run_stage(main)
