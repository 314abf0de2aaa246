"""Benchmark: peak RSS of the train stage's code path at 224 px, batch 32, on the Pins mirror's train manifest.

make_dataset(cache on disk) + build_model (weights none, frozen base) + fit for a bounded number of
steps, run in a child process twice: with an empty disk cache (first training run) and, after a
full pass has filled it, with a filled one (every later run). The parent polls the child's RSS and reads its peak from the kernel afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil
from common import extract_mirror, load_average, mirror_argument, train_manifest

log = logging.getLogger("benchmarks.train_memory")


def child(args: argparse.Namespace) -> None:
    """The measured process: the stage's dataset, model and fit(), nothing else."""
    from facerec.config import load_config
    from facerec.data import make_dataset
    from facerec.manifests import load_split
    from facerec.model import build_model
    from facerec.training import compile_model

    started = time.perf_counter()
    frame = load_split(args.manifest)
    labels = sorted(frame["identity"].unique())
    dataset = make_dataset(frame, args.raw_dir, labels, image_size_px=224, batch_size=32, shuffle=True,
                           seed=42, cache=str(args.cache))
    if args.fill_only:
        for _ in dataset:  # one full pass writes the cache, as a first training epoch would
            pass
        print(json.dumps({"fill_s": round(time.perf_counter() - started, 1)}), flush=True)
        return
    # The project's train section (params.yaml) at 224 px, without pretrained weights.
    train = replace(load_config().train, weights="none", image_size=224)
    model = build_model(train, len(labels), seed=42)
    compile_model(model, train.learning_rate, train)
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    print(json.dumps({"fit_s": round(time.perf_counter() - started, 1)}), flush=True)


def measure(command: list[str]) -> dict:
    """Run the child; peak RSS by 0.2 s polling and by the kernel's high-water mark (wait4's ru_maxrss)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watched, polled_peak, started = psutil.Process(process.pid), 0, time.perf_counter()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            polled_peak = max(polled_peak, watched.memory_info().rss)
        except psutil.Error:  # exited between the two calls
            pass
        time.sleep(0.2)
    output = process.stdout.read()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"child failed ({os.waitstatus_to_exitcode(status)}): {output}")
    return {"wall_s": round(time.perf_counter() - started, 1), **json.loads(output.strip().splitlines()[-1]),
            "peak_rss_gb_polled": round(polled_peak / 1e9, 2),
            "peak_rss_gb_kernel": round(usage.ru_maxrss * 1024 / 1e9, 2),  # ru_maxrss is in KiB on Linux
            "load_average": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fill-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--raw-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = {"load_average_before": load_average(), "cpus": os.cpu_count(), "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="facerec-bench-memory-") as scratch:
        work = Path(scratch)
        raw_dir = extract_mirror(args.mirror, work / "raw")
        frame = train_manifest(raw_dir)
        frame.to_csv(work / "train.csv", index=False)
        result["train_images"] = len(frame)
        command = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--manifest",
                   str(work / "train.csv"), "--raw-dir", str(raw_dir), "--cache", str(work / "tfdata" / "cache")]
        result["empty_disk_cache"] = measure(command)
        # A bounded run may stop before the cache is complete (TF then drops it): fill it fully.
        result["cache_fill"] = measure([*command, "--fill-only"])
        result["filled_disk_cache"] = measure(command)
        log.info("%s", result)
        cache_bytes = sum(path.stat().st_size for path in (work / "tfdata").iterdir())
        result["disk_cache_gb"] = round(cache_bytes / 1e9, 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
