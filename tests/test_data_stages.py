"""Data-layer tests: the download, split and analyze stages run as scripts on generated data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, tiny_params, write_params

from facerec.manifests import load_split, read_manifest


def _project(tmp_path: Path, **download) -> Path:
    """A scratch folder with the tiny params.yaml (`download` changed) but no DVC."""
    write_params(tmp_path, tiny_params(download=download))
    return tmp_path


def _run(project: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=project, capture_output=True,
                          text=True, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)


def _download(project: Path) -> subprocess.CompletedProcess:
    return _run(project, "download", "--raw", "data/raw.zip", "--manifest", "data/manifest.csv",
                "--skipped", "data/skipped.csv", "--report", "reports/download.json",
                "--kaggle-cache", ".cache/kaggle")


def _split(project: Path) -> subprocess.CompletedProcess:
    return _run(project, "split", "--manifest", "data/manifest.csv", "--raw", "data/raw.zip",
                "--faces", "data/faces.csv", "--splits-dir", "data/splits",
                "--report", "reports/split.json", "--conflicts", "data/conflicts.csv", "--metrics", "metrics/split.json")


def _analyze(project: Path) -> subprocess.CompletedProcess:
    return _run(project, "analyze", "--manifest", "data/manifest.csv", "--raw", "data/raw.zip",
                "--faces-dir", "data/faces", "--splits-dir", "data/splits", "--split-report", "reports/split.json",
                "--report", "reports/data.json", "--plots-dir", "plots/data")


def test_synthetic_download_split_analyze(tmp_path):
    project = _project(tmp_path)
    done = _download(project)
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(project / "data/manifest.csv")
    assert len(manifest) == 56 and (manifest["status"] == "ok").all(), "every drawn image is listed and ok"
    assert manifest["identity"].nunique() == 4, "identities come from the pins_ folders"
    summary = json.loads((project / "reports/download.json").read_text(encoding="utf-8"))
    assert summary["ok"] == 56 and summary["source"] == "synthetic", "summary matches the manifest"

    done = _run(project, "faces", "--manifest", "data/manifest.csv", "--raw", "data/raw.zip",
                "--faces-dir", "data/faces", "--faces", "data/faces.csv", "--metrics", "metrics/faces.json")
    assert done.returncode == 0, done.stderr
    assert not any((project / "data/faces").iterdir()), "detector none copies no image: later stages read data/raw"
    assert json.loads((project / "metrics/faces.json").read_text(encoding="utf-8")) == {"images": 56}, (
        "detector none only counts the images")

    done = _split(project)
    assert done.returncode == 0, done.stderr
    splits = {name: load_split(project / f"data/splits/{name}.csv") for name in ("train", "val", "test")}
    paths = [set(frame["path"]) for frame in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2]), "splits are disjoint"
    assert all({"path", "identity"} <= set(frame.columns) for frame in splits.values()), "split schema"
    leak = json.loads((project / "metrics/split.json").read_text(encoding="utf-8"))
    assert leak == {"duplicate_groups": 0, "groups_in_several_splits": 0, "pairs_across_splits": 0}, \
        f"the split metrics count duplicates and leaks (synthetic faces have no duplicates): {leak}"

    done = _analyze(project)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((project / "reports/data.json").read_text(encoding="utf-8"))
    assert metrics["train"]["identities"] == 4, "analyze sees every identity in train"
    split_report = json.loads((project / "reports/split.json").read_text(encoding="utf-8"))
    assert metrics["duplicates"]["conflict_groups"] == split_report["conflict_groups"], \
        "the data report carries the split's conflict count (a wrong key used to drop it silently)"
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
    manifest = read_manifest(project / "data/manifest.csv")
    broken = manifest[manifest["path"] == "pins_Zoë Saldaña/broken.jpg"]
    assert list(broken["status"]) == ["not_an_image"], "bad file is listed with its reason, name intact"
    assert (manifest["status"] == "ok").sum() == 48, "all real images are ok"
    packed = zipfile.ZipFile(project / "data/raw.zip").namelist()
    assert "pins_Zoë Saldaña/broken.jpg" in packed, "the packed dataset keeps the archive's names"
    assert packed == list(manifest["path"]), "one member per manifest row, at its path, in its order"
    for stage, run in (("split", _split), ("analyze", _analyze)):
        done = run(project)
        assert done.returncode == 0, f"{stage} must cope with a rejected image in the manifest:\n{done.stderr}"
    sizes = json.loads((project / "reports/data.json").read_text(encoding="utf-8"))["image_size_px"]
    assert sizes["width_median"] == 48.0, "analyze reads the manifest's sizes as numbers"


@pytest.mark.parametrize("source", ["/nonexistent/archive.zip", "kaggel"])
def test_bad_source_is_one_clear_error(tmp_path, source):
    project = _project(tmp_path, source=source)
    done = _download(project)
    assert done.returncode == 2, "an expected problem exits with code 2"
    assert "download.source" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (project / "data").exists(), "nothing half-written is left behind"


def test_same_source_packs_the_same_bytes(tmp_path):
    project = _project(tmp_path)
    assert _download(project).returncode == 0
    first = (project / "data/raw.zip").read_bytes()
    assert _download(project).returncode == 0
    assert (project / "data/raw.zip").read_bytes() == first, \
        "a rerun on the same source packs identical bytes, so DVC reruns nothing downstream"
    with zipfile.ZipFile(project / "data/raw.zip") as packed:
        assert {info.compress_type for info in packed.infolist()} == {zipfile.ZIP_STORED}, "images are stored"
    assert [path.name for path in (project / "data").iterdir() if path.name.startswith(".")] == [], \
        "no staging or half-written pack is left"


def test_one_person_dataset_stops_at_split_naming_the_param(tmp_path, synthetic_root):
    source = tmp_path / "one_person"
    shutil.copytree(next(synthetic_root.iterdir()), source / "faces" / "alice")
    project = _project(tmp_path / "project", source=str(source))
    assert _download(project).returncode == 0, "one folder of images is still a dataset to verify"
    done = _split(project)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "a classifier needs at least two" in done.stderr and "download.source" in done.stderr, done.stderr
    assert not (project / "data/splits").exists(), "no split is written"


def test_filters_leaving_one_identity_name_the_params(tmp_path):
    project = tmp_path
    write_params(project, tiny_params(split={"max_identities": 2, "unknown_identities": 1}))
    assert _download(project).returncode == 0
    done = _split(project)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    for key in ("split.max_identities", "split.unknown_identities", "leaving ["):
        assert key in done.stderr, f"the message says {key!r}: {done.stderr}"


def test_manifest_without_fingerprints_stops_the_split_with_the_fix(tmp_path):
    project = _project(tmp_path, source="synthetic")
    assert _download(project).returncode == 0
    manifest = pd.read_csv(project / "data/manifest.csv", dtype=str, keep_default_na=False)
    manifest.drop(columns=["phash256", "thumbs16"]).to_csv(project / "data/manifest.csv", index=False)
    done = _split(project)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "data/manifest.csv has no phash256, thumbs16 column" in done.stderr and "dvc repro -f download" in \
        done.stderr, f"names the file, the missing columns and the fix: {done.stderr}"
    assert not (project / "data/splits").exists(), "nothing written"


def test_folder_source_skips_links_and_readme_and_reports_them(tmp_path, synthetic_root):
    source = tmp_path / "mirror"
    shutil.copytree(synthetic_root, source / "faces")
    (source / "README.md").write_text("where these faces come from")
    first = sorted((source / "faces").iterdir())[0]
    an_image = sorted(first.iterdir())[0]
    (first / "passwd.jpg").symlink_to("/etc/passwd")
    (first / "outside.jpg").symlink_to(an_image)
    with open(os.path.join(os.fsencode(first), b"Ren\xe9e.jpg"), "wb") as handle:  # a latin-1 name
        handle.write(an_image.read_bytes())
    project = _project(tmp_path / "project", source=str(source))
    done = _download(project)
    assert done.returncode == 0, done.stderr
    skipped = pd.read_csv(project / "data/skipped.csv", keep_default_na=False)
    assert dict(zip(skipped["entry"], skipped["reason"])) == {
        "README.md": "outside_root",
        f"faces/{first.name}/outside.jpg": "symlink",
        f"faces/{first.name}/passwd.jpg": "symlink",
        f"faces/{first.name}/Ren\\xe9e.jpg": "non_utf8_name",
    }, "each skipped entry with its reason"
    packed = zipfile.ZipFile(project / "data/raw.zip").namelist()
    assert not [name for name in packed if "outside" in name or "passwd" in name or "Ren" in name], \
        f"no link or non-UTF-8 name reaches the packed dataset: {packed}"
    assert b"root:" not in (project / "data/raw.zip").read_bytes(), "/etc/passwd was not read"
    summary = json.loads((project / "reports/download.json").read_text(encoding="utf-8"))
    assert summary["skipped_entries"] == {"non_utf8_name": 1, "outside_root": 1, "symlink": 2}, summary


def test_zip_bomb_stops_the_download_naming_the_param(tmp_path):
    bomb = tmp_path / "faces.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("faces/pins_A/a.jpg", bytes(50_000_000))  # ~50 kB that expand 1000-fold
    project = _project(tmp_path / "project", source=str(bomb))
    done = _download(project)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "download.max_extraction_ratio = 100" in done.stderr and "pins_A/a.jpg" in done.stderr, done.stderr
    assert not (project / "data/raw.zip").exists(), "nothing half-packed is left as data"
    assert list((project / "data").iterdir()) == [], "the staging folder is removed"


@pytest.mark.parametrize("source", ["", ".", "{project}", "{parent}", "data"])
def test_source_holding_the_project_or_its_outputs_is_refused_before_copying(tmp_path, source):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)  # where the stage would stage and write
    (project / "data/old.txt").write_text("the previous run's data", encoding="utf-8")
    project = _project(project, source=source.format(project=project, parent=tmp_path))
    done = _download(project)
    assert done.returncode == 2, f"refused with exit code 2: {done.stderr}"
    assert f"download.source = {source.format(project=project, parent=tmp_path)!r}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert sorted(path.name for path in (project / "data").iterdir()) == ["old.txt"], "nothing was copied"
