"""End to end: `dvc repro` of all five stages on synthetic data in a fresh git + DVC repository."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from dvc_project import E2E_CHANGES, make_repo
from dvc_project import sh as _sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the project with tiny params, committed, after one full `dvc repro`."""
    repo = make_repo(tmp_path_factory.mktemp("project"), E2E_CHANGES)
    _sh(repo, "dvc", "repro")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "first run")
    return repo


def test_declared_metrics_exist_with_expected_keys(repo):
    evaluation = json.loads((repo / "metrics/eval.json").read_text(encoding="utf-8"))
    assert {"accuracy", "n_test", "n_classes", "open_set_auroc"} <= set(evaluation), "eval.json carries the contract keys"
    assert evaluation["n_classes"] == 4 and evaluation["n_test"] > 0, "measured on the tiny synthetic set"
    open_set = json.loads((repo / "reports/eval.json").read_text(encoding="utf-8"))["open_set"]
    assert open_set["n_unknown_identities"] == 1 and 0 < open_set["n_unknown"] <= 16, "the held-out identity was scored"
    assert 0.0 <= open_set["auroc"] <= 1.0, "unknown-face rejection measured"
    enrolment = json.loads((repo / "reports/eval.json").read_text(encoding="utf-8"))["enrolment"]
    assert enrolment["n_identities"] == 1 and enrolment["n"] == open_set["n_unknown"] - 5, "enrolled from 5 photos"
    assert (repo / "known_gallery/gallery.json").is_file(), "evaluate wrote the trained identities' gallery"
    exported = json.loads((repo / "metrics/export.json").read_text(encoding="utf-8"))
    assert set(exported) >= {"saved_model", "tflite"} and "onnx" not in exported, "the formats params asked for"
    assert exported["saved_model"]["top1_agreement"] == 1.0, "the SavedModel agrees with Keras on every test image"
    assert (repo / "export/saved_model/saved_model.pb").is_file() and (repo / "export/model.tflite").is_file(), \
        "export stage wrote the models"
    threshold = json.loads((repo / "reports/open_set.json").read_text(encoding="utf-8"))
    assert threshold["threshold"] == open_set["threshold"], "predict reads the threshold evaluate chose"
    data = json.loads((repo / "reports/data.json").read_text(encoding="utf-8"))
    assert data["train"]["identities"] == 4, "analyze counted the identities"
    download = json.loads((repo / "reports/download.json").read_text(encoding="utf-8"))
    assert download["ok"] == 80, "download verified every drawn image"
    live = json.loads((repo / "dvclive/metrics.json").read_text(encoding="utf-8"))
    assert "train" in live and "eval" in live, "DVCLive logged train and validation metrics"
    shown = json.loads(_sh(repo, "dvc", "metrics", "show", "--json"))
    metric_files = [path for revision in shown.values() for path in revision.get("data", {})]
    assert {"metrics/eval.json", "metrics/split.json"} <= set(metric_files) and \
        set(metric_files) <= {"metrics/faces.json", "metrics/split.json", "metrics/eval.json", "metrics/export.json"}, \
        f"no provenance, hashes or data tables among the metrics: {metric_files}"
    assert (repo / "models/model.keras").is_file() and (repo / "models/labels.json").is_file(), "model saved"
    assert (repo / "plots/eval/confusion.csv").is_file(), "confusion data for dvc plots"


def test_plots_render(repo):
    output = _sh(repo, "dvc", "plots", "show", "--json")
    rendered = json.loads(output)["data"]
    for title in ("Confusion matrix (test)", "Training curves (accuracy)", "Images per identity and split"):
        assert rendered.get(title), f"plot {title!r} resolves to data"
        assert not rendered[title][0].get("errors"), f"plot {title!r} rendered without errors"


def test_second_repro_changes_nothing(repo):
    output = _sh(repo, "dvc", "repro")
    assert "Data and pipelines are up to date" in output, output
    assert "Running stage" not in output, "no stage may rerun when nothing changed"


# The README's original-recipe overrides, as DVC parses them from the command line.
ORIGINAL_RECIPE = ["-S", "train.fine_tune_epochs=0", "-S", "train.label_smoothing=0", "-S", "train.weight_decay=0",
                   "-S", "train.early_stopping_patience=0", "-S", "train.model.head_dropout=[0.1,0.4]"]


def run_in_terminal(repo: Path, command: list[str], columns: int) -> str:
    """Output of `command` run in a pseudo-terminal `columns` wide, as a user sees it (colours removed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": str(columns), "TERM": "xterm"}
    with subprocess.Popen(command, cwd=repo, env=env, stdin=follower, stdout=follower, stderr=follower) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes when the command exits
                break
            if not chunk:
                break
            chunks.append(chunk)
    os.close(leader)
    output = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == 0, output
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)


def test_two_experiments_compare_at_a_glance(repo):
    # Up to evaluate: the experiments compare test metrics; exporting each model (minutes) adds nothing here.
    _sh(repo, "dvc", "exp", "run", "evaluate", "-n", "two-epochs", "-S", "train.epochs=2", *ORIGINAL_RECIPE)
    diff = json.loads(_sh(repo, "dvc", "metrics", "diff", "--json"))
    changed = {path for path, values in diff.items() if values}
    assert "metrics/eval.json" in changed, f"test metrics must differ after 2 epochs: {diff}"
    live = json.loads((repo / "dvclive/metrics.json").read_text(encoding="utf-8"))
    assert live["step"] == 1, "the experiment trained 2 epochs (steps 0 and 1)"
    trained_with = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))["params"]
    assert trained_with["model"]["head_dropout"] == [0.1, 0.4], "the list override reached the model"
    assert trained_with["label_smoothing"] == 0 and trained_with["weight_decay"] == 0, "original recipe applied"

    _sh(repo, "dvc", "exp", "run", "evaluate", "-n", "higher-rate", "-S", "train.learning_rate=0.01")
    # The README's comparison, in a terminal 120 columns wide and without a pager.
    table = run_in_terminal(repo, ["dvc", "exp", "show", "--only-changed", "--keep", "^accuracy$", "--no-pager"],
                            columns=120)
    experiments = [experiment for commit in json.loads(_sh(repo, "dvc", "exp", "show", "--json"))
                   for experiment in commit.get("experiments") or []]
    # As exp show prints them: rounded to 5 decimals, without a trailing ".0" (0.0 prints as 0).
    accuracies = {experiment["name"]: format(round(
        experiment["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]["accuracy"], 5), "g")
        for experiment in experiments}
    assert {"two-epochs", "higher-rate"} <= set(accuracies), f"both experiments are listed: {list(accuracies)}"
    header = next((line for line in table.splitlines() if "Experiment" in line), "")
    assert re.search(r"\baccuracy\b", header), f"the accuracy column is named in full at 120 columns:\n{table}"
    for name, shown in accuracies.items():
        row = next((line for line in table.splitlines() if f"[{name}]" in line), "")
        assert shown in row, f"experiment {name}'s test accuracy {shown} is readable at 120 columns:\n{table}"


def test_on_off_words_survive_dvc_rewriting_params(repo):
    # DVC rewrites params.yaml in YAML 1.2 and leaves `off` unquoted; YAML 1.1 would read it as False.
    # Up to train: what is checked is what train read from the rewritten params.yaml.
    _sh(repo, "dvc", "exp", "run", "train", "-S", "train.mixed_precision=off")
    assert "mixed_precision: off\n" in (repo / "params.yaml").read_text(encoding="utf-8"), "DVC wrote the bare word"
    card = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))
    assert card["params"]["mixed_precision"] == "off", "train read the word, not a boolean"
    # Every later -S rewrites the file again, with `off` still in it. The same run carries the
    # seed's split (split.strategy=random), so it is checked without a run of its own.
    _sh(repo, "dvc", "exp", "run", "train", "-S", "train.lr_patience=2", "-S", "split.strategy=random")
    card = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))
    assert (card["params"]["mixed_precision"], card["params"]["lr_patience"]) == ("off", 2), "both runs trained"
    split_report = json.loads((repo / "reports/split.json").read_text(encoding="utf-8"))
    assert split_report["params"]["strategy"] == "random", "the split stage reran with the random strategy"
    leak = json.loads((repo / "metrics/split.json").read_text(encoding="utf-8"))
    assert leak["groups_in_several_splits"] == split_report["groups_in_several_splits"], \
        f"dvc metrics show carries the leak count of the split: {leak}"


@pytest.mark.parametrize(("key", "check"), [("keypoint_min_inliers", "keypoint"), ("burst_max_delta_e", "burst")])
def test_a_word_for_a_check_threshold_stops_the_split_naming_the_key(repo, key, check):
    # DVC writes `off` as a bare word (YAML 1.2 keeps it a string): the split must refuse it in one
    # line naming the key and the 0 that turns the check off.
    outputs = ["params.yaml", "reports/split.json", "metrics/split.json", "data/conflicts.csv", "data/splits"]
    # DVC removes a stage's outputs before running it; they and the params are put back for the later tests.
    saved = {path: path.read_bytes() for name in outputs for path in [repo / name, *(repo / name).rglob("*")]
             if path.is_file()}
    failed = subprocess.run(["dvc", "exp", "run", "split", "-S", f"split.{key}=off"], cwd=repo,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                            capture_output=True, text=True, timeout=900)
    try:
        output = failed.stdout + failed.stderr
        assert f"{key}: off\n" in (repo / "params.yaml").read_text(encoding="utf-8"), "DVC wrote the word"
        errors = [line for line in output.splitlines() if f"split.{key} = 'off'" in line]
        assert failed.returncode != 0 and len(errors) == 1, f"one line names the key and the value:\n{output[-2000:]}"
        assert f"0 turns the {check} check off" in errors[0], f"and the way to turn it off: {errors[0]}"
        assert "Traceback" not in output, f"an expected problem, not a crash:\n{output[-2000:]}"
    finally:
        for path, data in saved.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    status = _sh(repo, "dvc", "status", "split")
    assert "up to date" in status, f"the project is back as the later tests expect it:\n{status}"


def test_a_failed_experiment_keeps_the_last_good_model_and_curves(repo):
    def snapshot() -> dict[str, bytes]:
        return {path.relative_to(repo).as_posix(): path.read_bytes()
                for folder in ("models", "dvclive") for path in sorted((repo / folder).rglob("*")) if path.is_file()}

    before = snapshot()
    failed = subprocess.run(["dvc", "exp", "run", "-S", "train.weights=weights/missing.h5"], cwd=repo,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                            capture_output=True, text=True, timeout=900)
    try:
        assert failed.returncode != 0 and "train.weights" in failed.stdout + failed.stderr, \
            f"the bad weights path fails the experiment, naming the key:\n{failed.stderr[-2000:]}"
        assert snapshot() == before, "DVC and the stage left the last good models/ and dvclive/ as they were"
    finally:
        _sh(repo, "git", "checkout", "--", "params.yaml")
