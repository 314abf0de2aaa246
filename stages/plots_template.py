"""DVC stage: write the HTML template that lets `dvc plots show` / `diff` pages render offline."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from facerec.atomic import atomic_path
from facerec.plots_template import PACKAGE, page_template
from facerec.stage_runner import run_stage

log = logging.getLogger("facerec.plots_template")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the template .dvc/config's plots.html_template names")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    template = page_template()
    with atomic_path(args.out) as temp_path:
        temp_path.write_text(template, encoding="utf-8")
    log.info("Wrote %s (%.1f MB): Vega, Vega-Lite and Vega-Embed inline from %s",
             args.out, len(template.encode()) / 1e6, PACKAGE)


if __name__ == "__main__":
    run_stage(main)
