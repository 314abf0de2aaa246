"""Helpers for train-stage tests: a scratch project on the synthetic set, and running the stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from conftest import PROJECT_ROOT

from facerec.layout import identity_from_folder

# Small enough for CPU: 32 px, a few epochs, a random (weights none) base and a short phase 2.
TINY_TRAIN = {"image_size": 32, "batch_size": 6, "epochs": 2, "fine_tune_epochs": 1, "weights": "none",
              "fine_tune_from": "conv5_block3_1_conv", "early_stopping_patience": 0, "cache": "none",
              "mixed_precision": "off", "deterministic": True}


def make_project(root: Path, raw_dir: Path, **train) -> Path:
    """params.yaml (shrunk train section), split CSVs (3 val images per identity) and a manifest."""
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["train"].update({**TINY_TRAIN, **train})
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    rows = [{"path": path.relative_to(raw_dir).as_posix(), "identity": identity_from_folder(path.parent.name)}
            for path in sorted(raw_dir.rglob("*.jpg"))]
    frame = pd.DataFrame(rows)
    val_mask = frame.groupby("identity").cumcount() < 3
    (root / "data/splits").mkdir(parents=True)
    frame[~val_mask].to_csv(root / "data/splits/train.csv", index=False)
    frame[val_mask].to_csv(root / "data/splits/val.csv", index=False)
    frame.to_csv(root / "data/manifest.csv", index=False)
    return root


def train_command(raw_dir: Path) -> list[str]:
    """The train stage's command line, paths as in dvc.yaml."""
    return [sys.executable, "-m", "stages.train", "--raw-dir", str(raw_dir), "--train", "data/splits/train.csv",
            "--val", "data/splits/val.csv", "--manifest", "data/manifest.csv", "--model-dir", "models",
            "--live-dir", "dvclive", "--cache-dir", ".cache/tfdata", "--backup-dir", ".cache/train-backup"]


def stage_env(**extra: str) -> dict[str, str]:
    """A clean environment: the project on the path, one thread pool per process, no TF chatter."""
    env = {"PYTHONPATH": str(PROJECT_ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/tmp"), "TF_CPP_MIN_LOG_LEVEL": "2", "DVCLIVE_TEST": "false"}
    return {**env, **extra}


def start_training(project: Path, raw_dir: Path, log_path: Path, **extra_env: str) -> subprocess.Popen:
    """Start the stage in `project` in the background, stdout and stderr appended to `log_path`."""
    with open(log_path, "ab") as log_file:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(train_command(raw_dir), cwd=project, env=stage_env(**extra_env),
                                stdout=log_file, stderr=subprocess.STDOUT)


def run_training(project: Path, raw_dir: Path, timeout_s: float = 240, **extra_env: str) -> str:
    """Run the stage to the end and return its log; fail the test with the log if it fails."""
    done = subprocess.run(train_command(raw_dir), check=False, cwd=project, env=stage_env(**extra_env), capture_output=True,
                          text=True, timeout=timeout_s)
    assert done.returncode == 0, f"train stage failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout + done.stderr


def read_steps(project: Path, metric: str) -> list[int]:
    """The step column of one DVCLive metrics file."""
    frame = pd.read_csv(project / "dvclive/plots/metrics" / f"{metric}.tsv", sep="\t")
    return frame["step"].tolist()
