"""The decoded-image cache: which one auto picks, and sharded disk caches read in parallel in the same order."""

from __future__ import annotations

import pytest

from facerec.data import decoded_gb, resolve_cache


def test_cache_auto_picks_memory_only_with_room_to_spare():
    pins_gb = decoded_gb(12_300, 224)
    assert pins_gb == pytest.approx(1.85, abs=0.01), "Pins' training set decoded at 224 px"
    assert resolve_cache("auto", 12_300, 224, available_gb=16) == "memory", "1.85 GB of 16 GB free: memory"
    assert resolve_cache("auto", 12_300, 224, available_gb=3) == "disk", "more than half the free RAM: disk"
    assert resolve_cache("none", 12_300, 224, available_gb=16) == "none", "an explicit setting is kept"
