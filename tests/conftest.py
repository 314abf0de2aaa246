"""Shared fixtures: a tiny synthetic dataset, and the one shrunk copy of params.yaml tests use."""

from __future__ import annotations

import copy
import os

# Quiet TensorFlow's start-up chatter in test logs; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from facerec.config import Params, read_params  # noqa: E402
from facerec.synthetic import generate_synthetic_dataset  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The project's params.yaml shrunk for CPU tests: small synthetic data, 32 px, a few epochs, a
# random (weights none) base and a short phase 2. Tests change single keys on top of it.
TINY_PARAMS = {
    "download": {"source": "synthetic", "synthetic": {"identities": 4, "images_per_identity": 14,
                                                      "image_size_px": 48}},
    "split": {"min_images_per_identity": 3},
    "train": {"image_size": 32, "batch_size": 6, "epochs": 2, "fine_tune_epochs": 1, "weights": "none",
              "fine_tune_from": "conv5_block3_1_conv", "early_stopping_patience": 0, "cache": "none",
              "val_batch_size": 8, "backup_every_epochs": 1, "cache_shards": 2,
              "mixed_precision": "off", "deterministic": True,
              "steps_per_execution": 4},
    "evaluate": {"top_k": 2, "batch_size": 8, "grid_images": 6},
}


def merged(base: dict, changes: dict) -> dict:
    """A copy of `base` with `changes` merged in, section by section."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        is_section = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if is_section else copy.deepcopy(value)
    return result


def tiny_params(**changes: dict) -> dict:
    """The project's params.yaml, read as DVC reads it, with TINY_PARAMS and then `changes` merged in."""
    return merged(merged(read_params(PROJECT_ROOT / "params.yaml"), TINY_PARAMS), changes)


def write_params(folder: Path, params: dict) -> Path:
    """Write `params` as `folder`/params.yaml in YAML 1.2, as DVC writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    with open(folder / "params.yaml", "w", encoding="utf-8") as handle:
        yaml.dump(params, handle)
    return folder / "params.yaml"


def shipped_params_with(folder: Path, section: str, key: str, written: str) -> Path:
    """The project's own params.yaml text with `section.key` set to the bare word `written` (as `dvc exp run -S` writes it)."""
    text = (PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8")
    default = f"{key}: {read_params(PROJECT_ROOT / 'params.yaml')[section][key]}"
    assert default in text, f"the shipped params set {section}.{key}"
    (folder / "params.yaml").write_text(text.replace(default, f"{key}: {written}"), encoding="utf-8")
    return folder / "params.yaml"


def tiny_config(**changes: dict) -> Params:
    """tiny_params(**changes) as the checked configuration the stages build."""
    return Params.from_params(tiny_params(**changes))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """4 identities × 12 images at 48 px in the Kaggle layout (pins_<Name>/<file>.jpg)."""
    root = tmp_path_factory.mktemp("synthetic") / "105_classes_pins_dataset"
    return generate_synthetic_dataset(root, identities=4, images_per_identity=12, image_size_px=48, seed=0)


# The tiny trained model project (tests/trained_model.py) and its loaded classifier, for the
# evaluate, predict, enrolment and export tests; a module that means another project defines its own.
@pytest.fixture(scope="module")
def project(tmp_path_factory, synthetic_root) -> Path:
    from trained_model import trained_project

    return trained_project(tmp_path_factory, synthetic_root)


@pytest.fixture(scope="module")
def classifier(project):
    from facerec.predict import load_classifier

    return load_classifier(project / "models" / "model.keras")
