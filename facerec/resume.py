"""Resuming a killed training run as the same run: its identity, and the state Keras' backup leaves out."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import keras
import numpy as np

from facerec.atomic import atomic_path, write_json

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXTRA_STATE, BEST_WEIGHTS = "resume_state.json", "best_weights.npz"
# Per callback class, the attributes that carry its memory from one epoch to the next.
CALLBACK_STATE = {
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
}


def code_digests(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """sha256 of every project source file this process has imported (the stage script included).

    The code that shapes a run is exactly what the run imported: a backup written by other code
    (a changed model, input pipeline or training loop) must not be resumed.
    """
    digests = {}
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        path = Path(source).resolve()
        if path.is_relative_to(root):
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose kernels and defaults decide the numbers."""
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def describe_difference(old: dict, new: dict, limit: int = 6) -> str:
    """The dotted keys whose values differ between two run identities, e.g. 'code.facerec/model.py'."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    changed = sorted(key for key in old_flat.keys() | new_flat.keys() if old_flat.get(key) != new_flat.get(key))
    shown = ", ".join(changed[:limit]) + (f" and {len(changed) - limit} more" if len(changed) > limit else "")
    return shown or "nothing"


def backed_up_epoch(backup: Path) -> int:
    """The epoch Keras' BackupAndRestore will resume at (0 when there is no backup)."""
    metadata = Path(backup) / "training_metadata.json"
    if not metadata.is_file():
        return 0
    return int(json.loads(metadata.read_text(encoding="utf-8"))["epoch"])


def _random_state(model: keras.Model) -> list:
    """The model's random-generator state variables (augmentation, dropout): in model.variables, not weights."""
    weight_ids = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weight_ids]


def random_state(model: keras.Model) -> list[list[int]]:
    """The model's random generators' positions, JSON-ready (model.save_weights leaves them out)."""
    return [np.asarray(variable.numpy()).tolist() for variable in _random_state(model)]


def set_random_state(model: keras.Model, state: list[list[int]]) -> None:
    """Put the model's random generators back where random_state() found them."""
    for variable, value in zip(_random_state(model), state, strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that also restores what Keras 3.15's leaves out.

    Its backup holds the weights, the optimizer's variables (learning rate and step count
    included) and the epoch. It misses the augmentation and dropout generators' state (so a
    resumed run replays epoch 0's random draws) and the plateau/early-stopping counters (reset by
    their on_train_begin). Place this callback after those callbacks: it must restore their state
    after they reset it, and save it after they have updated it for the epoch.
    """

    def __init__(self, backup_dir, stateful_callbacks, *, every_epochs: int, first_epoch: int):
        super().__init__(str(backup_dir))
        self.stateful_callbacks = list(stateful_callbacks)
        self.every_epochs, self.first_epoch = every_epochs, first_epoch
        self.restored_exactly: bool | None = None  # None: nothing to resume

    def on_epoch_end(self, epoch, logs=None):
        # Keras' integer save_freq counts batches and saves mid-epoch, which its restore cannot
        # resume (it keeps only the epoch); every N epochs of the phase is what bounds redone work.
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        if (epoch + 1 - self.first_epoch) % self.every_epochs == 0:
            self._save_model()

    def _save_model(self):
        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        state = {"epoch": self._current_epoch,
                 "random_state": random_state(self.model),
                 "callbacks": []}
        best_weights = {}
        for index, callback in enumerate(self.stateful_callbacks):
            names = CALLBACK_STATE.get(type(callback).__name__, ())
            state["callbacks"].append({name: _plain(getattr(callback, name)) for name in names})
            if getattr(callback, "best_weights", None) is not None:
                best_weights.update({f"{index}/{position}": array
                                     for position, array in enumerate(callback.best_weights)})
        with atomic_path(backup / BEST_WEIGHTS) as temp_path, open(temp_path, "wb") as handle:
            np.savez(handle, **best_weights)
        # Written before Keras' own files: equal epochs in both prove they belong together.
        write_json(backup / EXTRA_STATE, state)
        # Keras 3.15 rewrites its two files in place: a kill mid-write leaves an empty
        # training_metadata.json that fails every later resume. Each is replaced by a rename here.
        with atomic_path(Path(self._weights_path), suffix=".weights.h5") as staged_weights:
            self.model.save_weights(staged_weights, overwrite=True)
        write_json(Path(self._training_metadata_path), {"epoch": self._current_epoch, "batch": self._last_batch_seen})

    def _load_model(self):
        super()._load_model()
        backup = Path(self.backup_dir)
        resumed_at = backed_up_epoch(backup)
        if not resumed_at:
            return
        state_file = backup / EXTRA_STATE
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        if state.get("epoch") != resumed_at:
            # Killed between the two writes: the weights are sound, the random draws will differ.
            log.warning("Resuming at epoch %d without the random-generator and callback state (it is from "
                        "epoch %s); the rest of the run will not repeat the uninterrupted one exactly",
                        resumed_at, state.get("epoch"))
            self.restored_exactly = False
            return
        set_random_state(self.model, state["random_state"])
        with np.load(backup / BEST_WEIGHTS) as best_weights:
            for index, (callback, saved) in enumerate(zip(self.stateful_callbacks, state["callbacks"], strict=True)):
                for name, value in saved.items():
                    setattr(callback, name, value)
                arrays = sorted((int(key.split("/")[1]), best_weights[key]) for key in best_weights.files
                                if key.startswith(f"{index}/"))
                if arrays:
                    callback.best_weights = [array for _, array in arrays]
        self.restored_exactly = True
        log.info("Restored epoch %d's weights, optimizer, random-generator and callback state", resumed_at)


def _plain(value):
    """A JSON-ready copy of a callback attribute (NumPy scalars become Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value
