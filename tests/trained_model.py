"""The tiny trained model project that evaluate, predict, enrol and export tests share (built once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import tiny_config

IMAGE_PX = 32  # ResNet50's smallest input: keeps the tiny model fast on CPU
SPLIT_SIZES = {"train": 6, "val": 3, "test": 3}  # images per known identity


def _splits(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """Known identities split 6/3/3 in file order; the last identity is held out as unknown."""
    folders = sorted(path for path in raw_dir.iterdir() if path.is_dir())
    rows: dict[str, list] = {name: [] for name in [*SPLIT_SIZES, "unknown"]}
    for position, folder in enumerate(folders):
        identity = folder.name.removeprefix("pins_")
        files = sorted(folder.iterdir())
        if position == len(folders) - 1:
            rows["unknown"] += [(str(f.relative_to(raw_dir)), identity) for f in files]
            continue
        start = 0
        for name, count in SPLIT_SIZES.items():
            rows[name] += [(str(f.relative_to(raw_dir)), identity) for f in files[start:start + count]]
            start += count
    return {name: pd.DataFrame(items, columns=["path", "identity"]) for name, items in rows.items()}


def trained_project(tmp_path_factory, raw_dir: Path) -> Path:
    """Once per session: split CSVs, a 1-epoch frozen-base model saved as train saves it, its history."""
    project = tmp_path_factory.getbasetemp() / "evaluate_project"
    if (project / "history.json").is_file():
        return project
    import keras

    from facerec.data import make_dataset
    from facerec.model import build_model

    splits = _splits(raw_dir)
    (project / "splits").mkdir(parents=True)
    for name, frame in splits.items():
        frame.to_csv(project / "splits" / f"{name}.csv", index=False)
    labels = sorted(splits["train"]["identity"].unique())
    keras.utils.set_random_seed(0)
    config = tiny_config(train={"image_size": IMAGE_PX, "model": {"head_units": 16}}).train
    model = build_model(config, len(labels), seed=0)
    model.compile(optimizer=keras.optimizers.Adamax(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    data = {name: make_dataset(splits[name], raw_dir, labels, image_size_px=IMAGE_PX, batch_size=8,
                               shuffle=name == "train", seed=0) for name in ("train", "val")}
    history = model.fit(data["train"], validation_data=data["val"], epochs=1, verbose=0, shuffle=False)
    (project / "models").mkdir()
    model.save(project / "models" / "model.keras")
    (project / "models" / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    # Written last: its presence means the project is complete.
    (project / "history.json").write_text(json.dumps(history.history), encoding="utf-8")
    return project
