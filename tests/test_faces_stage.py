"""The faces stage with MTCNN on real faces, and split reading its aligned crops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from real_faces import write_face_dataset

from conftest import PROJECT_ROOT, tiny_params, write_params
from facerec.config import FacesConfig, read_params
from facerec.manifests import read_faces

FACES_ARGS = ["--manifest", "data/manifest.csv", "--raw", "data/raw.zip", "--faces-dir", "data/faces",
              "--faces", "data/faces.csv", "--metrics", "metrics/faces.json"]


def _run(project: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=project, capture_output=True,
                          text=True, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin",
                                          "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600)


def _params(project: Path, **faces) -> None:
    # The variants of one portrait are re-crops of one photo to every duplicate signal; keep them distinct.
    write_params(project, tiny_params(download={"source": str(project / "photos")},
                                      faces={"detector": "mtcnn", "crop_size_px": 64, **faces},
                                      split={"min_images_per_identity": 3, "near_duplicate_max_distance": 0,
                                             "near_duplicate_min_cosine": 1.0,
                                             "keypoint_min_inliers": 0, "burst_max_delta_e": 0}))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Download (local folder of real faces) then the faces stage with MTCNN."""
    project = tmp_path_factory.mktemp("faces_project")
    write_face_dataset(project / "photos")
    _params(project)
    done = _run(project, "download", "--raw", "data/raw.zip", "--manifest", "data/manifest.csv",
                "--skipped", "data/skipped.csv", "--report", "reports/download.json", "--kaggle-cache", ".cache/kaggle")
    assert done.returncode == 0, done.stderr
    done = _run(project, "faces", *FACES_ARGS)
    assert done.returncode == 0, done.stderr
    return project


def test_every_image_gets_a_status_and_kept_faces_an_aligned_crop(project):
    faces = read_faces(project / "data/faces.csv").set_index("path")
    assert len(faces) == 14, f"one row per downloaded image (12 portraits, a group photo, a faceless one): {len(faces)}"
    assert faces.loc["pins_Grace Hopper/no_face.jpg", "status"] == "no_face", "the gradient has no face"
    assert faces.loc["pins_Astronaut/group.jpg", "status"] == "several_faces", "three faces, largest kept"
    assert faces.loc["pins_Astronaut/group.jpg", "faces_detected"] == 3, "every face of the group photo counted"
    portraits = faces.drop(["pins_Grace Hopper/no_face.jpg", "pins_Astronaut/group.jpg"])
    assert (portraits["status"] == "ok").all(), f"each portrait shows one face: {portraits['status'].to_dict()}"
    for path, row in faces.iterrows():
        crop = project / "data/faces" / path
        if row["status"] in ("ok", "several_faces"):
            assert Image.open(crop).size == (64, 64), f"{path}: aligned crop at faces.crop_size_px, same relative path"
            assert row["confidence"] >= 0.9 and row["box_width"] > 20, f"{path}: box and confidence recorded"
        else:
            assert not crop.exists(), f"{path}: no crop without a kept face"
    metrics = json.loads((project / "metrics/faces.json").read_text(encoding="utf-8"))
    assert {key: metrics[key] for key in ("images", "faces_found", "no_face", "several_faces")} == {
        "images": 14, "faces_found": 13, "no_face": 1, "several_faces": 1}, f"metrics count the statuses: {metrics}"
    assert metrics["images_per_second"] > 0, "throughput recorded"


def test_split_drops_images_without_a_face_and_finds_duplicates_among_the_photos(project):
    # Duplicates are searched among the photos (data/raw.zip and the manifest's fingerprints), not
    # the aligned crops, where different people's faces sit in one frame and look alike: the split
    # must not need the crops at all, so they are moved away while it runs.
    crops, aside = project / "data/faces", project / "data/faces-aside"
    crops.rename(aside)
    try:
        done = _run(project, "split", "--manifest", "data/manifest.csv", "--raw", "data/raw.zip",
                    "--faces", "data/faces.csv", "--splits-dir", "data/splits", "--report",
                    "reports/split.json", "--conflicts", "data/conflicts.csv", "--metrics", "metrics/split.json")
    finally:
        aside.rename(crops)
    assert done.returncode == 0, done.stderr
    splits = pd.concat([pd.read_csv(path, keep_default_na=False) for path in (project / "data/splits").glob("*.csv")])
    assert "pins_Grace Hopper/no_face.jpg" not in set(splits["path"]), "an image without a face leaves the dataset"
    assert len(splits) == 13, f"every image with a kept face is split: {len(splits)}"
    report = json.loads((project / "reports/split.json").read_text(encoding="utf-8"))
    assert report["images_without_face"] == {"no_face": 1}, f"the dropped image is counted: {report}"


def test_bad_faces_params_stop_before_any_output(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"path": [], "identity": [], "status": []}).to_csv(tmp_path / "data/manifest.csv", index=False)
    _params(tmp_path, detector="haar")
    done = _run(tmp_path, "faces", *FACES_ARGS)
    assert done.returncode == 2 and "faces.detector = 'haar'" in done.stderr and "Traceback" not in done.stderr, (
        f"a bad detector is named with the allowed ones, without a traceback: {done.stderr[-500:]}")
    assert not (tmp_path / "data/faces").exists() and not (tmp_path / "metrics").exists(), "nothing written"


@pytest.mark.parametrize("change, message", [
    ({"margin_fraction": 2}, "faces.margin_fraction"),
    ({"min_confidence": "high"}, "faces.min_confidence"),
    ({"colour": "red"}, "unknown key faces.colour"),
])
def test_faces_config_names_the_bad_key(change, message):
    section = read_params(PROJECT_ROOT / "params.yaml")["faces"]
    with pytest.raises(ValueError, match=message):
        FacesConfig.from_params({**section, **change})


@pytest.mark.parametrize("name", ["face", "face.gif", "face.png", "face.JPG"])
def test_crops_are_written_whatever_the_raw_file_is_named(tmp_path, name):
    from stages.faces import save_crop

    crop = np.full((16, 16, 3), (200, 120, 40), dtype=np.uint8)
    save_crop(crop, tmp_path / "identity" / name)
    with Image.open(tmp_path / "identity" / name) as written:
        assert written.mode == "RGB", f"{name}: a full-colour crop, not a palette image"
        assert written.format == ("PNG" if name.endswith(".png") else "JPEG"), f"{name}: lossless only for .png"
