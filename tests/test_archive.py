"""Safe archive extraction: layouts survive, unsafe entries are refused and write nothing."""

from __future__ import annotations

import io
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest

from facerec.archive import ExtractionLimits, UnsupportedArchiveError, ZipMemberReader, extract_archive, list_zip
from facerec.errors import PipelineInputError

LIMITS = ExtractionLimits(max_bytes=10**9, max_ratio=1000, archive_bytes=10**6)  # ample for these tests
FILES = {
    "105_classes_pins_dataset/pins_Zoë Saldaña/Zoë Saldaña1_1.jpg": b"zoe-bytes",
    "105_classes_pins_dataset/pins_Adriana Lima/Adriana Lima0_0.jpg": b"adriana-bytes",
    "105_classes_pins_dataset/pins_Adriana Lima/Adriana Lima1_1.jpg": b"more-bytes",
}


def _write_zip(path: Path, entries: dict[str, bytes],
               symlinks: dict[str, str] | None = None) -> Path:
    """Zip with regular entries plus unix symlink entries (mode bits in external_attr)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name, link_target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, link_target)
    return path


def _write_tar(path: Path, entries: dict[str, bytes], mode: str = "w:gz",
               special: list[tarfile.TarInfo] = ()) -> Path:
    """Tar with regular entries plus any hand-made special members (links, devices)."""
    with tarfile.open(path, mode) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in special:
            archive.addfile(info)
    return path


def _tar_link(name: str, link_target: str, kind: bytes) -> tarfile.TarInfo:
    """A symlink (SYMTYPE) or hardlink (LNKTYPE) member pointing at link_target."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link_target
    return info


def _files_under(folder: Path) -> set[str]:
    """Relative POSIX paths of the regular files below folder."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("suffix,writer", [
    (".zip", lambda path: _write_zip(path, FILES)),
    (".tar.gz", lambda path: _write_tar(path, FILES, "w:gz")),
    (".tar.bz2", lambda path: _write_tar(path, FILES, "w:bz2")),
    (".tar.xz", lambda path: _write_tar(path, FILES, "w:xz")),
    (".tar", lambda path: _write_tar(path, FILES, "w")),
])
def test_extracts_kaggle_layout_with_unicode_names(tmp_path, suffix, writer):
    archive = writer(tmp_path / f"dataset{suffix}")
    target = tmp_path / "out"
    refused = extract_archive(archive, target, LIMITS)
    assert refused == [], "a clean archive must not refuse anything"
    assert _files_under(target) == set(FILES), "non-ASCII and spaced names must survive"
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data, f"content of {name} must be byte-identical"


def test_format_is_detected_by_content_not_extension(tmp_path):
    zip_named_tar = _write_zip(tmp_path / "really_a_zip.tar.gz", FILES)
    tar_named_zip = _write_tar(tmp_path / "really_a_tar.zip", FILES)
    for archive in (zip_named_tar, tar_named_zip):
        target = tmp_path / archive.name.replace(".", "_")
        extract_archive(archive, target, LIMITS)
        assert _files_under(target) == set(FILES), f"{archive.name} must extract by its content"


def _evil_names() -> dict[str, str]:
    """Unsafe entry name -> expected refusal reason; the absolute one is unique per run."""
    return {
        "../evil.jpg": "path_traversal",
        "a/../../evil.jpg": "path_traversal",
        "..\\..\\evil.jpg": "path_traversal",
        f"/tmp/evil-{uuid.uuid4().hex}.jpg": "absolute_path",
        "C:/evil.jpg": "drive_letter",
        "C:\\evil.jpg": "drive_letter",
    }


def _assert_nothing_escaped(tmp_path: Path, target: Path, evil: dict[str, str]) -> None:
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"], "nothing beside target"
    assert {p.name for p in tmp_path.iterdir()} <= {"base", "evil.zip", "evil.tar.gz"}, (
        "nothing written next to the archive")
    assert not (tmp_path / "evil.jpg").exists(), "zip-slip must not reach two levels up"
    for name in evil:
        if name.startswith("/"):
            assert not Path(name).exists(), "absolute entry must not be written at its path"
    assert _files_under(target) == {"ok/fine.jpg"}, "only the safe entry is extracted"


def test_zip_refuses_unsafe_entries_and_writes_nothing_outside(tmp_path):
    evil = _evil_names()
    symlinks = {"ok/link.jpg": "/etc/passwd", "up": "../.."}
    archive = _write_zip(tmp_path / "evil.zip",
                         {"ok/fine.jpg": b"fine", **{n: b"evil" for n in evil}}, symlinks)
    target = tmp_path / "base" / "out"
    refused = extract_archive(archive, target, LIMITS)
    expected = {**evil, **{name: "symlink" for name in symlinks}}
    assert {entry.name: entry.reason for entry in refused} == expected, "each refusal and why"
    assert not (target / "ok" / "link.jpg").is_symlink(), "symlink entries are not created"
    assert not (target / "C:").exists(), "drive letters never become folders"
    _assert_nothing_escaped(tmp_path, target, evil)


def test_tar_refuses_unsafe_entries_links_and_devices(tmp_path):
    evil = _evil_names()
    device = tarfile.TarInfo("ok/dev")
    device.type = tarfile.CHRTYPE
    special = [_tar_link("ok/link.jpg", "/etc/passwd", tarfile.SYMTYPE),
               _tar_link("escape", "../..", tarfile.SYMTYPE),
               _tar_link("ok/hard.jpg", "/etc/passwd", tarfile.LNKTYPE), device]
    archive = _write_tar(tmp_path / "evil.tar.gz",
                         {"ok/fine.jpg": b"fine", **{n: b"evil" for n in evil}}, special=special)
    target = tmp_path / "base" / "out"
    refused = {entry.name: entry.reason for entry in extract_archive(archive, target, LIMITS)}
    assert refused == {**evil, "ok/link.jpg": "symlink", "escape": "symlink",
                       "ok/hard.jpg": "hardlink", "ok/dev": "special_file"}, "each refusal and why"
    _assert_nothing_escaped(tmp_path, target, evil)


def test_existing_symlinks_in_target_are_not_followed(tmp_path):
    outside, target = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    target.mkdir()
    (target / "link_dir").symlink_to(outside)
    (target / "link.jpg").symlink_to(outside / "victim.jpg")
    archive = _write_zip(tmp_path / "a.zip", {"link_dir/evil.jpg": b"x", "link.jpg": b"x"})
    refused = {entry.name: entry.reason for entry in extract_archive(archive, target, LIMITS)}
    assert refused == {"link_dir/evil.jpg": "path_traversal", "link.jpg": "symlink"}, "refused"
    assert list(outside.iterdir()) == [], "nothing written through a pre-existing symlink"


def test_zip_refuses_device_and_encrypted_entries(tmp_path):
    archive_path = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        device = zipfile.ZipInfo("dev/tty")
        device.external_attr = (stat.S_IFCHR | 0o666) << 16
        archive.writestr(device, b"")
        archive.writestr("locked.jpg", b"ciphertext")
    # zipfile cannot write encrypted entries: set the flag in the last central-directory record.
    data = bytearray(archive_path.read_bytes())
    data[data.rfind(b"PK\x01\x02") + 8] |= 0x1
    archive_path.write_bytes(bytes(data))
    refused = {e.name: e.reason for e in extract_archive(archive_path, tmp_path / "out", LIMITS)}
    assert refused == {"dev/tty": "special_file", "locked.jpg": "encrypted"}, "refused and why"
    assert _files_under(tmp_path / "out") == set(), "nothing written for them"


def test_refusals_are_logged_as_one_warning(tmp_path, caplog):
    archive = _write_zip(tmp_path / "evil.zip", {"../evil.jpg": b"x", "ok.jpg": b"y"})
    extract_archive(archive, tmp_path / "out", LIMITS)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "path_traversal: 1" in warnings[0].getMessage(), "one summary"


@pytest.mark.parametrize("name,content", [
    ("faces.rar", b"this is just text, not an archive\n"),
    ("faces.7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64),
])
def test_unsupported_format_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedArchiveError) as error:
        extract_archive(path, tmp_path / "out", LIMITS)
    assert name in str(error.value) and ".zip" in str(error.value), "message names file + formats"
    assert isinstance(error.value, PipelineInputError), "stages report it as an input problem"


def test_truncated_tar_is_a_clear_input_error(tmp_path):
    whole = _write_tar(tmp_path / "whole.tar.gz", {"a/b.jpg": bytes(range(256)) * 400})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(PipelineInputError, match="cut.tar.gz"):
        extract_archive(cut, tmp_path / "out", LIMITS)


def test_truncated_zip_says_download_again(tmp_path):
    whole = _write_zip(tmp_path / "whole.zip", {"a/b.jpg": bytes(range(256)) * 400})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the central directory is gone
    with pytest.raises(PipelineInputError) as error:
        extract_archive(cut, tmp_path / "out", LIMITS)
    message = str(error.value)
    assert "cut.zip" in message and "truncated or corrupt" in message, message
    assert "download it again" in message and "re-pack" not in message, "the fix is a new download"


def test_non_utf8_tar_name_is_refused_and_named(tmp_path):
    archive = _write_tar(tmp_path / "latin1.tar", {"ok/fine.jpg": b"fine"}, "w")
    # GNU tar stores names as raw bytes (pax would store UTF-8); latin-1 writes é as 0xE9.
    with tarfile.open(archive, "a", encoding="latin-1", format=tarfile.GNU_FORMAT) as bundle:
        info = tarfile.TarInfo("ok/Ren\xe9e.jpg")
        info.size = 4
        bundle.addfile(info, io.BytesIO(b"data"))
    refused = {entry.name: entry.reason for entry in extract_archive(archive, tmp_path / "out", LIMITS)}
    assert refused == {"ok/Ren\\xe9e.jpg": "non_utf8_name"}, f"refused, name shown with its byte: {refused}"
    assert _files_under(tmp_path / "out") == {"ok/fine.jpg"}, "only the UTF-8 entry is written"


@pytest.mark.parametrize("entries", [
    {"a/x": b"file", "a/x/y.jpg": b"image"},  # the file first: the folder cannot be made
    {"a/x/y.jpg": b"image", "a/x": b"file"},  # the folder first: the file cannot be opened
])
def test_file_and_folder_of_the_same_name_is_a_clear_error(tmp_path, entries):
    archive = _write_zip(tmp_path / "clash.zip", entries)
    with pytest.raises(PipelineInputError) as error:
        extract_archive(archive, tmp_path / "out", LIMITS)
    assert "same name" in str(error.value) and "a/x" in str(error.value), str(error.value)


def _bomb(path: Path, size_bytes: int) -> Path:
    """A zip of zeros: a few kB that expand to size_bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pins_A/zeros.jpg", bytes(size_bytes))
    return path


@pytest.mark.parametrize("limits,param", [
    (ExtractionLimits(max_bytes=1_000_000, max_ratio=10**6, archive_bytes=1), "download.max_extracted_gb"),
    (ExtractionLimits(max_bytes=10**12, max_ratio=100, archive_bytes=0), "download.max_extraction_ratio"),
])
def test_extraction_stops_at_the_cap_and_names_the_param(tmp_path, limits, param):
    archive = _bomb(tmp_path / "bomb.zip", 20_000_000)
    limits = ExtractionLimits(limits.max_bytes, limits.max_ratio, archive.stat().st_size)
    with pytest.raises(PipelineInputError) as error:
        extract_archive(archive, tmp_path / "out", limits)
    assert param in str(error.value) and "pins_A/zeros.jpg" in str(error.value), str(error.value)
    written = sum(path.stat().st_size for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert written <= limits.budget(), f"no more than the budget is written ({written} bytes)"


def test_zip_name_flagged_utf8_but_not_is_a_clear_error(tmp_path):
    archive = _write_zip(tmp_path / "flagged.zip", {"pins_A/Renxe.jpg": b"data"})
    data = bytearray(archive.read_bytes().replace(b"Renxe", b"Ren\xe9e"))  # latin-1 é, not UTF-8
    data[data.find(b"PK\x03\x04") + 7] |= 0x08  # general-purpose bit 11: "names are UTF-8"
    data[data.find(b"PK\x01\x02") + 9] |= 0x08
    archive.write_bytes(bytes(data))
    with pytest.raises(PipelineInputError) as error:
        extract_archive(archive, tmp_path / "out", LIMITS)
    assert "pins_A/Ren\\xe9e.jpg" in str(error.value) and "UTF-8" in str(error.value), str(error.value)


def test_zip_read_in_place_refuses_what_extraction_refuses(tmp_path):
    evil = _evil_names()
    symlinks = {"ok/link.jpg": "/etc/passwd", "up": "../.."}
    archive = _write_zip(tmp_path / "evil.zip", {"ok/fine.jpg": b"fine", **{n: b"evil" for n in evil}}, symlinks)
    listing = list_zip(archive, LIMITS)
    assert {entry.name: entry.reason for entry in listing.refused} == {**evil, **dict.fromkeys(symlinks, "symlink")}, \
        "the same refusals, with the same reasons, as extraction"
    assert set(listing.files) == {"ok/fine.jpg"} and listing.folders == {"ok"}, "only the safe entry is kept"
    member, size = listing.files["ok/fine.jpg"]
    assert ZipMemberReader(str(archive))(member) == b"fine" and size == 4, "read in place by its member name"


@pytest.mark.parametrize("entries", [{"a/x": b"file", "a/x/y.jpg": b"image"}, {"a/x/y.jpg": b"image", "a/x": b"file"}])
def test_zip_read_in_place_stops_on_a_name_clash(tmp_path, entries):
    with pytest.raises(PipelineInputError) as error:
        list_zip(_write_zip(tmp_path / "clash.zip", entries), LIMITS)
    assert "same name" in str(error.value) and "a/x" in str(error.value), str(error.value)


def test_zip_read_in_place_stops_at_the_cap_before_reading(tmp_path):
    archive = _bomb(tmp_path / "bomb.zip", 20_000_000)
    limits = ExtractionLimits(max_bytes=10**12, max_ratio=100, archive_bytes=archive.stat().st_size)
    with pytest.raises(PipelineInputError) as error:
        list_zip(archive, limits)
    assert "download.max_extraction_ratio" in str(error.value) and "pins_A/zeros.jpg" in str(error.value), \
        str(error.value)
