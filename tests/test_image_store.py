"""The packed dataset: every reader gets the same bytes and pixels from it as from the folder it packs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import PipelineInputError
from facerec.image_store import FolderImages, PackedImages, open_images
from facerec.packing import pack_dataset
from facerec.verify import build_manifest, folder_files


@pytest.fixture(scope="module")
def packed(synthetic_root, tmp_path_factory) -> tuple[Path, object]:
    """The synthetic folder packed as the download stage packs it, and the manifest it wrote."""
    target = tmp_path_factory.mktemp("packed") / "raw.zip"
    manifest = pack_dataset(folder_files(synthetic_root), target, min_side_px=8, workers=2)
    return target, manifest


def test_pack_holds_every_file_at_its_manifest_path_with_the_folders_bytes(synthetic_root, packed):
    target, manifest = packed
    assert list(manifest.columns[:9]) == list(build_manifest(synthetic_root, min_side_px=8, workers=1).columns), \
        "the packing pass writes the verify columns first"
    assert manifest["phash256"].str.len().eq(64).all(), "every ok image has its fingerprint from the same decode"
    images = open_images(target)
    assert isinstance(images, PackedImages) and images.names() == list(manifest["path"]), "members in manifest order"
    for relative in manifest["path"]:
        assert images.read_bytes(relative) == (synthetic_root / relative).read_bytes(), f"{relative}: same bytes"
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None, "a valid zip any tool can open"


def test_folder_and_packed_decode_to_the_same_tensors(synthetic_root, packed):
    from facerec.data import make_dataset

    target, manifest = packed
    frame = manifest[["path", "identity"]].iloc[::3].reset_index(drop=True)
    labels = sorted(frame["identity"].unique())
    batches = {}
    for name, location in (("folder", synthetic_root), ("packed", target)):
        dataset = make_dataset(frame, location, labels, image_size_px=32, batch_size=5, shuffle=False, seed=0)
        batches[name] = [(images.numpy(), targets.numpy()) for images, targets in dataset]
    assert isinstance(open_images(synthetic_root), FolderImages), "a folder is read as files"
    assert len(batches["packed"]) == len(batches["folder"]) == -(-len(frame) // 5), "every image, batched"
    for (folder_images, folder_labels), (packed_images, packed_labels) in zip(batches["folder"], batches["packed"]):
        assert np.array_equal(folder_images, packed_images), "the same uint8 pixels from either store"
        assert np.array_equal(folder_labels, packed_labels), "in the same order, with the same labels"


def test_a_path_missing_from_the_pack_names_it_and_the_fix(packed):
    with pytest.raises(PipelineInputError) as error:
        open_images(packed[0]).read_bytes("pins_Nobody/none.jpg")
    assert "pins_Nobody/none.jpg" in str(error.value) and "dvc repro" in str(error.value), str(error.value)


def test_a_missing_or_compressed_pack_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineInputError, match="dvc repro"):
        open_images(tmp_path / "absent.zip")
    compressed = tmp_path / "compressed.zip"
    with zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pins_A/a.jpg", b"x" * 100)
    with pytest.raises(PipelineInputError) as error:
        open_images(compressed)
    assert "pins_A/a.jpg" in str(error.value) and "compressed" in str(error.value), str(error.value)
