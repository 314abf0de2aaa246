"""Process pools whose workers die with the process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: ask the kernel to SIGKILL this worker when its parent ends.

    A parent killed with SIGKILL runs no clean-up, so without this its idle workers would
    wait on their task queue as orphans.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, cpusets, batch schedulers), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `max_workers` processes that do not outlive this one."""
    # fork, named: the parent-pid check assumes the worker's parent is this process, which a
    # forkserver (Python 3.14's default on Linux) is not.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=context, initializer=_die_with_parent,
                               initargs=(os.getpid(),))
