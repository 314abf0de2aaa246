"""The packed dataset: every reader gets the same bytes and pixels from it as from the folder it packs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def _noise_jpeg(mode: str, seed: int = 3, **save_options) -> bytes:
    """A JPEG of random pixels (every byte of its scans carries data) in `mode`."""
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


def test_grey_decoding_of_the_packing_pass_rejects_what_a_full_decode_rejects(tmp_path):
    # The download pass decodes JPEGs straight to grey for the fingerprints; it must reject exactly
    # the damaged files a full colour decode rejects, and fingerprint every kind of good one.
    whole = _noise_jpeg("RGB")
    files = {"truncated.jpg": whole[: len(whole) // 2], "baseline.jpg": whole,
             "progressive.jpg": _noise_jpeg("RGB", progressive=True), "cmyk.jpg": _noise_jpeg("CMYK"),
             "grey.jpg": _noise_jpeg("L")}
    rng = np.random.default_rng(0)
    for index in range(40):  # random bytes overwritten somewhere in the scans
        damaged = bytearray(_noise_jpeg("RGB", seed=index, progressive=bool(index % 2)))
        start, length = int(rng.integers(700, len(damaged) - 80)), int(rng.integers(1, 64))
        damaged[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        files[f"damaged_{index:02d}.jpg"] = bytes(damaged)
    dataset = tmp_path / "dataset" / "person"
    dataset.mkdir(parents=True)
    for name, data in files.items():
        (dataset / name).write_bytes(data)
    manifest = pack_dataset(folder_files(dataset.parent), tmp_path / "raw.zip", min_side_px=8, workers=1)
    full_decode = build_manifest(dataset.parent, min_side_px=8, workers=1)
    assert manifest["status"].tolist() == full_decode["status"].tolist(), "grey and colour decoding must agree"
    status = dict(zip(manifest["path"].str.removeprefix("person/"), manifest["status"]))
    assert status["truncated.jpg"] == "truncated"
    assert sum(value == "truncated" for value in status.values()) > 2, "some random damage must be caught"
    good = ("baseline.jpg", "progressive.jpg", "cmyk.jpg", "grey.jpg")
    assert {name: status[name] for name in good} == dict.fromkeys(good, "ok"), status
    ok = manifest[manifest["status"] == "ok"]
    assert ok["phash256"].str.len().eq(64).all() and ok["thumbs16"].str.len().gt(0).all()
    modes = dict(zip(manifest["path"].str.removeprefix("person/"), manifest["mode"]))
    assert (modes["cmyk.jpg"], modes["baseline.jpg"]) == ("CMYK", "RGB"), "the header's mode, not the grey decoded"
