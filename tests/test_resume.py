"""A train stage killed with SIGKILL mid-run resumes as the same run, unless its code changed."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT_ROOT
from train_project import make_project, read_steps, run_training, start_training

TOTAL_EPOCHS = 5  # 2 head-only + 3 fine-tuning
IN_PROGRESS_CURVES = ".cache/train-backup/dvclive/plots/metrics"  # the run in progress logs beside its backup


def logged_steps(project) -> list[int]:
    tsv = project / IN_PROGRESS_CURVES / "train/loss.tsv"
    try:
        return pd.read_csv(tsv, sep="\t")["step"].tolist() if tsv.is_file() else []
    except (pd.errors.EmptyDataError, KeyError):  # caught mid-write
        return []


def kill_after_step(project, raw_dir, log_path, step: int, **extra_env) -> int:
    """Start the stage, SIGKILL it once `step` is logged, and return the last step logged."""
    process = start_training(project, raw_dir, log_path, **extra_env)
    try:
        deadline = time.monotonic() + 300
        while max(logged_steps(project), default=-1) < step and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no callback, no cleanup runs
        process.wait()
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == -9, f"the run was killed mid-way, not finished or failed:\n{log[-3000:]}"
    return max(logged_steps(project))


def epochs_run(log: str) -> list[int]:
    return [int(number) - 1 for number in re.findall(r"^Epoch (\d+)/\d+", log, flags=re.MULTILINE)]


def curve(project, metric: str) -> list[float]:
    return pd.read_csv(project / "dvclive/plots/metrics" / f"{metric}.tsv", sep="\t").iloc[:, -1].tolist()


@pytest.mark.slow
def test_killed_run_resumes_in_phase2_with_a_continuous_dvclive_axis(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, epochs=2, fine_tune_epochs=3, deterministic=False)
    # Kill once the first fine-tuning epoch (step 2) is logged: phase 1 is done, phase 2 is not.
    last_logged = kill_after_step(project, synthetic_root, tmp_path / "killed.log", 2)
    assert 2 <= last_logged < TOTAL_EPOCHS - 1, "killed inside phase 2"
    assert not (project / "dvclive").exists(), "the killed run's curves never replace the last completed run's"

    log = run_training(project, synthetic_root)
    assert "Phase 1 already completed" in log, "phase 1 is not repeated"
    assert epochs_run(log) == list(range(last_logged + 1, TOTAL_EPOCHS)), \
        "the rerun continues after the last completed epoch and stops at the requested total"
    for metric in ("train/loss", "eval/accuracy", "train/learning_rate"):
        assert read_steps(project, metric) == list(range(TOTAL_EPOCHS)), f"{metric}: one row per epoch, no gaps"
    card = json.loads((project / "models/model_card.json").read_text(encoding="utf-8"))
    assert (card["phase1_epochs"], card["epochs_run"]) == (2, TOTAL_EPOCHS), "the card counts the whole run"
    assert not (project / ".cache/train-backup").exists(), "a completed run removes its backups"


@pytest.mark.slow
def test_a_resumed_run_is_the_same_run_as_an_uninterrupted_one(tmp_path, synthetic_root):
    # The learning rate halves after one flat epoch and early stopping watches: their memory must survive too.
    # Backups every 2 epochs: the kill after epoch 2 finished loses it, so the resumed run redoes it.
    settings = {"epochs": 4, "fine_tune_epochs": 1, "deterministic": True, "lr_patience": 1,
                "early_stopping_patience": 2, "backup_every_epochs": 2}
    whole, resumed = (make_project(tmp_path / name, synthetic_root, **settings) for name in ("whole", "resumed"))
    uninterrupted = start_training(whole, synthetic_root, tmp_path / "whole.log")  # alongside: 2 cores
    killed_at = kill_after_step(resumed, synthetic_root, tmp_path / "killed.log", 2)
    assert killed_at == 2, "killed inside phase 1 (epochs 0-3) after epoch 2, which no backup holds"
    log = run_training(resumed, synthetic_root, timeout_s=900)
    assert uninterrupted.wait(timeout=900) == 0, (tmp_path / "whole.log").read_text(errors="replace")[-3000:]
    assert "random-generator and callback state" in log, "the resumed run restored what Keras' backup leaves out"
    assert epochs_run(log)[0] == 2, "it resumes at the last backup (epoch 2) and redoes the one epoch after it"

    for metric in ("train/loss", "train/accuracy", "eval/accuracy", "train/learning_rate"):
        assert curve(resumed, metric) == pytest.approx(curve(whole, metric), rel=1e-6, abs=1e-7), \
            f"{metric}: every epoch of the resumed run matches the uninterrupted run"
    cards = [json.loads((project / "models/model_card.json").read_text(encoding="utf-8")) for project in (whole, resumed)]
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"], \
        "with op determinism, killed-and-resumed ends with the uninterrupted run's exact weights"


@pytest.mark.slow
def test_a_code_change_after_a_kill_starts_afresh(tmp_path, synthetic_root):
    code = tmp_path / "code"
    for package in ("facerec", "stages"):
        shutil.copytree(PROJECT_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    project = make_project(tmp_path / "project", synthetic_root, epochs=3, fine_tune_epochs=0, deterministic=False)
    kill_after_step(project, synthetic_root, tmp_path / "killed.log", 0, PYTHONPATH=str(code))
    model_source = Path(code / "facerec/model.py")
    model_source.write_text(model_source.read_text(encoding="utf-8") + "\n# a change to the network's code\n",
                            encoding="utf-8")

    log = run_training(project, synthetic_root, timeout_s=900, PYTHONPATH=str(code))
    assert "Not resuming" in log and "code.facerec/model.py" in log, "the log says why the backup is not used"
    assert epochs_run(log) == [0, 1, 2], "a run under changed code trains from its first epoch"
    assert read_steps(project, "train/loss") == [0, 1, 2], "its curves hold only the new run"
