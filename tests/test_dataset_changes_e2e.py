"""`dvc repro` on a local archive: a repacked unchanged dataset reruns nothing; a changed, added or
removed image reruns every stage reading the data; `dvc checkout` restores the packed dataset."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from dvc_project import make_repo, sh
from PIL import Image

from facerec.manifests import read_manifest
from facerec.synthetic import generate_synthetic_dataset

pytestmark = pytest.mark.slow

DATA_STAGES = ("faces", "split", "analyze")


def write_source(path: Path, files: dict[str, bytes]) -> None:
    """The local mirror: a zip of the identity folders inside a wrapper folder."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in sorted(files.items()):
            archive.writestr(f"faces/{name}", data)


def noise_jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def ran(output: str) -> set[str]:
    """Stages `dvc repro` ran, from its log."""
    return {stage for stage in ("download", *DATA_STAGES) if f"Running stage '{stage}'" in output}


def test_image_changes_rerun_the_data_stages_and_nothing_else_does(tmp_path):
    faces = generate_synthetic_dataset(tmp_path / "synthetic", identities=4, images_per_identity=14,
                                       image_size_px=48, seed=5)
    files = {path.relative_to(faces).as_posix(): path.read_bytes() for path in sorted(faces.rglob("*.jpg"))}
    source = tmp_path / "mirror.zip"
    write_source(source, files)
    (tmp_path / "project").mkdir()
    repo = make_repo(tmp_path / "project", {"download": {"source": str(source)},
                                            "split": {"min_images_per_identity": 3}})
    assert ran(sh(repo, "dvc", "repro", "analyze")) == {"download", *DATA_STAGES}, "the first run runs them all"
    packed_md5 = hashlib.md5((repo / "data/raw.zip").read_bytes()).hexdigest()

    # The same source downloaded again packs the same bytes: nothing after download reruns.
    output = sh(repo, "dvc", "repro", "-f", "download") + sh(repo, "dvc", "repro", "analyze")
    assert ran(output) == {"download"}, f"an unchanged dataset reruns nothing downstream:\n{output}"

    changed, removed = sorted(files)[0], sorted(files)[1]
    added = f"{changed.split('/')[0]}/added.jpg"
    files[changed] = noise_jpeg(1)
    del files[removed]
    files[added] = noise_jpeg(2)
    write_source(source, files)
    output = sh(repo, "dvc", "repro", "-f", "download") + sh(repo, "dvc", "repro", "analyze")
    assert ran(output) == {"download", *DATA_STAGES}, f"a changed, added and removed image rerun them:\n{output}"
    manifest = read_manifest(repo / "data/manifest.csv").set_index("path")
    assert added in manifest.index and removed not in manifest.index, "the manifest follows the images"
    assert manifest.loc[changed, "sha256"] == hashlib.sha256(files[changed]).hexdigest(), "the new bytes are hashed"
    splits = "".join(path.read_text(encoding="utf-8") for path in (repo / "data/splits").glob("*.csv"))
    assert added in splits and removed not in splits, "the split follows the images"

    changed_md5 = hashlib.md5((repo / "data/raw.zip").read_bytes()).hexdigest()
    assert changed_md5 != packed_md5, "the pack changed with its images"
    (repo / "data/raw.zip").unlink()
    sh(repo, "dvc", "checkout", "data/raw.zip")
    assert hashlib.md5((repo / "data/raw.zip").read_bytes()).hexdigest() == changed_md5, "checkout restores the pack"
    assert "changed" not in sh(repo, "dvc", "status", "analyze"), "and the data stages are up to date again"
