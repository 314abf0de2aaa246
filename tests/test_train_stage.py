"""The train stage end to end on tiny data: outputs, DVCLive logs, and same seed → same weights."""

from __future__ import annotations

import json
import subprocess

import keras
import pytest
from train_project import make_project, read_steps, stage_env, start_training, train_command

import facerec.model
import facerec.training  # noqa: F401 - registers the label-smoothing loss in the saved compile config


@pytest.mark.slow
def test_two_deterministic_runs_give_identical_weights_and_full_outputs(tmp_path, synthetic_root):
    # The second run reads its images through the sharded disk cache: the order, so the weights, must not change.
    projects = [make_project(tmp_path / f"run{index}", synthetic_root, epochs=2, fine_tune_epochs=0,
                             deterministic=True, cache=cache) for index, cache in enumerate(("none", "disk"))]
    # Both at once: each is mostly single-threaded graph tracing, and CI has two cores.
    processes = [start_training(project, synthetic_root, project / "train.log") for project in projects]
    codes = [process.wait(timeout=300) for process in processes]
    assert codes == [0, 0], (projects[0] / "train.log").read_text(encoding="utf-8", errors="replace")[-3000:]
    cards = [json.loads((project / "models/model_card.json").read_text(encoding="utf-8")) for project in projects]
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"], \
        "same seed + op determinism → same weights, whether images come decoded afresh or from the disk cache"
    assert cards[1]["effective"]["cache"] == "disk", "the card records the cache the run used"
    assert len(list((projects[1] / ".cache/tfdata").glob("train-*/cache-*-of-002.index"))) == 2, \
        "the training images were cached in train.cache_shards (2) files"

    project, card = projects[0], cards[0]
    labels = json.loads((project / "models/labels.json").read_text(encoding="utf-8"))
    assert labels == sorted(labels) and len(labels) == card["labels"] == 4, "labels.json lists every identity"
    assert {"tensorflow", "keras", "dvc"} <= set(card["versions"]) and len(card["manifest_sha256"]) == 64
    assert card["params"]["epochs"] == 2 and card["epochs_run"] == 2, "the card records params and epochs"
    effective = card["effective"]
    assert effective["cache"] == "none" and effective["backup_every_epochs"] == 1, "the settings the run used"
    assert (effective["batch_size_per_replica"], effective["global_batch_size"], effective["val_global_batch_size"]) \
        == (6, 6, 8), "per-replica and global batches, validation's too, on the one CPU replica"
    assert effective["jit_compile"] is False and effective["learning_rate"] == card["params"]["learning_rate"], \
        "XLA as the compiled model ran it, and the learning rate after any scaling"
    assert effective["devices"] and effective["devices"][0].startswith("CPU"), "the devices trained on, by name"
    assert effective["steps_per_execution"] >= 1 and effective["dtype_policy"] == "float32", \
        "steps per execution as compiled (after any cut to a divisor of the epoch) and the dtype policy"
    for metric in ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy", "train/learning_rate"):
        assert read_steps(project, metric) == [0, 1], f"DVCLive logs {metric} every epoch"
    model = keras.models.load_model(project / "models/model.keras", safe_mode=True)
    assert model.output_shape == (None, 4), "the saved model loads safely and predicts 4 identities"
    assert not (project / ".cache/train-backup").exists(), "a completed run removes its backups"


def test_imagenet_weights_offline_says_what_happened_and_the_ways_out(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, weights="imagenet")
    keras_home = tmp_path / "keras_home"  # an empty Keras cache
    closed_port = "http://127.0.0.1:9"  # nothing listens: the fetch fails at once, and never leaves the machine
    done = subprocess.run(train_command(synthetic_root), check=False, cwd=project, capture_output=True, text=True,
                          timeout=240, env=stage_env(KERAS_HOME=str(keras_home), https_proxy=closed_port,
                                                     HTTPS_PROXY=closed_port, http_proxy=closed_port,
                                                     HTTP_PROXY=closed_port, no_proxy="", NO_PROXY=""))
    assert done.returncode == 2, f"an expected problem exits with code 2: {done.stderr[-3000:]}"
    message = done.stderr
    assert "Traceback" not in message, message
    assert "train.weights = 'imagenet'" in message and "fetching them failed" in message, "what happened"
    cached = keras_home / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert str(cached) in message, f"way out 1a: the file into Keras' own cache, by exact name: {message}"
    assert "train.weights: /path/to/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message, "way out 1b"
    assert "train.weights: none" in message, "way out 2"
    assert not (project / "models").exists() and not (project / "dvclive").exists(), "nothing was written"


def test_jit_compile_with_op_determinism_is_refused_before_any_output(tmp_path, synthetic_root):
    project = make_project(tmp_path / "project", synthetic_root, jit_compile=True, deterministic=True)
    done = subprocess.run(train_command(synthetic_root), check=False, cwd=project, capture_output=True, text=True,
                          timeout=240, env=stage_env())
    assert done.returncode == 2 and "Traceback" not in done.stderr, f"a clear refusal: {done.stderr[-3000:]}"
    assert "train.jit_compile = True is not allowed" in done.stderr and "train.deterministic" in done.stderr, \
        "names the key, the value and the way out"
    assert not (project / "models").exists() and not (project / ".cache").exists(), "nothing was written"
