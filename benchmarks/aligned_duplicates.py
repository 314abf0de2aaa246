"""Benchmark (not a test): near-duplicate signals on aligned face crops against the photos they came from.

Run it in a project where `dvc repro faces` ran with `faces.detector: mtcnn` (data/manifest.csv,
data/raw.zip, data/faces/, data/faces.csv). For the images that kept a face it counts the phash and
thumbnail pairs, and how many join two identities, once from the photos (the manifest's
fingerprints, what the split uses) and once from the aligned crops (fingerprinted here), then the
conflict groups and dropped images the split would get from each.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import load_average
from facerec.config import load_config
from facerec.face_data import drop_faceless
from facerec.fingerprints import FINGERPRINT_COLUMNS, PHASH_COLUMN, THUMBS_COLUMN, compute_fingerprints, \
    decode_thumbnails, hashes_to_words
from facerec.manifests import read_faces, read_manifest
from facerec.pair_index import indexed_hash_pairs, indexed_thumbnail_pairs
from facerec.split import split_manifest

THUMBNAIL_THRESHOLDS = (0.97, 0.98, 0.99)


def pair_counts(fingerprints, identities: np.ndarray, max_distance: int) -> dict:
    """Pairs per signal and threshold, and how many of them join two identities."""
    def counted(pairs: np.ndarray) -> dict:
        return {"pairs": len(pairs), "cross_identity": int((identities[pairs[:, 0]] != identities[pairs[:, 1]]).sum())}
    thumbnails = decode_thumbnails(fingerprints[THUMBS_COLUMN].tolist())
    hashes = hashes_to_words(fingerprints[PHASH_COLUMN].tolist()).view(np.uint8)
    return {f"phash_{max_distance}_bits": counted(indexed_hash_pairs(hashes, max_distance)),
            **{f"thumbnails_{threshold}": counted(indexed_thumbnail_pairs(thumbnails, threshold))
               for threshold in THUMBNAIL_THRESHOLDS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, required=True, help="a project after `dvc repro faces` with mtcnn")
    args = parser.parse_args()
    params = load_config(args.project / "params.yaml")
    manifest, _ = drop_faceless(read_manifest(args.project / "data/manifest.csv"),
                                read_faces(args.project / "data/faces.csv"))
    manifest = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    # The keypoint and burst checks read images; they are off here, so both sides compare the same two signals.
    config = replace(params.split, keypoint_min_inliers=0, burst_max_delta_e=0)
    identities = manifest["identity"].to_numpy()
    from_crops = compute_fingerprints([args.project / "data/faces" / path for path in manifest["path"]])
    result = {"images": len(manifest), "identities": int(manifest["identity"].nunique())}
    for name, fingerprints, image_dir in (("photos", manifest[list(FINGERPRINT_COLUMNS)], args.project / "data/raw.zip"),
                                          ("aligned_crops", from_crops, args.project / "data/faces")):
        split = split_manifest(manifest, image_dir, config, params.base.seed, fingerprints=fingerprints)
        result[name] = {**pair_counts(fingerprints, identities, config.near_duplicate_max_distance),
                        "conflict_groups": split.report["conflict_groups"],
                        "conflict_images_dropped": split.report["conflict_images_dropped"]}
    result["load_average"] = load_average()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
