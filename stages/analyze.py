"""DVC stage: class balance, image sizes and sample images of the split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


from facerec.analysis import counts_per_identity, data_metrics, plot_counts, plot_image_sizes, plot_samples
from facerec.atomic import write_csv, write_json
from facerec.config import load_config
from facerec.face_data import image_root
from facerec.image_store import open_images
from facerec.manifests import load_split, read_manifest
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.analyze")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--raw", type=Path, required=True, help="the packed dataset (data/raw.zip) or a folder of it")
    parser.add_argument("--faces-dir", type=Path, required=True, help="aligned crops (read when faces.detector is on)")
    parser.add_argument("--splits-dir", type=Path, required=True)
    parser.add_argument("--split-report", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True, help="balance per split, image sizes, duplicates")
    parser.add_argument("--plots-dir", type=Path, required=True)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    images_dir = image_root(load_config().faces.detector, args.raw, args.faces_dir)
    splits = {path.stem: load_split(path) for path in sorted(args.splits_dir.glob("*.csv"))}
    manifest = read_manifest(args.manifest)
    report = json.loads(args.split_report.read_text(encoding="utf-8"))
    args.plots_dir.mkdir(parents=True, exist_ok=True)

    counts = counts_per_identity(splits)
    write_csv(args.plots_dir / "identity_counts.csv", counts)
    plot_counts(counts, args.plots_dir / "identity_counts.png")
    ok_sizes = manifest.loc[manifest["status"] == "ok", ["width", "height"]]
    write_csv(args.plots_dir / "image_sizes.csv", ok_sizes)
    plot_image_sizes(manifest, args.plots_dir / "image_sizes.png")
    plot_samples(splits["train"], open_images(images_dir), args.plots_dir / "samples.png")
    metrics = data_metrics(splits, manifest, report)
    write_json(args.report, metrics)
    log.info("Train set: %d identities, %d–%d images each (max/min %.2f)", metrics["train"]["identities"],
             metrics["train"]["min_per_identity"], metrics["train"]["max_per_identity"],
             metrics["train"]["max_min_ratio"])


if __name__ == "__main__":
    run_stage(main)
