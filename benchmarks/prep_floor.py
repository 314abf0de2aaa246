"""Benchmark floor: the naive preparation of the mirror in one process — unzip, decode every image, random split.

No safety, no verification report, no duplicates, no DVC: the least work any preparation of the
archive must do. `benchmarks/dvc_pipeline.py` runs it beside the pipeline and reports the ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from common import mirror_argument

SPLIT_FRACTIONS = {"test": 0.15, "val": 0.15}  # the rest is train, as params.yaml's split section


def naive_prepare(archive: Path, work_dir: Path, seed: int = 42) -> dict:
    """Extract the archive, decode every image in full, split each identity at random; seconds per step."""
    started = time.perf_counter()
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(work_dir)
    extracted = time.perf_counter()
    by_identity = defaultdict(list)
    for path in sorted(work_dir.rglob("*.jpg")):
        with Image.open(path) as image:
            image.load()
        by_identity[path.parent.name].append(path.relative_to(work_dir).as_posix())
    decoded = time.perf_counter()
    rng = random.Random(seed)
    rows = []
    for identity, paths in sorted(by_identity.items()):
        rng.shuffle(paths)
        cuts = [round(len(paths) * SPLIT_FRACTIONS["test"]),
                round(len(paths) * (SPLIT_FRACTIONS["test"] + SPLIT_FRACTIONS["val"]))]
        rows += [(path, identity, "test" if index < cuts[0] else "val" if index < cuts[1] else "train")
                 for index, path in enumerate(paths)]
    with open(work_dir / "split.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "identity", "split"), *rows])
    finished = time.perf_counter()
    return {"wall_s": round(finished - started, 2), "unzip_s": round(extracted - started, 2),
            "decode_s": round(decoded - extracted, 2), "split_s": round(finished - decoded, 2),
            "images": len(rows), "identities": len(by_identity)}


def run_floor(archive: Path) -> dict:
    """One naive preparation in a temporary folder under /tmp, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="facerec-floor-") as work_dir:
        return naive_prepare(archive, Path(work_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    args = parser.parse_args()
    print(json.dumps(run_floor(args.mirror)))


if __name__ == "__main__":
    main()
