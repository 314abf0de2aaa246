"""DVC stage: group duplicates and write leak-free, stratified train/val/test manifests."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from facerec.atomic import atomic_dir, write_csv, write_json
from facerec.config import load_config
from facerec.fingerprints import FINGERPRINT_COLUMNS
from facerec.errors import PipelineInputError
from facerec.face_data import drop_faceless
from facerec.manifests import read_faces, read_manifest
from facerec.split import split_manifest, split_metrics
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.split")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces", type=Path, required=True, help="the faces stage's CSV: which images kept a face")
    parser.add_argument("--splits-dir", type=Path, required=True, help="gets train/val/test(/unknown).csv")
    parser.add_argument("--report", type=Path, required=True, help="JSON: groups, duplicates, conflicts, sizes")
    parser.add_argument("--conflicts", type=Path, required=True, help="CSV of images filed under two identities")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON: duplicate groups and pairs that span splits")
    return parser.parse_args()


def stored_fingerprints(manifest: pd.DataFrame, manifest_path: Path) -> pd.DataFrame:
    """The fingerprint columns the download stage wrote for every image of the manifest."""
    missing = [column for column in FINGERPRINT_COLUMNS if column not in manifest.columns]
    if missing:
        raise PipelineInputError(f"{manifest_path} has no {', '.join(missing)} column: it was written by an older "
                                 "download stage; run `dvc repro -f download` to fingerprint the images")
    return manifest[list(FINGERPRINT_COLUMNS)]


def main() -> None:
    args = parse_args()
    params = load_config()
    manifest = read_manifest(args.manifest)
    faceless = {}
    if params.faces.detects:
        # Images whose face was not kept leave the dataset here, with their face status as the reason.
        manifest, faceless = drop_faceless(manifest, read_faces(args.faces))
        log.info("Faces stage kept no face for %d images: %s", sum(faceless.values()), faceless)
    # Duplicates are searched among the photos themselves, also when later stages read aligned
    # crops: the signals were calibrated on photos, while aligned crops put every face in one frame,
    # where 16-px thumbnails of different people look alike (docs/splitting.md).
    result = split_manifest(manifest, args.raw, params.split, params.base.seed,
                            stored_fingerprints(manifest, args.manifest))
    result.report["images_without_face"] = faceless
    # One folder swap: a crash never leaves a mix of old and new splits, and an old unknown.csv
    # cannot outlive a run without a holdout.
    with atomic_dir(args.splits_dir) as staging:
        for name, frame in result.splits.items():
            write_csv(staging / f"{name}.csv", frame)
    write_json(args.report, result.report)
    write_json(args.metrics, split_metrics(result.report))
    write_csv(args.conflicts, result.conflicts)
    sizes = ", ".join(f"{name} {len(frame)}" for name, frame in result.splits.items())
    log.info("Split (%s) written to %s: %s images; %s", params.split.strategy, args.splits_dir, sizes,
             split_metrics(result.report))


if __name__ == "__main__":
    run_stage(main)
