"""Benchmark: images/s of the tf.data input (decode + resize, no cache) from the packed dataset vs a folder.

Packs the mirror as the download stage does (facerec.packing), extracts the same files into a
folder, then times `make_dataset` over the seeded 70 % train split from each, interleaved.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, extract_mirror, load_average, mirror_argument, summary, train_manifest

from facerec.config import load_config
from facerec.data import make_dataset
from facerec.packing import pack_dataset
from facerec.sources import stage_archive

log = logging.getLogger("benchmarks.packed_input")


def images_per_second(frame, images_at: Path, labels: list[str], image_size_px: int) -> float:
    """One pass over the frame at batch 32, no cache: read + decode + resize."""
    dataset = make_dataset(frame, images_at, labels, image_size_px=image_size_px, batch_size=32, shuffle=False,
                           seed=0)
    started = time.perf_counter()
    for _ in dataset:
        pass
    return len(frame) / (time.perf_counter() - started)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    config = load_config(REPO_ROOT / "params.yaml").download
    with tempfile.TemporaryDirectory(prefix="packed-input-") as work:
        work_dir = Path(work)
        folder = extract_mirror(args.mirror, work_dir)
        staged = stage_archive(args.mirror, work_dir, str(args.mirror), "local", config)
        pack_dataset(staged.files, work_dir / "raw.zip", min_side_px=config.min_side_px)
        frame = train_manifest(folder)
        labels = sorted(frame["identity"].unique())
        rates: dict[str, list[float]] = {"folder": [], "packed": []}
        for _ in range(args.repeats):
            for name, location in (("folder", folder), ("packed", work_dir / "raw.zip")):
                rates[name].append(images_per_second(frame, location, labels, args.image_size))
    result = {name: summary(values) for name, values in rates.items()}
    result.update(images=len(frame), image_size_px=args.image_size, load_average=load_average())
    log.info("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
