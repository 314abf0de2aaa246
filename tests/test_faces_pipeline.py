"""`dvc repro` with faces.detector none, then `dvc exp run -S faces.detector=mtcnn`, on real faces."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from dvc_project import make_repo
from dvc_project import sh as _sh
from real_faces import write_face_dataset

pytestmark = pytest.mark.slow


def test_switching_the_detector_reruns_from_faces_and_later_stages_read_the_crops(tmp_path):
    write_face_dataset(tmp_path / "photos")
    repo = tmp_path / "project"
    repo.mkdir()
    make_repo(repo, {"download": {"source": str(tmp_path / "photos")}, "faces": {"crop_size_px": 64},
                     # variants of one portrait are re-crops of one photo to every duplicate signal; keep them distinct
                     "split": {"min_images_per_identity": 3, "near_duplicate_max_distance": 0,
                               "near_duplicate_min_cosine": 1.0,
                               "keypoint_min_inliers": 0, "burst_max_delta_e": 0}})

    _sh(repo, "dvc", "repro", "analyze")
    assert not any((repo / "data/faces").iterdir()), "detector none: nothing copied into data/faces"
    assert json.loads((repo / "metrics/faces.json").read_text()) == {"images": 14}, "none only counts images"
    raw_split = pd.concat(pd.read_csv(path) for path in (repo / "data/splits").glob("*.csv"))
    assert "pins_Grace Hopper/no_face.jpg" in set(raw_split["path"]), "without detection every image is used"
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "first run")

    _sh(repo, "dvc", "exp", "run", "analyze", "-S", "faces.detector=mtcnn")
    metrics = json.loads((repo / "metrics/faces.json").read_text())
    assert (metrics["images"], metrics["faces_found"], metrics["no_face"]) == (14, 13, 1), f"faces counted: {metrics}"
    split = pd.concat(pd.read_csv(path) for path in (repo / "data/splits").glob("*.csv"))
    assert "pins_Grace Hopper/no_face.jpg" not in set(split["path"]), "the faceless image left the dataset"
    assert all((repo / "data/faces" / path).is_file() for path in split["path"]), "every split image has a crop"
    assert json.loads((repo / "reports/split.json").read_text())["images_without_face"] == {"no_face": 1}, (
        "split counts what the detector dropped")
    status = _sh(repo, "dvc", "status", "analyze")
    assert "changed" not in status, f"after the experiment the pipeline is up to date: {status}"
