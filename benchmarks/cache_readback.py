"""Benchmark: read-back images/s of the decoded-image cache — memory vs disk in 1 or N shard files.

Fills each cache once from the Pins mirror's train manifest (224 px), then times the epochs
after the first: unbatched examples batched by 32 and prefetched, as training reads them, and
through the training stream's seeded shuffle buffer too. The disk files sit in the page cache
after filling, so the figures are the readers' CPU cost, not the disk's speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)
import tensorflow as tf
from common import extract_mirror, load_average, mirror_argument, summary, train_manifest
from input_pipeline import images_per_second

from facerec.data import ShuffledEpochs, decoded_examples

log = logging.getLogger("benchmarks.cache_readback")


def layouts(shard_counts: list[int], work: Path) -> dict[str, tuple[str, int]]:
    """name → (cache setting, shards) for memory and each disk shard count."""
    cases = {"memory": ("memory", 1)}
    cases.update({f"disk_{shards}_shards": (str(work / f"cache-{shards}" / "cache"), shards) for shards in shard_counts})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4, 16], help="disk shard counts to compare")
    parser.add_argument("--repeats", type=int, default=5, help="read-back epochs timed per layout")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = {"load_average_before": load_average(), "cpus": os.cpu_count(), "image_size_px": args.image_size}
    with tempfile.TemporaryDirectory(prefix="facerec-bench-cache-") as scratch:
        work = Path(scratch)
        raw_dir = extract_mirror(args.mirror, work / "raw")
        frame = train_manifest(raw_dir).sample(frac=1.0, random_state=42)
        labels = sorted(frame["identity"].unique())
        result["train_images"] = len(frame)
        streams = {}
        for name, (cache, shards) in layouts(args.shards, work).items():
            examples = decoded_examples(frame, raw_dir, labels, image_size_px=args.image_size, cache=cache,
                                        cache_shards=shards)
            batches = examples.batch(32).prefetch(tf.data.AUTOTUNE)
            result.setdefault("fill_decode", {})[name] = round(images_per_second(batches))
            # The training stream on the filled cache: its seeded shuffle buffer refills every epoch.
            streams[name] = (batches, ShuffledEpochs(examples, len(frame), batch_size=32, seed=42))
        runs: dict[str, list[float]] = {}
        for repeat in range(args.repeats):  # interleaved: the shared CPU's speed drifts
            for name, (batches, stream) in streams.items():
                runs.setdefault(f"read_back/{name}", []).append(images_per_second(batches))
                runs.setdefault(f"through_shuffle_buffer/{name}", []).append(
                    images_per_second(stream.epochs(repeat + 1, repeat + 2)))
            log.info("repeat %d: %s (load %s)", repeat, {key: round(values[-1]) for key, values in runs.items()},
                     load_average())
        result["img_per_s"] = {key: summary(values) for key, values in runs.items()}
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
