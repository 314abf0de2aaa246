"""End to end on a dataset not made for us: `dvc repro` of every stage on an archive full of traps."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dvc_project import E2E_CHANGES, make_repo, sh
from PIL import Image

from facerec.manifests import load_split, read_manifest
from facerec.synthetic import generate_synthetic_dataset

pytestmark = pytest.mark.slow

# Synthetic folder → the odd name it gets in the archive (spaces, accents, CJK, no pins_ prefix).
IDENTITY_FOLDERS = ["pins_Zoë Saldaña", "pins_Alice Smith", "李 雷", "s4"]
IDENTITIES = {"Zoë Saldaña", "Alice Smith", "李 雷", "s4"}
WRAPPER = "faces_dataset"


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _tiff(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(_jpeg(seed))).save(buffer, "TIFF")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes = b"", link_to: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link_to is None:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    else:
        info.type, info.linkname = tarfile.SYMTYPE, link_to
        archive.addfile(info)


def build_hostile_archive(folder: Path) -> Path:
    """A tar.gz whose good images are 4 identities × 14, wrapped with every kind of bad entry."""
    faces = generate_synthetic_dataset(folder / "synthetic", identities=4, images_per_identity=14,
                                       image_size_px=48, seed=3)
    outside_image = folder / "outside.jpg"
    outside_image.write_bytes(_jpeg(99))
    path = folder / "hostile.tar.gz"
    # GNU format keeps names as raw bytes, so a latin-1 name (0xE9, via surrogateescape) survives.
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT, errors="surrogateescape") as archive:
        _add(archive, "README.txt", b"Faces collected for a demo; see LICENSE.\n")
        _add(archive, ".hidden_top/notes.jpg", _jpeg(1))
        _add(archive, f"{WRAPPER}/.cache/pins_Ghost/ghost.jpg", _jpeg(2))
        for source, target in zip(sorted(faces.iterdir()), IDENTITY_FOLDERS, strict=True):
            for image in sorted(source.iterdir()):
                _add(archive, f"{WRAPPER}/{target}/{image.name}", image.read_bytes())
        first = f"{WRAPPER}/{IDENTITY_FOLDERS[0]}"
        _add(archive, f"{first}/corrupt.jpg", _jpeg(4)[:600])
        _add(archive, f"{first}/empty.jpg")
        _add(archive, f"{first}/notes.txt", b"shot in 2019\n")
        _add(archive, f"{first}/.hidden.jpg", _jpeg(5))
        _add(archive, f"{first}/tiff_named.jpg", _tiff(6))
        _add(archive, f"{first}/2019/deeper.jpg", _jpeg(7))
        _add(archive, f"{first}/passwd.jpg", link_to="/etc/passwd")
        _add(archive, f"{first}/outside.jpg", link_to=str(outside_image))
        _add(archive, f"{first}/Ren\udce9e.jpg", _jpeg(8))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project on the hostile archive, after one full `dvc repro`."""
    archive = build_hostile_archive(tmp_path_factory.mktemp("hostile"))
    params = {**E2E_CHANGES, "download": {"source": str(archive)},
              "split": {"min_images_per_identity": 3, "unknown_identities": 0}}
    repo = make_repo(tmp_path_factory.mktemp("project"), params)
    sh(repo, "dvc", "repro")
    return repo


def test_every_stage_ran_on_the_right_identities(repo):
    evaluation = json.loads((repo / "metrics/eval.json").read_text(encoding="utf-8"))
    assert evaluation["n_classes"] == 4, f"exactly the four identity folders are classes: {evaluation['n_classes']}"
    labels = json.loads((repo / "models/labels.json").read_text(encoding="utf-8"))
    assert set(labels) == IDENTITIES, f"labels are the identities, not the wrapper or README: {labels}"
    data = json.loads((repo / "reports/data.json").read_text(encoding="utf-8"))
    assert data["train"]["identities"] == 4 and data["image_size_px"]["width_median"] == 48.0, data


def test_raw_holds_the_root_and_no_links(repo):
    with zipfile.ZipFile(repo / "data/raw.zip") as packed:
        infos = packed.infolist()
    assert {info.filename.split("/")[0] for info in infos} == set(IDENTITY_FOLDERS) | {".cache"}, \
        "the root, past the wrapper"
    assert all(stat.S_ISREG(info.external_attr >> 16) for info in infos), "no link reaches the packed dataset"
    assert b"root:" not in (repo / "data/raw.zip").read_bytes(), "/etc/passwd was not copied"


def test_every_skip_is_reported_with_its_reason(repo):
    first = f"{WRAPPER}/{IDENTITY_FOLDERS[0]}"
    skipped = pd.read_csv(repo / "data/skipped.csv", keep_default_na=False)
    assert dict(zip(skipped["entry"], skipped["reason"], strict=True)) == {
        ".hidden_top/": "outside_root",
        "README.txt": "outside_root",
        f"{first}/passwd.jpg": "symlink",
        f"{first}/outside.jpg": "symlink",
        f"{first}/Ren\\xe9e.jpg": "non_utf8_name",
    }, "what never reached data/raw, and why"
    manifest = read_manifest(repo / "data/manifest.csv").set_index("path")
    identity = IDENTITY_FOLDERS[0]
    expected = {
        f"{identity}/corrupt.jpg": "truncated", f"{identity}/empty.jpg": "empty",
        f"{identity}/notes.txt": "not_an_image", f"{identity}/.hidden.jpg": "hidden",
        f"{identity}/tiff_named.jpg": "unsupported_format", f"{identity}/2019/deeper.jpg": "nested",
        ".cache/pins_Ghost/ghost.jpg": "hidden",
    }
    statuses = manifest.loc[list(expected), "status"].to_dict()
    assert statuses == expected, f"each bad file has its status: {statuses}"
    assert (manifest["status"] == "ok").sum() == 56, "every good image is used"
    download = json.loads((repo / "reports/download.json").read_text(encoding="utf-8"))
    assert download["skipped_entries"] == {"non_utf8_name": 1, "outside_root": 2, "symlink": 2}, download
    assert download["rejected"] == {"empty": 1, "hidden": 2, "nested": 1, "not_an_image": 1, "truncated": 1,
                                    "unsupported_format": 1}, download
    splits = pd.concat(load_split(path) for path in (repo / "data/splits").glob("*.csv"))
    assert set(splits["path"]) <= set(manifest.index[manifest["status"] == "ok"]), "only ok images are split"
