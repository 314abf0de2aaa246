"""Data-layer tests: the download, split and analyze stages run as scripts on generated data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT


def _project(tmp_path: Path, **download) -> Path:
    """A scratch folder with params.yaml (small synthetic defaults) but no DVC."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["download"].update({"source": "synthetic", "synthetic": {
        "identities": 4, "images_per_identity": 14, "image_size_px": 48}, **download})
    params["split"]["min_images_per_identity"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return tmp_path


def _run(project: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=project, capture_output=True,
                          text=True, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


def _download(project: Path) -> subprocess.CompletedProcess:
    return _run(project, "download", "--raw-dir", "data/raw", "--manifest", "data/manifest.csv",
                "--metrics", "metrics/download.json", "--kaggle-cache", ".cache/kaggle")


def test_synthetic_download_split_analyze(tmp_path):
    project = _project(tmp_path)
    done = _download(project)
    assert done.returncode == 0, done.stderr
    manifest = pd.read_csv(project / "data/manifest.csv", keep_default_na=False)
    assert len(manifest) == 56 and (manifest["status"] == "ok").all(), "every drawn image is listed and ok"
    assert manifest["identity"].nunique() == 4, "identities come from the pins_ folders"
    summary = json.loads((project / "metrics/download.json").read_text(encoding="utf-8"))
    assert summary["ok"] == 56 and summary["source"] == "synthetic", "summary matches the manifest"

    done = _run(project, "split", "--manifest", "data/manifest.csv", "--raw-dir", "data/raw",
                "--splits-dir", "data/splits", "--report", "metrics/split.json", "--conflicts", "data/conflicts.csv")
    assert done.returncode == 0, done.stderr
    splits = {name: pd.read_csv(project / f"data/splits/{name}.csv") for name in ("train", "val", "test")}
    paths = [set(frame["path"]) for frame in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2]), "splits are disjoint"
    assert all({"path", "identity"} <= set(frame.columns) for frame in splits.values()), "split schema"

    done = _run(project, "analyze", "--manifest", "data/manifest.csv", "--raw-dir", "data/raw",
                "--splits-dir", "data/splits", "--split-report", "metrics/split.json",
                "--metrics", "metrics/data.json", "--plots-dir", "plots/data")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((project / "metrics/data.json").read_text(encoding="utf-8"))
    assert metrics["train"]["identities"] == 4, "analyze sees every identity in train"
    counts = pd.read_csv(project / "plots/data/identity_counts.csv")
    assert counts["images"].sum() == sum(len(frame) for frame in splits.values()), "counts add up to the split"
    for figure in ("identity_counts.png", "image_sizes.png", "samples.png"):
        assert (project / "plots/data" / figure).stat().st_size > 1000, f"{figure} was drawn"


def test_local_zip_with_spaces_and_non_ascii_names(tmp_path, synthetic_root):
    archive = tmp_path / "mirror.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(synthetic_root.rglob("*.jpg")):
            bundle.write(path, f"105_classes_pins_dataset/{path.relative_to(synthetic_root).as_posix()}")
        bundle.writestr("105_classes_pins_dataset/pins_Zoë Saldaña/broken.jpg", b"not a jpeg")
    project = _project(tmp_path / "project", source=str(archive))
    done = _download(project)
    assert done.returncode == 0, done.stderr
    manifest = pd.read_csv(project / "data/manifest.csv", keep_default_na=False)
    broken = manifest[manifest["path"] == "pins_Zoë Saldaña/broken.jpg"]
    assert list(broken["status"]) == ["not_an_image"], "bad file is listed with its reason, name intact"
    assert (manifest["status"] == "ok").sum() == 48, "all real images are ok"
    assert (project / "data/raw/pins_Zoë Saldaña").is_dir(), "raw keeps the archive's folder names"


@pytest.mark.parametrize("source", ["/nonexistent/archive.zip", "kaggel"])
def test_bad_source_is_one_clear_error(tmp_path, source):
    project = _project(tmp_path, source=source)
    done = _download(project)
    assert done.returncode == 2, "an expected problem exits with code 2"
    assert "download.source" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (project / "data/raw").exists(), "nothing half-written is left behind"


def test_rerun_replaces_raw_completely(tmp_path):
    project = _project(tmp_path)
    assert _download(project).returncode == 0
    (project / "data/raw/stray.txt").write_text("left from an older run")
    assert _download(project).returncode == 0
    assert not (project / "data/raw/stray.txt").exists(), "data/raw holds exactly the new dataset"
    shutil.rmtree(project / "data")
