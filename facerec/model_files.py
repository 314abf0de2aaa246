"""Write the trained model with its labels and model card, and fingerprint its weights."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from pathlib import Path

import keras
import numpy as np

from facerec.atomic import atomic_dir, write_json

log = logging.getLogger(__name__)


def weights_sha256(model: keras.Model) -> str:
    """Digest of every weight (BatchNorm statistics too): equal digests mean identical models."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_model(model: keras.Model, labels: list[str], card: dict, model_dir: Path) -> None:
    """Write model.keras, labels.json and model_card.json together, replacing the folder atomically."""
    import dvc
    import tensorflow as tf

    card = {**card, "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                                 "keras": keras.__version__, "dvc": dvc.__version__}}
    with atomic_dir(model_dir) as staging:
        model.save(staging / "model.keras")
        (staging / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n",
                                             encoding="utf-8")
        write_json(staging / "model_card.json", card)
    log.info("Saved %s (%d identities); final %s", model_dir, len(labels), card["final_epoch_metrics"])
