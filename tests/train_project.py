"""Helpers for train-stage tests: a scratch project on the synthetic set, and running the stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import PROJECT_ROOT, tiny_params, write_params

from facerec.layout import identity_from_folder


def make_project(root: Path, raw_dir: Path, **train) -> Path:
    """The tiny params.yaml (`train` changed), split CSVs (3 val images per identity) and a manifest."""
    write_params(root, tiny_params(train=train))
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
    return [sys.executable, "-m", "stages.train", "--raw", str(raw_dir), "--faces-dir", "data/faces", "--train", "data/splits/train.csv",
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
