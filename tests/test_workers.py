"""Code tests for the worker count: the cores this process may use, not the machine's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from facerec import workers


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux feature")
def test_usable_cores_follow_the_cpu_affinity_a_scheduler_sets():
    # A child pinned to one core (as taskset, cpusets or a batch scheduler pin a job) sees one core.
    first_core = min(os.sched_getaffinity(0))
    pinned = subprocess.run(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{first_core}}}); "
                               "from facerec.workers import usable_cores; print(usable_cores())"],
        capture_output=True, text=True, check=True)
    assert pinned.stdout.strip() == "1", f"a process pinned to one core starts one worker: {pinned.stdout!r}"
    assert 1 <= workers.usable_cores() <= (os.cpu_count() or 1), "never more than the machine has"


def test_usable_cores_fall_back_to_the_core_count_without_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert workers.usable_cores() == (os.cpu_count() or 1), "without affinity: every core"
