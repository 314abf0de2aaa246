"""Shared fixtures: a tiny synthetic dataset and a helper to run stages in a scratch project."""

from __future__ import annotations

import os

# Quiet TensorFlow's start-up chatter in test logs; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from facerec.synthetic import generate_synthetic_dataset  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """4 identities × 12 images at 48 px in the Kaggle layout (pins_<Name>/<file>.jpg)."""
    root = tmp_path_factory.mktemp("synthetic") / "105_classes_pins_dataset"
    return generate_synthetic_dataset(root, identities=4, images_per_identity=12, image_size_px=48, seed=0)
