"""Helpers for end-to-end tests: the project copied into a fresh git + DVC repository, and commands in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, tiny_params, write_params

# Every stage in a minute or two on CPU, on top of the tests' tiny params: one identity more than
# the tiny set, held out as unknown, and one phase-1 epoch.
E2E_CHANGES = {
    "download": {"synthetic": {"identities": 5, "images_per_identity": 16}},
    "split": {"unknown_identities": 1},
    "train": {"image_size": 48, "epochs": 1, "fine_tune_epochs": 0, "batch_size": 16, "deterministic": False,
              "mixed_precision": "auto"},  # what a user has before `-S train.mixed_precision=off`
    # ONNX conversion takes minutes on a loaded CPU; tests/test_export.py covers it.
    "export": {"formats": ["saved_model", "tflite"], "timing_images": 4, "throughput_batch_size": 4},
}
PROJECT_FILES = ["dvc.yaml", "params.yaml", "pyproject.toml", "requirements.txt", ".dvcignore", ".gitignore",
                 "facerec", "stages"]
# Copied after `dvc init`: the plots page template setting (.dvc/config) and the plot templates.
DVC_FILES = [".dvc/config", ".dvc/plots"]


def sh(repo: Path, *command: str) -> str:
    """Run a command in the repository (our venv first on PATH); fail the test with its output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def make_repo(repo: Path, params_changes: dict) -> Path:
    """A committed copy of the project in `repo` with the tiny params.yaml changed by `params_changes`."""
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / name)
    write_params(repo, tiny_params(**params_changes))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copy2(PROJECT_ROOT / DVC_FILES[0], repo / DVC_FILES[0])
    shutil.copytree(PROJECT_ROOT / DVC_FILES[1], repo / DVC_FILES[1])
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "project")
    return repo
