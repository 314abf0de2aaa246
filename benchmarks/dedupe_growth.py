"""Benchmark (not a test): how the split's preparation grows with the dataset, at 1×, 4× and 10× Pins.

Larger datasets are synthesised from the mirror's images under /tmp (never in the project): each
extra copy of an image is a random re-crop (60–85 % of the side), rotation (±15°), optional mirror
flip and brightness/contrast change of it, so most copies are new images rather than near
duplicates. At each scale it times fingerprinting (decode + phash + thumbnails), the two indexed
pair searches and the whole split (search + grouping + assignment); the phash pairs both by the
graph and by the exact all-against-all scan, whichever the split would use, and whether they agree;
at 1× it also runs the all-pairs searches of facerec.dedupe and checks that they find the same pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from benchmarks.common import DEFAULT_MIRROR, load_average
from facerec.config import load_config
from facerec.dedupe import near_pairs, thumbnail_pairs
from facerec.fingerprints import PHASH_COLUMN, THUMBS_COLUMN, compute_fingerprints, decode_thumbnails, hashes_to_words
from facerec.pair_index import indexed_hash_pairs, indexed_thumbnail_pairs
from facerec.split import split_manifest

log = logging.getLogger("benchmarks.dedupe_growth")


def extract(mirror: Path, work_dir: Path) -> Path:
    """Unzip the mirror once into work_dir; return the folder of identity folders."""
    target = work_dir / "mirror"
    if not target.is_dir():
        with zipfile.ZipFile(mirror) as bundle:
            bundle.extractall(target)
    return next(path for path in target.iterdir() if path.is_dir())


def augment(task: tuple[str, str, int]) -> None:
    """Write one augmented copy of an image (seeded by its copy number and path)."""
    source, target, copy = task
    if Path(target).is_file():
        return
    rng = np.random.default_rng([copy, int(hashlib.sha256(source.encode()).hexdigest()[:8], 16)])
    with Image.open(source) as image:
        image = image.convert("RGB")
    width, height = image.size
    share = rng.uniform(0.6, 0.85)
    left, top = rng.uniform(0, 1 - share) * width, rng.uniform(0, 1 - share) * height
    image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    image = image.resize((width, height), Image.Resampling.BILINEAR,
                         box=(left, top, left + share * width, top + share * height))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: an interrupted run must not leave a half image a rerun would keep.
    partial = f"{target}.partial"
    image.save(partial, "JPEG", quality=int(rng.integers(75, 95)))
    os.replace(partial, target)


def synthesise(raw_dir: Path, work_dir: Path, copies: int, workers: int) -> dict[int, Path]:
    """Folders copy1..copyN beside the mirror, each an augmented copy of every image."""
    sources = sorted(raw_dir.rglob("*.jpg"))
    folders = {copy: work_dir / f"copy{copy}" for copy in range(1, copies + 1)}
    tasks = [(str(path), str(folders[copy] / path.relative_to(raw_dir)), copy)
             for copy in folders for path in sources]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(augment, tasks, chunksize=256))
    return folders


def manifest_of(roots: list[Path], image_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """Manifest rows (path relative to image_dir, identity, sha256, status) over several identity-folder roots."""
    files = [(root, path) for root in roots for path in sorted(root.rglob("*.jpg"))]
    frame = pd.DataFrame({
        "path": [path.relative_to(image_dir).as_posix() for _, path in files],
        "identity": [path.parent.name.removeprefix("pins_") for _, path in files],
        "sha256": [hashlib.sha256(path.read_bytes()).hexdigest() for _, path in files],
        "status": "ok",
    })
    return frame, [path for _, path in files]


def measure(scale: int, roots: list[Path], image_dir: Path, workers: int, all_pairs: bool) -> dict:
    """Time fingerprinting, the indexed searches and the split at one scale."""
    config = replace(load_config().split, strategy="grouped")
    seed = load_config().base.seed
    manifest, paths = manifest_of(roots, image_dir)
    started = time.perf_counter()
    fingerprints = compute_fingerprints(paths, workers)
    timings = {"fingerprint_s": time.perf_counter() - started}
    hash_bytes = hashes_to_words(fingerprints[PHASH_COLUMN].tolist()).view(np.uint8)
    thumbnails = decode_thumbnails(fingerprints[THUMBS_COLUMN].tolist())
    started = time.perf_counter()
    hash_pairs = indexed_hash_pairs(hash_bytes, config.near_duplicate_max_distance)
    timings["phash_search_s"] = time.perf_counter() - started  # the exact scan below EXACT_HASH_SEARCH_BELOW
    started = time.perf_counter()
    graph_hash_pairs = indexed_hash_pairs(hash_bytes, config.near_duplicate_max_distance, exact_below=0)
    timings["phash_graph_search_s"] = time.perf_counter() - started
    started = time.perf_counter()
    scanned_hash_pairs = indexed_hash_pairs(hash_bytes, config.near_duplicate_max_distance, exact_below=len(hash_bytes) + 1)
    timings["phash_exact_scan_s"] = time.perf_counter() - started
    started = time.perf_counter()
    thumb_pairs = indexed_thumbnail_pairs(thumbnails, config.near_duplicate_min_cosine)
    timings["thumbs_index_search_s"] = time.perf_counter() - started
    started = time.perf_counter()
    # The keypoint check reads candidate images: image_dir holds every root.
    result = split_manifest(manifest, image_dir, config, seed, fingerprints=fingerprints, workers=workers)
    timings["split_s"] = time.perf_counter() - started
    row = {"scale": scale, "images": len(manifest), **{key: round(value, 1) for key, value in timings.items()},
           "prep_s": round(timings["fingerprint_s"] + timings["split_s"], 1),
           "phash_pairs": len(hash_pairs), "thumbs_pairs": len(thumb_pairs),
           "phash_graph_equals_exact_scan": bool(np.array_equal(graph_hash_pairs, scanned_hash_pairs)),
           "keypoint_candidates": result.report["keypoint_candidate_pairs"],
           "keypoint_pairs": result.report["near_pairs_by_signal"]["keypoints"]["pairs"],
           "burst_candidates": result.report["burst_candidate_pairs"],
           "burst_pairs": result.report["near_pairs_by_signal"]["bursts"]["pairs"],
           "conflict_groups": result.report["conflict_groups"],
           "duplicate_groups": result.report["duplicate_groups"],
           "largest_group": int(pd.concat(result.splits.values())["group"].value_counts().max())}
    if all_pairs:
        started = time.perf_counter()
        brute_hash = near_pairs(hashes_to_words(fingerprints[PHASH_COLUMN].tolist()), config.near_duplicate_max_distance)
        brute_thumbs = thumbnail_pairs(thumbnails, config.near_duplicate_min_cosine)
        row["all_pairs_search_s"] = round(time.perf_counter() - started, 1)
        row["index_equals_all_pairs"] = {
            "phash": {"all_pairs": len(brute_hash), "same": bool(np.array_equal(brute_hash, hash_pairs))},
            "thumbs": {"all_pairs": len(brute_thumbs), "same": bool(np.array_equal(brute_thumbs, thumb_pairs))},
        }
    # The conflict groups' images, to look at (they are dropped from the split).
    result.conflicts.to_csv(image_dir / f"conflicts_{scale}x.csv", index=False)
    row["load_average_1_5_15"] = load_average()
    log.info("%s", json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="the Pins archive")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/facerec-dedupe-growth"))
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/facerec-dedupe-growth/result.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw_dir = extract(args.mirror, args.work_dir)
    started = time.perf_counter()
    copies = synthesise(raw_dir, args.work_dir, max(args.scales) - 1, args.workers)
    log.info("synthesised %d copies in %.0f s", len(copies), time.perf_counter() - started)
    rows = [measure(scale, [raw_dir, *(copies[copy] for copy in range(1, scale))], args.work_dir, args.workers,
                    scale == 1)
            for scale in sorted(args.scales)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
