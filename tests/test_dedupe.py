"""Code tests for duplicate finding: hashing, pair search and grouping on tiny generated images."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from facerec import dedupe
from facerec import fingerprints as signals
from facerec.errors import PipelineInputError
from facerec.packing import pack_dataset
from facerec.verify import folder_files

THRESHOLD_BITS = 40  # the default near_duplicate_max_distance for 256-bit phash
ORIENTATION_TAG = 0x0112  # EXIF


def pink_noise_image(rng: np.random.Generator, size_px: int = 48, power: float = 1.0) -> Image.Image:
    """Return an RGB image with a 1/f^power amplitude spectrum (1: photo-like; 2: smooth as a portrait)."""
    radius = np.hypot(np.fft.fftfreq(size_px)[:, None], np.fft.fftfreq(size_px)[None, :])
    amplitude = 1 / np.maximum(radius, 1 / size_px) ** power
    channels = []
    for _ in range(3):
        field = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random(radius.shape))))
        channels.append((field - field.min()) / (field.max() - field.min()) * 255)
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """Encode an image as JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, object]:
    """Write originals, a re-encoded copy, a downscaled copy and unrelated images."""
    folder = tmp_path_factory.mktemp("dedupe")
    rng = np.random.default_rng(7)
    paths = {}
    for index in range(6):
        paths[f"unrelated_{index}"] = folder / f"unrelated_{index}.jpg"
        paths[f"unrelated_{index}"].write_bytes(jpeg_bytes(pink_noise_image(rng)))
    original = Image.open(paths["unrelated_0"]).convert("RGB")
    paths["reencoded"] = folder / "reencoded q60.jpg"
    paths["reencoded"].write_bytes(jpeg_bytes(original, quality=60))
    paths["downscaled"] = folder / "downscaled.jpg"
    paths["downscaled"].write_bytes(jpeg_bytes(original.resize((40, 40), Image.LANCZOS)))
    paths["broken"] = folder / "broken.jpg"
    paths["broken"].write_bytes(b"not a jpeg")
    return paths


def hamming(first: str, second: str) -> int:
    """Bit distance between two hex hashes."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def phashes(paths) -> list[str]:
    """The 256-bit phash column of compute_fingerprints for `paths`."""
    return signals.compute_fingerprints(paths, workers=1)[signals.PHASH_COLUMN].tolist()


def test_near_copies_are_close_and_unrelated_images_far(image_files):
    names = ["unrelated_0", "reencoded", "downscaled", "unrelated_1", "unrelated_2"]
    hashes = dict(zip(names, phashes([image_files[n] for n in names])))
    assert len(hashes["unrelated_0"]) == 64, (
        "the phash is 256 bits (16x16) as 64 hex digits"
    )
    for copy in ("reencoded", "downscaled"):
        distance = hamming(hashes["unrelated_0"], hashes[copy])
        assert distance <= THRESHOLD_BITS, f"{copy} copy must fall within the threshold: {distance}"
    distance = hamming(hashes["unrelated_1"], hashes["unrelated_2"])
    assert distance > 2 * THRESHOLD_BITS, f"unrelated images must be far apart: {distance}"


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    """Encode an image in `image_format` with Pillow's save `options`."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def hostile_images() -> dict[str, bytes]:
    """One photo (skimage's astronaut) as files that take other paths through decoding, and images with no detail."""
    photo = Image.fromarray(skimage.data.astronaut()).crop((100, 0, 400, 400)).resize((96, 128), Image.LANCZOS)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # "rotate 90° clockwise to display": stored on its side
    grey = photo.convert("L")
    alpha = np.asarray(photo.convert("LA")).copy()
    alpha[:20, :, 1] = 0  # a transparent band: composited onto white, as every reader sees it
    # Red and this green have one grey value: a colourful image whose grey is flat.
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2, 0], stripes[:, 1::2, 1] = 255, 130
    return {
        "upright.jpg": encoded(photo, "JPEG", quality=95),
        "exif rotated.jpg": encoded(photo.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95,
                                    exif=exif.tobytes()),
        "cmyk.jpg": encoded(photo.convert("CMYK"), "JPEG", quality=95),
        "grey with alpha.png": encoded(Image.fromarray(alpha, "LA"), "PNG"),
        "grey with transparent black.png": encoded(grey, "PNG", transparency=0),
        "sixteen bit.png": encoded(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG"),
        "palette.gif": encoded(photo.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "tiny.jpg": encoded(photo.resize((24, 32), Image.LANCZOS), "JPEG", quality=95),
        "panorama.jpg": encoded(photo.resize((1200, 40), Image.LANCZOS), "JPEG", quality=95),
        "flat.png": encoded(Image.new("RGB", (64, 64), (200, 40, 90)), "PNG"),
        "flat grey.png": encoded(Image.fromarray(stripes), "PNG"),
    }


@pytest.fixture(scope="module")
def hostile_pack(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The hostile images under person/ in a folder, packed by the download pass into raw.zip beside it."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "dataset" / "person").mkdir(parents=True)
    for name, data in hostile_images().items():
        (root / "dataset" / "person" / name).write_bytes(data)
    manifest = pack_dataset(folder_files(root / "dataset"), root / "raw.zip", min_side_px=8, workers=1)
    return root, manifest


def test_fingerprint_of_the_download_pass_equals_the_files(image_files, hostile_pack, tmp_path):
    # The download stage fingerprints while it verifies (JPEG decoded straight to grey); the split
    # recomputes from files for aligned crops. Both must give the same text, or groups would differ.
    root, manifest = hostile_pack
    assert manifest["status"].eq("ok").all(), f"every hostile image is usable: {manifest[['path', 'status']]}"
    from_files = signals.compute_fingerprints([root / "dataset" / path for path in manifest["path"]], workers=1)
    for row, path in enumerate(manifest["path"]):
        assert manifest.loc[row, list(signals.FINGERPRINT_COLUMNS)].tolist() == from_files.loc[row].tolist(), (
            f"{path}: the download stage's in-pass fingerprint must equal the split's")
    by_name = dict(zip(manifest["path"].str.removeprefix("person/"), manifest.to_dict("records")))
    upright = by_name["upright.jpg"]
    for copy in ("exif rotated.jpg", "cmyk.jpg", "sixteen bit.png", "palette.gif", "tiny.jpg"):
        distance = hamming(upright[signals.PHASH_COLUMN], by_name[copy][signals.PHASH_COLUMN])
        assert distance <= THRESHOLD_BITS, f"{copy} is the upright photo in grey, {distance} bits away"
    flat = {by_name[name][signals.PHASH_COLUMN] for name in ("flat.png", "flat grey.png")}
    assert len(flat) == 1, "an image with no detail in grey hashes like any flat image"
    paths = [image_files["unrelated_3"], image_files["unrelated_1"]]
    dataset = tmp_path / "dataset"
    for index, path in enumerate(paths):
        (dataset / f"person_{index}").mkdir(parents=True)
        shutil.copy(path, dataset / f"person_{index}" / path.name)
    packed = pack_dataset(folder_files(dataset), tmp_path / "raw.zip", min_side_px=8, workers=1)
    assert packed[list(signals.FINGERPRINT_COLUMNS)].equals(signals.compute_fingerprints(paths, workers=1)), (
        "the download stage's in-pass fingerprint must equal the split's")


def test_phash_text_is_imagehash_phash_of_the_grey_square(image_files):
    with Image.open(image_files["unrelated_2"]) as image:
        square = signals.grey_square(image)
    assert square.size == (signals.SQUARE_PX, signals.SQUARE_PX) and square.mode == "L"
    expected = str(imagehash.phash(square, hash_size=signals.PHASH_SIZE))
    assert signals.phash_hex(square) == expected, "packbits must give str(ImageHash)'s digits"


def test_thumbnail_matrices_are_pillows_lanczos_resize_of_each_crop(image_files):
    with Image.open(image_files["unrelated_1"]) as image:
        square = signals.grey_square(image)
    side, thumb = signals.SQUARE_PX, signals.THUMB_SIDE_PX
    ours = signals.thumbnails(square)
    for crop, scale in enumerate(signals.CROP_SCALES):
        margin = side * (1 - scale) / 2
        pillow = np.asarray(square.resize((thumb, thumb), Image.Resampling.LANCZOS,
                                          box=(margin, margin, side - margin, side - margin)), dtype=np.float32)
        pillow = pillow.ravel() - pillow.mean()
        # Pillow rounds to 8 bits between its two passes and at the end; the matrices do not.
        assert np.abs(ours[crop] - pillow).max() < 1.5, f"crop {scale}: not Pillow's Lanczos thumbnail"


def test_parallel_fingerprinting_matches_serial_and_keeps_order(image_files, monkeypatch):
    paths = [image_files[f"unrelated_{index}"] for index in range(6)] * 3
    serial = signals.compute_fingerprints(paths, workers=1)
    monkeypatch.setattr(signals, "SERIAL_BELOW_IMAGES", 0)  # force the process pool on tiny input
    parallel = signals.compute_fingerprints(paths, workers=2)
    assert list(serial.columns) == list(signals.FINGERPRINT_COLUMNS), "columns are FINGERPRINT_COLUMNS"
    assert parallel.equals(serial), "the process pool must return the same fingerprints in input order"


def test_undecodable_image_names_the_file(image_files):
    with pytest.raises(PipelineInputError, match="broken.jpg"):
        signals.compute_fingerprints([image_files["broken"]])


def test_malformed_hash_text_is_an_input_error():
    with pytest.raises(PipelineInputError, match="hex"):
        signals.hashes_to_words(["zz" * 8])
    with pytest.raises(PipelineInputError, match="one length"):
        signals.hashes_to_words(["0" * 16, "0" * 64])


def test_near_pairs_matches_brute_force_across_blocks():
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, size=(300, 4), dtype=np.uint64)
    # Plant close rows on both sides of a block boundary (128 rows per block).
    words[250] = words[5]
    words[250, 0] ^= np.uint64(0b1011)
    words[130] = words[127]
    found = {tuple(pair) for pair in dedupe.near_pairs(words, 3).tolist()}
    expected = {
        (i, j)
        for i in range(300)
        for j in range(i + 1, 300)
        if sum((int(a) ^ int(b)).bit_count() for a, b in zip(words[i], words[j])) <= 3
    }
    assert found == expected, "vectorised block search must equal the all-pairs definition"
    assert {(5, 250), (127, 130)} <= found, "planted close pairs across blocks must be found"


def distinct_thumbnails(count: int) -> list[str]:
    """THUMBS_COLUMN texts of `count` images whose thumbnails are orthogonal (never near duplicates)."""
    crops, pixels = len(signals.CROP_SCALES), signals.THUMB_SIDE_PX**2
    texts = []
    for index in range(count):
        vectors = np.zeros((crops, pixels), dtype=np.float32)
        vectors[:, index * crops : (index + 1) * crops] = np.eye(crops)
        texts.append(signals.encode_thumbnails(vectors))
    return texts


def burst_and_recrop() -> dict[str, Image.Image]:
    """One smooth scene as a frame, the next frame (1 px shifted), a 0.8 centre re-crop and unrelated scenes."""
    rng = np.random.default_rng(5)
    scene = pink_noise_image(rng, 96, power=2)
    frame = scene.crop((4, 4, 92, 92))
    images = {"frame": frame, "next frame": scene.crop((5, 5, 93, 93)),
              "re-crop": frame.crop((9, 9, 79, 79)).resize((88, 88), Image.Resampling.LANCZOS)}
    for index in range(4):
        images[f"unrelated_{index}"] = pink_noise_image(rng, 96, power=2).crop((4, 4, 92, 92))
    return images


def test_thumbnails_join_a_recrop_that_phash_misses_and_the_next_frame():
    images = burst_and_recrop()
    names = list(images)
    fingerprints = pd.DataFrame([signals.fingerprint(image) for image in images.values()])
    grouping = dedupe.group_duplicates(names, fingerprints, max_distance=THRESHOLD_BITS, min_cosine=0.97)
    group = dict(zip(names, grouping.group.tolist()))
    assert group["frame"] == group["next frame"] == group["re-crop"], f"re-crop and next frame join the frame: {group}"
    assert len({group[name] for name in names if name.startswith("unrelated")} | {group["frame"]}) == 5, (
        f"unrelated scenes stay apart from each other and from the frame: {group}")
    phash_pairs = set(map(tuple, grouping.signal_pairs[signals.PHASH_COLUMN].tolist()))
    assert (0, 2) not in phash_pairs, "the 256-bit phash alone misses the re-crop (why the thumbnails exist)"
    assert set(map(tuple, grouping.signal_pairs[signals.THUMBS_COLUMN].tolist())) == {(0, 1), (0, 2), (1, 2)}, (
        "the thumbnails find the three pairs")


def test_thumbnail_text_round_trips_and_bad_text_is_an_input_error():
    image = burst_and_recrop()["frame"]
    vectors = signals.thumbnails(signals.grey_square(image))
    [decoded] = signals.decode_thumbnails([signals.fingerprint(image)[signals.THUMBS_COLUMN]])
    cosines = (decoded * (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))).sum(axis=1)
    assert cosines.min() > 0.999, f"int8 hex text keeps each crop's direction: {cosines}"
    with pytest.raises(PipelineInputError, match="hex digits each"):
        signals.decode_thumbnails(["00ff"])


def test_grouping_is_transitive_and_numbered_by_first_appearance():
    zero, one_bit, far = "0" * 16, "0" * 15 + "1", "f" * 16
    sha = ["a", "b", "c", "a", "d"]
    # Row 0 and 3 share bytes; row 2 is a near copy of row 3; rows 1 and 4 are unrelated.
    hashes = pd.DataFrame({signals.PHASH_COLUMN: [zero, far, one_bit, zero, "0f" * 8],
                           signals.THUMBS_COLUMN: distinct_thumbnails(5)})
    grouping = dedupe.group_duplicates(sha, hashes, max_distance=2, min_cosine=0.97)
    assert grouping.group.tolist() == [0, 1, 0, 0, 2], "exact + near links must chain into groups"
    assert grouping.exact_pairs.tolist() == [[0, 3]], "only same-sha256 rows are exact pairs"
    assert sorted(map(tuple, grouping.near_pairs.tolist())) == [(0, 2), (2, 3)], (
        "near pairs exclude byte-identical ones"
    )


def test_grouping_of_nothing_is_empty():
    empty = pd.DataFrame({column: [] for column in signals.FINGERPRINT_COLUMNS}, dtype=str)
    grouping = dedupe.group_duplicates([], empty, max_distance=4, min_cosine=0.97)
    assert len(grouping.group) == 0, "an empty selection must give no groups, not an error"
