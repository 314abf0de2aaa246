"""The decoded-image cache: which one auto picks, and sharded disk caches read in parallel in the same order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from facerec.data import decoded_examples, decoded_gb, resolve_cache


def test_cache_auto_picks_memory_only_with_room_to_spare():
    pins_gb = decoded_gb(12_300, 224)
    assert pins_gb == pytest.approx(1.85, abs=0.01), "Pins' training set decoded at 224 px"
    assert resolve_cache("auto", 12_300, 224, available_gb=16) == "memory", "1.85 GB of 16 GB free: memory"
    assert resolve_cache("auto", 12_300, 224, available_gb=3) == "disk", "more than half the free RAM: disk"
    assert resolve_cache("none", 12_300, 224, available_gb=16) == "none", "an explicit setting is kept"


def frame_of(raw_dir: Path) -> pd.DataFrame:
    rows = [{"path": path.relative_to(raw_dir).as_posix(), "identity": path.parent.name}
            for path in sorted(raw_dir.rglob("*.jpg"))]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # a mixed order, as the training set is cached


def examples(dataset) -> list[tuple[bytes, int]]:
    return [(image.numpy().tobytes(), int(target)) for image, target in dataset]


@pytest.mark.parametrize("shards", [1, 5])
def test_sharded_disk_cache_reads_back_the_frames_order_without_decoding_again(tmp_path, synthetic_root, shards):
    raw_dir = Path(shutil.copytree(synthetic_root, tmp_path / "raw"))
    frame = frame_of(raw_dir)
    labels = sorted(frame["identity"].unique())
    expected = examples(decoded_examples(frame, raw_dir, labels, image_size_px=32))
    cache = tmp_path / "cache/train-digest-32px/cache"
    assert examples(decoded_examples(frame, raw_dir, labels, image_size_px=32, cache=str(cache),
                                     cache_shards=shards)) == expected, "filling the cache keeps the frame's order"
    assert len(list(cache.parent.glob("*.index"))) == shards, "one cache file per shard"
    shutil.rmtree(raw_dir)  # from now on only the cache can answer
    assert examples(decoded_examples(frame, raw_dir, labels, image_size_px=32, cache=str(cache),
                                     cache_shards=shards)) == expected, "the shards read back round-robin in order"


def test_a_new_shard_count_replaces_the_old_cache_files(tmp_path, synthetic_root):
    frame = frame_of(synthetic_root)
    labels = sorted(frame["identity"].unique())
    cache = tmp_path / "cache"
    for shards in (3, 2):
        examples(decoded_examples(frame, synthetic_root, labels, image_size_px=32, cache=str(cache),
                                  cache_shards=shards))
    names = sorted(path.name for path in tmp_path.glob("cache*.index"))
    assert names == ["cache-000-of-002.index", "cache-001-of-002.index"], "the 3-shard files were removed"
