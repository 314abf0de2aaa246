"""params.yaml → typed config: YAML 1.2 reading, unknown keys, every value checked with a clear message."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, shipped_params_with, tiny_config, tiny_params, write_params

from facerec import config as config_module
from facerec.config import Params, Section, load_config, read_params, resnet50_layer_names
from facerec.errors import ParamsError

# (changes to the tiny params, the key the message must name, the value as the message shows it)
BAD_VALUES = [
    ({"base": {"seed": -1}}, "base.seed", "-1"),
    ({"base": {"seed": "42"}}, "base.seed", "'42'"),
    ({"download": {"retry_wait_s": -1}}, "download.retry_wait_s", "-1"),
    ({"download": {"max_attempts": 0}}, "download.max_attempts", "0"),
    ({"download": {"synthetic": {"image_size_px": 0}}}, "download.synthetic.image_size_px", "0"),
    ({"download": {"synthetic": {"identities": 13}}}, "download.synthetic.identities", "13"),
    ({"download": {"source": ""}}, "download.source", "''"),
    ({"download": {"kaggle_dataset": "pins"}}, "download.kaggle_dataset", "'pins'"),
    ({"split": {"val_fraction": "0.2"}}, "split.val_fraction", "'0.2'"),
    ({"split": {"keep_conflicts": "no"}}, "split.keep_conflicts", "'no'"),
    ({"split": {"identities": "bob"}}, "split.identities", "'bob'"),
    ({"split": {"near_duplicate_max_distance": 300}}, "split.near_duplicate_max_distance", "300"),
    ({"split": {"test_fraction": 0.9}}, "split.test_fraction", "0.9"),
    ({"split": {"near_duplicate_min_cosine": 0}}, "split.near_duplicate_min_cosine", "0"),
    ({"split": {"strategy": "stratified"}}, "split.strategy", "'stratified'"),
    ({"split": {"keypoint_min_inliers": -1}}, "split.keypoint_min_inliers", "-1"),
    ({"split": {"keypoint_min_inliers": "off"}}, "split.keypoint_min_inliers", "'off'"),
    ({"split": {"keypoint_min_inliers": 2.5}}, "split.keypoint_min_inliers", "2.5"),
    ({"split": {"keypoint_candidate_min_cosine": 0}}, "split.keypoint_candidate_min_cosine", "0"),
    ({"split": {"min_images_per_identity": 2}}, "split.min_images_per_identity", "2"),
    ({"train": {"min_learning_rate": "abc"}}, "train.min_learning_rate", "'abc'"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate", "0"),
    ({"train": {"epochs": 2.5}}, "train.epochs", "2.5"),
    ({"train": {"mixed_precision": False}}, "train.mixed_precision", "False"),
    ({"train": {"mixed_precision": "bf16"}}, "train.mixed_precision", "'bf16'"),
    ({"train": {"steps_per_execution": 0}}, "train.steps_per_execution", "0"),
    ({"train": {"jit_compile": True, "deterministic": True}}, "train.jit_compile", "True"),
    ({"train": {"deterministic": "yes"}}, "train.deterministic", "'yes'"),
    ({"train": {"backup_every_epochs": 0}}, "train.backup_every_epochs", "0"),
    ({"train": {"cache": "ram"}}, "train.cache", "'ram'"),
    ({"train": {"cache_shards": 0}}, "train.cache_shards", "0"),
    ({"train": {"val_batch_size": 0}}, "train.val_batch_size", "0"),
    ({"train": {"fine_tune_from": "conv9_block1_1_conv"}}, "train.fine_tune_from", "'conv9_block1_1_conv'"),
    ({"train": {"weights": "/no/such/weights.h5"}}, "train.weights", "'/no/such/weights.h5'"),
    ({"train": {"model": {"head_dropout": [0.2]}}}, "train.model.head_dropout", "[0.2]"),
    ({"train": {"model": {"head_dropout": [1.5, 0.5]}}}, "train.model.head_dropout", "[1.5, 0.5]"),
    ({"train": {"model": {"head_units": 0}}}, "train.model.head_units", "0"),
    ({"train": {"model": {"head_units": "1024"}}}, "train.model.head_units", "'1024'"),
    ({"train": {"model": {"augment": {"zoom_fraction": 1.0}}}}, "train.model.augment.zoom_fraction", "1.0"),
    ({"evaluate": {"top_k": 0}}, "evaluate.top_k", "0"),
    ({"evaluate": {"open_set_score": "energy"}}, "evaluate.open_set_score", "'energy'"),
    ({"evaluate": {"enrol_images": 0}}, "evaluate.enrol_images", "0"),
    ({"export": {"formats": []}}, "export.formats", "[]"),
    ({"export": {"formats": ["onnx", "onnx"]}}, "export.formats", "['onnx', 'onnx']"),
    ({"export": {"formats": "tflite"}}, "export.formats", "'tflite'"),
    ({"export": {"tflite_quantization": "int8"}}, "export.tflite_quantization", "'int8'"),
    ({"export": {"timing_images": 0}}, "export.timing_images", "0"),
]


@pytest.mark.parametrize(("changes", "key", "shown"), BAD_VALUES, ids=[case[1] for case in BAD_VALUES])
def test_bad_value_names_key_value_and_what_is_allowed(changes, key, shown):
    with pytest.raises(ParamsError) as caught:
        tiny_config(**changes)
    message = str(caught.value)
    assert f"{key} = {shown}" in message, f"the message names the key and the value: {message}"
    assert "use " in message, f"the message says what is allowed: {message}"


def test_near_duplicate_distance_names_its_own_key_and_the_hash_size():
    with pytest.raises(ParamsError, match="near_duplicate_max_distance = 300") as caught:
        tiny_config(split={"near_duplicate_max_distance": 300})
    assert "unknown_identities" not in str(caught.value), "the message is about the key that is wrong"
    assert "256" in str(caught.value), "the limit is the hash's bit count"


@pytest.mark.parametrize(("section", "typo", "meant"), [
    ("train", "epoch", "epochs"),
    ("train.model", "head_dropuot", "head_dropout"),
    ("train.model.augment", "rotation_degs", "rotation_deg"),
    ("split", "val_fractoin", "val_fraction"),
])
def test_unknown_key_is_refused_by_name_with_the_known_ones(section, typo, meant):
    params = tiny_params()
    *parents, last = section.split(".")
    holder = params
    for name in [*parents, last]:
        holder = holder[name]
    holder[typo] = 5
    with pytest.raises(ParamsError) as caught:
        Params.from_params(params)
    message = str(caught.value)
    assert f"unknown key {section}.{typo}" in message, message
    assert f"did you mean {section}.{meant}?" in message and meant in message.split("knows only:")[1], message


def test_missing_key_and_unknown_section_are_refused():
    params = tiny_params()
    del params["train"]["lr_patience"]
    with pytest.raises(ParamsError, match="train.lr_patience missing"):
        Params.from_params(params)
    with pytest.raises(ParamsError, match="unknown key trian"):
        Params.from_params({**tiny_params(), "trian": {}})


def test_replace_is_checked_too():
    with pytest.raises(ParamsError, match="train.model.head_units = -3"):
        dataclasses.replace(tiny_config().train.model, head_units=-3)


def test_no_field_has_a_default_in_code():
    sections = [value for value in vars(config_module).values()
                if isinstance(value, type) and issubclass(value, Section) and value is not Section]
    assert len(sections) >= 8, "every params section has a dataclass"
    for section in sections:
        for item in dataclasses.fields(section):
            assert item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING, \
                f"{section.KEY}.{item.name}: params.yaml is the only home of values"


def test_project_params_build_and_keep_yaml_1_2_words(tmp_path):
    assert load_config(PROJECT_ROOT / "params.yaml").train.mixed_precision == "auto", "the shipped params are valid"
    # What `dvc exp run -S train.mixed_precision=off` writes: the word unquoted.
    text = (PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(text.replace("mixed_precision: auto", "mixed_precision: off"),
                                          encoding="utf-8")
    assert read_params(tmp_path / "params.yaml")["train"]["mixed_precision"] == "off", "YAML 1.2: off is a word"
    assert load_config(tmp_path / "params.yaml").train.mixed_precision == "off"


@pytest.mark.parametrize(("key", "check", "written", "accepted"), [
    ("keypoint_min_inliers", "keypoint", "0", 0), ("keypoint_min_inliers", "keypoint", "45", 45),
    ("keypoint_min_inliers", "keypoint", "off", None), ("keypoint_min_inliers", "keypoint", "no", None),
    ("burst_max_delta_e", "burst", "0", 0), ("burst_max_delta_e", "burst", "2.5", 2.5),
    ("burst_max_delta_e", "burst", "off", None), ("burst_max_delta_e", "burst", "no", None),
])
def test_image_checks_are_switched_off_by_zero_as_dvc_writes_it(tmp_path, key, check, written, accepted):
    # `dvc exp run -S split.<key>=0` writes a bare 0; YAML 1.2 keeps off/no as words.
    params = shipped_params_with(tmp_path, "split", key, written)
    if accepted is None:
        with pytest.raises(ParamsError, match=f"split.{key} = '{written}'.*0 turns the {check} check off"):
            load_config(params)
    else:
        assert getattr(load_config(params).split, key) == accepted, f"{written} is accepted for split.{key}"


@pytest.mark.parametrize(("word", "on_cpu", "on_gpu"), [
    ("auto", "float32", "mixed_float16"), ("off", "float32", "float32"), ("on", "mixed_float16", "mixed_float16"),
    ("float16", "mixed_float16", "mixed_float16"), ("bfloat16", "mixed_bfloat16", "mixed_bfloat16")])
def test_mixed_precision_words_as_dvc_writes_them_pick_a_policy(tmp_path, word, on_cpu, on_gpu):
    text = (PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(text.replace("mixed_precision: auto", f"mixed_precision: {word}"),
                                          encoding="utf-8")
    from facerec.runtime import mixed_precision_policy  # imports TensorFlow: only here

    setting = load_config(tmp_path / "params.yaml").train.mixed_precision
    assert setting == word, "YAML 1.2 keeps the bare word"
    assert (mixed_precision_policy(setting, gpu_visible=False), mixed_precision_policy(setting, gpu_visible=True)) \
        == (on_cpu, on_gpu), "auto and on keep their meaning; float16/bfloat16 name the policy"


def test_fine_tune_layer_names_are_resnet50s():
    import keras

    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    actual = tuple(layer.name for layer in base.layers[1:])  # the input layer's name varies
    assert resnet50_layer_names() == actual, "the static list is exactly ResNet50's layers, in order"


def test_limits_match_the_modules_they_describe():
    from facerec.fingerprints import PHASH_SIZE
    from facerec.synthetic import IDENTITY_NAMES

    assert PHASH_SIZE**2 == config_module.HASH_BITS, "near_duplicate_max_distance is bounded by the hash's bits"
    assert len(IDENTITY_NAMES) == config_module.SYNTHETIC_MAX_IDENTITIES, "one fictional name per identity"


def _stage(project: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], check=False, cwd=project, capture_output=True,
                          text=True, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


@pytest.mark.parametrize("changes", [{"base": {"seed": -1}}, {"evaluate": {"top_k": 0}}])
def test_a_bad_param_anywhere_stops_the_first_stage_cleanly(tmp_path, changes):
    write_params(tmp_path, tiny_params(**changes))
    done = _stage(tmp_path, "download", "--raw", "data/raw.zip", "--manifest", "data/manifest.csv", "--skipped", "data/skipped.csv",
                  "--report", "reports/download.json", "--kaggle-cache", ".cache/kaggle")
    assert done.returncode == 2, f"a bad param exits with code 2: {done.stderr}"
    assert "Traceback" not in done.stderr and "params.yaml: " in done.stderr, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"], "nothing was written"


def test_bad_yaml_is_one_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_config(tmp_path / "params.yaml")
