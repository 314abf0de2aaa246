"""Manifest verification: every kind of bad file gets its status; good ones decode to RGB."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from facerec.errors import PipelineInputError
from facerec.layout import find_dataset_root, identity_from_folder
from facerec.manifests import MANIFEST_COLUMNS, read_manifest
from facerec.verify import build_manifest, open_rgb, summarize_manifest

MIN_SIDE_PX = 32


def _noise(mode: str, size=(48, 40)) -> Image.Image:
    """Random pixels, so truncating the encoded file really loses data."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], channels), np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height with a few bytes of pixels: decoding it would fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(bytes(64))) + _png_chunk(b"IEND", b""))


def _palette_with_transparency() -> Image.Image:
    image = _noise("L").convert("P")
    image.info["transparency"] = 0
    return image


# relative path -> (bytes, expected status, expected mode, expected format)
CASES = {
    "pins_Zoë Saldaña/rgb.jpg": (_encoded(_noise("RGB"), "JPEG"), "ok", "RGB", "JPEG"),
    "pins_Zoë Saldaña/cmyk.jpg": (_encoded(_noise("CMYK"), "JPEG"), "ok", "CMYK", "JPEG"),
    "pins_Zoë Saldaña/png_named.jpg": (_encoded(_noise("RGB"), "PNG"), "ok", "RGB", "PNG"),
    "pins_Adriana Lima/gray.png": (_encoded(_noise("L"), "PNG"), "ok", "L", "PNG"),
    "pins_Adriana Lima/palette.png": (_encoded(_palette_with_transparency(), "PNG"),
                                      "ok", "P", "PNG"),
    "pins_Adriana Lima/rgba.png": (_encoded(_noise("RGBA"), "PNG"), "ok", "RGBA", "PNG"),
    "pins_Adriana Lima/truncated.jpg": (_encoded(_noise("RGB"), "JPEG")[:1500],
                                        "truncated", "RGB", "JPEG"),
    "pins_Adriana Lima/text.jpg": (b"not an image at all\n", "not_an_image", "", ""),
    "pins_Adriana Lima/empty.jpg": (b"", "empty", "", ""),
    "pins_Adriana Lima/tiny.jpg": (_encoded(_noise("RGB", (8, 40)), "JPEG"),
                                   "too_small", "RGB", "JPEG"),
    "pins_Adriana Lima/bomb.png": (_png_header_only(100_000, 100_000), "too_large", "RGB", "PNG"),
    "pins_Adriana Lima/.DS_Store": (b"\x00\x00\x00\x01Bud1", "junk", "", ""),
    "pins_Adriana Lima/Thumbs.db": (b"thumbs", "junk", "", ""),
    "pins_Adriana Lima/desktop.ini": (b"[.ShellClassInfo]", "junk", "", ""),
    "__MACOSX/pins_Adriana Lima/._gray.png": (b"\x00\x05\x16\x07", "junk", "", ""),
    "__MACOSX/pins_Adriana Lima/real.png": (_encoded(_noise("L"), "PNG"), "junk", "", ""),
    "stray.png": (_encoded(_noise("RGB"), "PNG"), "no_identity", "RGB", "PNG"),
    "pins_Adriana Lima/tiff_named.jpg": (_encoded(_noise("RGB"), "TIFF"), "unsupported_format", "RGB", "TIFF"),
    "pins_Adriana Lima/.hidden.jpg": (_encoded(_noise("RGB"), "JPEG"), "hidden", "", ""),
    ".thumbnails/pins_Adriana Lima/a.jpg": (_encoded(_noise("RGB"), "JPEG"), "hidden", "", ""),
    "pins_Adriana Lima/2019/deeper.jpg": (_encoded(_noise("RGB"), "JPEG"), "nested", "RGB", "JPEG"),
}


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """A root whose identity folders hold one file per case."""
    root = tmp_path / "root"
    for relative, (data, *_) in CASES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def test_every_file_gets_its_status_mode_and_format(dataset):
    manifest = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1).set_index("path")
    for relative, (data, status, mode, fmt) in CASES.items():
        row = manifest.loc[relative]
        assert (row["status"], row["mode"], row["format"]) == (status, mode, fmt), relative
        assert row["bytes"] == len(data), f"{relative}: byte count"


def test_schema_dtypes_and_identities(dataset):
    manifest = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1)
    assert list(manifest.columns) == MANIFEST_COLUMNS, "column order is the contract"
    assert all(str(manifest[c].dtype) == "Int64" for c in ("bytes", "width", "height")), "Int64"
    ok = manifest[manifest["status"] == "ok"]
    assert set(ok["identity"]) == {"Zoë Saldaña", "Adriana Lima"}, "Unicode identities survive"
    assert ok["sha256"].str.fullmatch("[0-9a-f]{64}").all(), "hashes are hex sha256"
    assert manifest.loc[manifest["status"] == "not_an_image", "width"].isna().all(), "NA size"
    assert manifest.loc[manifest["path"] == "stray.png", "identity"].item() == "", "no identity"


def test_output_is_sorted_and_same_serial_or_parallel(dataset):
    serial = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1)
    parallel = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=2)
    assert list(serial["path"]) == sorted(CASES), "rows sorted by path, one per file"
    assert serial.equals(parallel), "worker count must not change the manifest"


def test_bomb_is_rejected_from_the_header_without_decoding(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "person").mkdir(parents=True)
    (root / "person" / "big.png").write_bytes(_encoded(_noise("RGB", (64, 64)), "PNG"))
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: decoded.append(self.size) or real_load(self))
    manifest = build_manifest(root, min_side_px=1, max_image_pixels=1000, workers=1)
    assert manifest["status"].tolist() == ["too_large"], "over max_image_pixels"
    assert (manifest["width"].item(), manifest["height"].item()) == (64, 64), "size from header"
    assert decoded == [], "pixels of an over-limit image must never be decoded"


def test_fixable_statuses_are_warned_with_an_example_and_the_fix(dataset, caplog):
    build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    for expected in ("as nested (e.g. 'pins_Adriana Lima/2019/deeper.jpg'): move them up",
                     "as unsupported_format (e.g. 'pins_Adriana Lima/tiff_named.jpg'): convert them",
                     "as no_identity (e.g. 'stray.png')"):
        assert any(expected in message for message in warnings), f"{expected!r} warned: {warnings}"


def test_pillow_globals_are_restored(dataset):
    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before, "no side effects"


def test_truncated_is_detected_even_if_caller_allows_truncation(dataset, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    manifest = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1).set_index("path")
    assert manifest.loc["pins_Adriana Lima/truncated.jpg", "status"] == "truncated"


def test_summary_counts(dataset):
    summary = summarize_manifest(build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1))
    assert summary == {
        "files_seen": len(CASES), "ok": 6, "identities": 2,
        "rejected": {"empty": 1, "hidden": 2, "junk": 5, "nested": 1, "no_identity": 1, "not_an_image": 1,
                     "too_large": 1, "too_small": 1, "truncated": 1, "unsupported_format": 1},
    }, "summary must match the cases"


@pytest.mark.parametrize("name", ["cmyk.jpg", "png_named.jpg", "rgb.jpg"])
def test_open_rgb_converts_jpeg_and_png(dataset, name):
    image = open_rgb(dataset / "pins_Zoë Saldaña" / name)
    assert (image.mode, image.size) == ("RGB", (48, 40)), name


@pytest.mark.parametrize("name", ["gray.png", "palette.png", "rgba.png"])
def test_open_rgb_converts_gray_palette_and_alpha(dataset, name):
    image = open_rgb(dataset / "pins_Adriana Lima" / name)
    assert (image.mode, image.size) == ("RGB", (48, 40)), name


def test_open_rgb_composites_transparency_onto_white_and_scales_16_bit(tmp_path):
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    transparent.save(tmp_path / "clear.png")
    assert open_rgb(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255), "white bg"
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "deep.png")
    assert open_rgb(tmp_path / "deep.png").getpixel((0, 0)) == (128, 128, 128), "mid-grey"


def test_identity_from_folder():
    assert identity_from_folder("pins_Zoë Saldaña") == "Zoë Saldaña", "prefix stripped only"
    assert identity_from_folder("s1") == "s1", "other mirrors are verbatim"


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_find_dataset_root_kaggle_layout_with_macos_junk(tmp_path):
    _touch(tmp_path / "105_classes_pins_dataset" / "pins_A B" / "a.jpg")
    _touch(tmp_path / "105_classes_pins_dataset" / "pins_C" / "c.jpg")
    _touch(tmp_path / "__MACOSX" / "105_classes_pins_dataset" / "._pins_C")
    _touch(tmp_path / ".DS_Store")
    assert find_dataset_root(tmp_path).root == tmp_path / "105_classes_pins_dataset", "past wrapper"


def test_find_dataset_root_orl_and_flat_layouts(tmp_path):
    _touch(tmp_path / "orl" / "orl_faces" / "s1" / "1.png")
    _touch(tmp_path / "orl" / "orl_faces" / "s2" / "1.png")
    assert find_dataset_root(tmp_path / "orl").root == tmp_path / "orl" / "orl_faces", "orl mirror"
    _touch(tmp_path / "flat" / "alice" / "1.jpg")
    _touch(tmp_path / "flat" / "bob" / "1.jpg")
    assert find_dataset_root(tmp_path / "flat").root == tmp_path / "flat", "identities at top"
    _touch(tmp_path / "single" / "alice" / "1.jpg")
    assert find_dataset_root(tmp_path / "single").root == tmp_path / "single", "one identity"


def test_find_dataset_root_without_identity_folders_explains_layout(tmp_path):
    _touch(tmp_path / "wrapper" / "loose.jpg")
    _touch(tmp_path / "wrapper" / "__MACOSX" / "pins_A" / "._a.jpg")
    with pytest.raises(PipelineInputError, match="expected <root>/<identity>/<image files>"):
        find_dataset_root(tmp_path / "wrapper")


def test_unreadable_file_is_reported_not_raised(tmp_path, monkeypatch):
    (tmp_path / "person").mkdir()
    (tmp_path / "person" / "a.jpg").write_bytes(_encoded(_noise("RGB"), "JPEG"))

    def failing_read(*_args, **_kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("facerec.verify.read_no_follow", failing_read)
    manifest = build_manifest(tmp_path, min_side_px=1, workers=1)
    assert manifest["status"].tolist() == ["unreadable"], "an OSError on read is a status"
    assert manifest["bytes"].isna().all(), "size unknown when the file cannot be read"


def test_symlinks_are_never_followed(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(_encoded(_noise("RGB"), "JPEG"))
    root = tmp_path / "root"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "real.jpg").write_bytes(outside.read_bytes())
    (root / "alice" / "face.jpg").symlink_to(outside)
    (root / "alice" / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "alice" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "bob").symlink_to(tmp_path)  # a linked folder is neither walked nor an identity
    manifest = build_manifest(root, min_side_px=1, workers=1).set_index("path")
    links = ["alice/face.jpg", "alice/gone.jpg", "alice/passwd.jpg", "bob"]
    assert manifest.loc[links, "status"].tolist() == ["symlink"] * 4, "every link gets the symlink status"
    assert manifest.loc[links, "bytes"].isna().all(), "no size of a link's target"
    assert (manifest.loc[links, "sha256"] == "").all(), "no hash of a link's target"
    assert manifest.loc["alice/real.jpg", "status"] == "ok", "the real file is still data"
    assert len(manifest) == 5, "nothing under the linked folder is listed"


def test_non_utf8_name_gets_a_status_and_a_printable_path(tmp_path):
    root = tmp_path / "root"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "good.jpg").write_bytes(_encoded(_noise("RGB"), "JPEG"))
    with open(os.path.join(os.fsencode(root / "alice"), b"Ren\xe9e.jpg"), "wb") as handle:
        handle.write(_encoded(_noise("RGB"), "JPEG"))
    manifest = build_manifest(root, min_side_px=1, workers=1)
    manifest.to_csv(tmp_path / "manifest.csv", index=False, encoding="utf-8")  # must not raise
    assert manifest.set_index("path").loc["alice/Ren\\xe9e.jpg", "status"] == "non_utf8_name", "named, byte shown"


@pytest.mark.parametrize("fmt,mode", [
    ("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "P"),
    ("GIF", "P"), ("WEBP", "RGB"), ("BMP", "RGB"), ("BMP", "L"), ("BMP", "1"), ("TIFF", "RGB"),
    ("PPM", "RGB"), ("ICO", "RGBA"), ("TGA", "RGB"), ("JPEG2000", "RGB"),
])
def test_ok_exactly_when_tensorflow_decodes(tmp_path, fmt, mode):
    import tensorflow as tf

    image = _noise("L").convert("I;16") if mode == "I;16" else _noise("RGB").convert(mode)
    data = _encoded(image, fmt)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "image.jpg").write_bytes(data)
    status = build_manifest(tmp_path, min_side_px=1, workers=1)["status"].item()
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
        decodes = True
    except tf.errors.InvalidArgumentError:
        decodes = False
    assert (status == "ok") == decodes, f"{fmt} {mode}: verify says {status}, TensorFlow decodes: {decodes}"
    assert status in ("ok", "unsupported_format"), f"{fmt} {mode}: only the format is at stake, got {status}"


def test_manifest_reads_back_with_its_types(dataset, tmp_path):
    manifest = build_manifest(dataset, min_side_px=MIN_SIDE_PX, workers=1)
    manifest.to_csv(tmp_path / "manifest.csv", index=False, encoding="utf-8")
    back = read_manifest(tmp_path / "manifest.csv")
    assert back.dtypes.to_dict() == manifest.dtypes.to_dict(), "the reader restores every column type"
    assert back.equals(manifest), "round trip is lossless, empty cells included"
    ok = back[back["status"] == "ok"]
    assert float(ok["width"].median()) == 48.0, "sizes are numbers even with rejected rows present"


def test_find_dataset_root_past_a_readme_beside_the_wrapper(tmp_path):
    _touch(tmp_path / "orl_faces" / "s1" / "1.png")
    _touch(tmp_path / "orl_faces" / "s2" / "1.png")
    (tmp_path / "orl_faces_README.txt").write_text("The ORL database of faces")
    _touch(tmp_path / ".git" / "HEAD")
    (tmp_path / "link").symlink_to(tmp_path / "orl_faces")
    found = find_dataset_root(tmp_path)
    assert found.root == tmp_path / "orl_faces", "README, hidden folder and link do not stop the descent"
    assert found.ignored == [".git/", "link", "orl_faces_README.txt"], f"ignored files reported: {found.ignored}"


def test_find_dataset_root_accepts_a_linked_top_folder(tmp_path):
    _touch(tmp_path / "real" / "faces" / "alice" / "1.png")
    _touch(tmp_path / "real" / "faces" / "bob" / "1.png")
    (tmp_path / "given").symlink_to(tmp_path / "real")
    found = find_dataset_root(tmp_path / "given")
    assert found.root == tmp_path / "given" / "faces", "the path the user names may itself be a link"


def test_find_dataset_root_stops_where_an_image_lies_beside_the_folder(tmp_path):
    _touch(tmp_path / "alice" / "inner" / "1.png")
    (tmp_path / "bob.png").write_bytes(_encoded(_noise("RGB"), "PNG"))
    assert find_dataset_root(tmp_path).root == tmp_path, "an image beside the folder makes this the root"
