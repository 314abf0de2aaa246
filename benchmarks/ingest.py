"""Benchmark: wall time of the download stage's ingest of the Pins mirror — listing, then the one pass.

Runs the stage's own functions (the zip's safe listing with the caps from params.yaml, root finding,
then sha256 + full decode + fingerprints + packing of every file on all cores) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, load_average, mirror_argument, summary

from facerec.config import DownloadConfig, load_config
from facerec.packing import pack_dataset
from facerec.sources import stage_archive
from facerec.verify import summarize_manifest

log = logging.getLogger("benchmarks.ingest")


def one_run(mirror: Path, config: DownloadConfig) -> dict:
    """Seconds to list and to verify + fingerprint + pack, and the manifest's summary."""
    with tempfile.TemporaryDirectory(prefix="ingest-") as work_dir:
        started = time.perf_counter()
        staged = stage_archive(mirror, Path(work_dir), str(mirror), "local", config)
        extracted_s = time.perf_counter() - started
        manifest = pack_dataset(staged.files, Path(work_dir) / "raw.zip", min_side_px=config.min_side_px)
        verified_s = time.perf_counter() - started - extracted_s
    return {"list_s": extracted_s, "pack_s": verified_s, "summary": summarize_manifest(manifest),
            "skipped": len(staged.skipped)}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    mirror_argument(parser)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = load_config(REPO_ROOT / "params.yaml").download
    runs = [one_run(args.mirror, config) for _ in range(args.runs)]
    result = {
        "list_s": summary([run["list_s"] for run in runs]),
        "pack_s": summary([run["pack_s"] for run in runs]),
        "total_s": summary([run["list_s"] + run["pack_s"] for run in runs]),
        "manifest": runs[-1]["summary"],
        "skipped_entries": runs[-1]["skipped"],
        "load_average": load_average(),
    }
    log.info("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
