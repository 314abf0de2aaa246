"""DVC stage: fetch the dataset into data/raw and write the verified manifest."""

from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from facerec.atomic import remove_stale_staging, replace_dir, write_csv, write_json
from facerec.config import load_config
from facerec.sources import check_source, stage_source
from facerec.stage_runner import run_stage
from facerec.verify import build_manifest, summarize_manifest

log = logging.getLogger("facerec.download")

STAGING_PREFIX = ".download-"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True, help="where the dataset's identity folders go")
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
    check_source(config, project_dir=Path.cwd(), output_dir=args.raw_dir.parent)
    started = time.monotonic()
    args.raw_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(args.raw_dir.parent, f"{STAGING_PREFIX}*")  # a killed run's copy of the dataset
    # Stage next to data/raw, so the final move is a rename and a crash never leaves half a dataset.
    with tempfile.TemporaryDirectory(prefix=STAGING_PREFIX, dir=args.raw_dir.parent) as staging:
        staged = stage_source(config, seed, Path(staging), args.kaggle_cache)
        replace_dir(staged.root, args.raw_dir)
    log.info("Dataset from %s (version %s) in %s after %.1f s",
             staged.source, staged.version, args.raw_dir, time.monotonic() - started)

    skipped = pd.DataFrame(staged.skipped, columns=["entry", "reason"]).sort_values("entry")
    if len(skipped):
        log.warning("Skipped %d entries of the source that are not data (reasons: %s), listed in %s",
                    len(skipped), skipped["reason"].value_counts().sort_index().to_dict(), args.skipped)
    manifest = build_manifest(args.raw_dir, min_side_px=config.min_side_px)
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
    log.info("Manifest: %d files, %d ok, rejected %s, %d identities (%.1f s in total)",
             summary["files_seen"], summary["ok"], summary["rejected"] or "none",
             summary["identities"], time.monotonic() - started)


if __name__ == "__main__":
    run_stage(main)
