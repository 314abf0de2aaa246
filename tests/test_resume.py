"""A train stage killed with SIGKILL mid-run resumes from its last completed epoch when rerun."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
from train_project import make_project, read_steps, run_training, start_training

TOTAL_EPOCHS = 5  # 2 head-only + 3 fine-tuning


def logged_steps(project) -> list[int]:
    tsv = project / "dvclive/plots/metrics/train/loss.tsv"
    try:
        return pd.read_csv(tsv, sep="\t")["step"].tolist() if tsv.is_file() else []
    except (pd.errors.EmptyDataError, KeyError):  # caught mid-write
        return []


@pytest.mark.slow
def test_killed_run_resumes_in_phase2_with_a_continuous_dvclive_axis(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, epochs=2, fine_tune_epochs=3, deterministic=False)
    process = start_training(project, synthetic_root, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 240
        # Kill once the first fine-tuning epoch (step 2) is logged: phase 1 is done, phase 2 is not.
        while max(logged_steps(project), default=-1) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.kill()  # SIGKILL: no callback, no cleanup runs
        process.wait()
    killed_log = (tmp_path / "killed.log").read_text(encoding="utf-8", errors="replace")
    assert process.returncode == -9, f"the run was killed mid-way, not finished or failed:\n{killed_log[-3000:]}"
    last_logged = max(logged_steps(project))
    assert 2 <= last_logged < TOTAL_EPOCHS - 1, "killed inside phase 2"

    log = run_training(project, synthetic_root)
    epochs_run = [int(number) - 1 for number in re.findall(r"^Epoch (\d+)/\d+", log, flags=re.MULTILINE)]
    assert "Phase 1 already completed" in log, "phase 1 is not repeated"
    assert epochs_run == list(range(last_logged + 1, TOTAL_EPOCHS)), \
        "the rerun continues after the last completed epoch and stops at the requested total"
    for metric in ("train/loss", "eval/accuracy", "train/learning_rate"):
        assert read_steps(project, metric) == list(range(TOTAL_EPOCHS)), f"{metric}: one row per epoch, no gaps"
    card = json.loads((project / "models/model_card.json").read_text(encoding="utf-8"))
    assert (card["phase1_epochs"], card["epochs_run"]) == (2, TOTAL_EPOCHS), "the card counts the whole run"
    assert not (project / ".cache/train-backup").exists(), "a completed run removes its backups"
