"""A failed training run keeps the last completed run's curves (dvclive/) and model (models/)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from conftest import write_params
from train_project import make_project, run_training, stage_env, train_command

from facerec.config import read_params


def snapshot(folder) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def set_train_param(project, key: str, value) -> None:
    """Change one train param, reading and writing params.yaml with the YAML rules DVC uses."""
    params = read_params(project / "params.yaml")
    params["train"][key] = value
    write_params(project, params)


def failing_run(project, raw_dir) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(raw_dir), cwd=project, env=stage_env(), capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.slow
def test_a_failed_run_keeps_the_last_good_curves_and_model(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, epochs=1, fine_tune_epochs=0)
    run_training(project, synthetic_root, timeout_s=900)
    good = {name: snapshot(project / name) for name in ("dvclive", "models")}
    assert "metrics.json" in good["dvclive"] and "model.keras" in good["models"], "the good run wrote its outputs"

    set_train_param(project, "weights", "weights/resnet50-typo.h5")
    done = failing_run(project, synthetic_root)
    assert done.returncode == 2 and "train.weights" in done.stderr and "Traceback" not in done.stderr, \
        f"a bad weights path is an input error naming the key:\n{done.stderr[-2000:]}"
    assert {name: snapshot(project / name) for name in good} == good, "a run refused up front touches no output"

    # This one passes every check and fails mid-run: validation meets an image that is gone.
    set_train_param(project, "weights", "none")
    val_csv = project / "data/splits/val.csv"
    known_identity = val_csv.read_text(encoding="utf-8").splitlines()[1].split(",")[1]
    with open(val_csv, "a", encoding="utf-8") as split:
        split.write(f"pins_{known_identity}/vanished.jpg,{known_identity}\n")
    done = failing_run(project, synthetic_root)
    assert done.returncode != 0, f"the run fails when validation reads the missing image:\n{done.stderr[-2000:]}"
    assert "Training on" in done.stderr and "Traceback" in done.stderr, \
        "it passed every check and failed in training (an unexpected error keeps its traceback)"
    assert {name: snapshot(project / name) for name in good} == good, \
        "curves and model of the last completed run survive a run that failed mid-way"
