"""End to end: `dvc repro` of all five stages on synthetic data in a fresh git + DVC repository."""

from __future__ import annotations

import json
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
    assert {"accuracy", "n_test", "n_classes"} <= set(evaluation), "eval.json carries the contract keys"
    assert evaluation["n_classes"] == 4 and evaluation["n_test"] > 0, "measured on the tiny synthetic set"
    open_set = evaluation["open_set"]
    assert open_set["n_unknown_identities"] == 1 and 0 < open_set["n_unknown"] <= 16, "the held-out identity was scored"
    assert 0.0 <= open_set["auroc"] <= 1.0, "unknown-face rejection measured"
    enrolment = evaluation["enrolment"]
    assert enrolment["n_identities"] == 1 and enrolment["n"] == open_set["n_unknown"] - 5, "enrolled from 5 photos"
    assert (repo / "known_gallery/gallery.json").is_file(), "evaluate wrote the trained identities' gallery"
    exported = json.loads((repo / "metrics/export.json").read_text(encoding="utf-8"))
    assert set(exported) >= {"saved_model", "tflite"} and "onnx" not in exported, "the formats params asked for"
    assert exported["saved_model"]["top1_agreement"] == 1.0, "the SavedModel agrees with Keras on every test image"
    assert (repo / "export/saved_model/saved_model.pb").is_file() and (repo / "export/model.tflite").is_file(), \
        "export stage wrote the models"
    threshold = json.loads((repo / "metrics/open_set.json").read_text(encoding="utf-8"))
    assert threshold["threshold"] == open_set["threshold"], "predict reads the threshold evaluate chose"
    data = json.loads((repo / "metrics/data.json").read_text(encoding="utf-8"))
    assert data["train"]["identities"] == 4, "analyze counted the identities"
    download = json.loads((repo / "metrics/download.json").read_text(encoding="utf-8"))
    assert download["ok"] == 80, "download verified every drawn image"
    live = json.loads((repo / "dvclive/metrics.json").read_text(encoding="utf-8"))
    assert "train" in live and "eval" in live, "DVCLive logged train and validation metrics"
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


def test_experiment_with_other_epochs_shows_in_metrics_diff(repo):
    _sh(repo, "dvc", "exp", "run", "-S", "train.epochs=2", *ORIGINAL_RECIPE)
    diff = json.loads(_sh(repo, "dvc", "metrics", "diff", "--json"))
    changed = {path for path, values in diff.items() if values}
    assert "dvclive/metrics.json" in changed, f"training metrics must differ after 2 epochs: {diff}"
    live = json.loads((repo / "dvclive/metrics.json").read_text(encoding="utf-8"))
    assert live["step"] == 1, "the experiment trained 2 epochs (steps 0 and 1)"
    trained_with = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))["params"]
    assert trained_with["model"]["head_dropout"] == [0.1, 0.4], "the list override reached the model"
    assert trained_with["label_smoothing"] == 0 and trained_with["weight_decay"] == 0, "original recipe applied"


def test_on_off_words_survive_dvc_rewriting_params(repo):
    # DVC rewrites params.yaml in YAML 1.2 and leaves `off` unquoted; YAML 1.1 would read it as False.
    _sh(repo, "dvc", "exp", "run", "-S", "train.mixed_precision=off")
    assert "mixed_precision: off\n" in (repo / "params.yaml").read_text(encoding="utf-8"), "DVC wrote the bare word"
    card = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))
    assert card["params"]["mixed_precision"] == "off", "train read the word, not a boolean"
    # Every later -S rewrites the file again, with `off` still in it.
    _sh(repo, "dvc", "exp", "run", "-S", "train.lr_patience=2")
    card = json.loads((repo / "models/model_card.json").read_text(encoding="utf-8"))
    assert (card["params"]["mixed_precision"], card["params"]["lr_patience"]) == ("off", 2), "both runs trained"
