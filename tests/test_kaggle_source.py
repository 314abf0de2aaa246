"""Kaggle source: the real kaggle client against a local stand-in of the Kaggle API, offline."""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from facerec.errors import PipelineInputError
from facerec.kaggle_source import (
    KaggleCredentialsError,
    KaggleError,
    KaggleNetworkError,
    KaggleNotFoundError,
    download_dataset_archive,
)
from tests.kaggle_standin import StandinState, start_standin

OWNER, SLUG = "hereisburak", "pins-face-recognition"
DATASET = f"{OWNER}/{SLUG}"
USERNAME, KEY, TOKEN = "standin-user", "KEY-s3cr3t-5f1c9a7e2b44", "KGAT-t0ken-8d3e1f6a90cc"


def build_pins_zip(images_per_identity: int, noise_bytes: int = 0) -> bytes:
    """A tiny archive in the Kaggle Pins layout; the image count tells versions apart."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if noise_bytes:  # incompressible filler, to make an archive bigger than one read chunk
            archive.writestr("105_classes_pins_dataset/pins_A/noise.bin", os.urandom(noise_bytes))
        for identity, colour in (("A", (200, 60, 60)), ("B", (60, 60, 200))):
            for index in range(1, images_per_identity + 1):
                image_bytes = io.BytesIO()
                Image.new("RGB", (16, 16), colour).save(image_bytes, format="JPEG")
                name = f"105_classes_pins_dataset/pins_{identity}/{identity.lower()}{index}.jpg"
                archive.writestr(name, image_bytes.getvalue())
    return buffer.getvalue()


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """Start the stand-in with versions 1..3 and isolate HOME, KAGGLE_* and proxy variables."""
    state = StandinState(username=USERNAME, key=KEY, token=TOKEN)
    state.archives = {(OWNER, SLUG, version): build_pins_zip(version) for version in (1, 2, 3)}
    server, proxy_url = start_standin(state)
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower().endswith("_proxy") or name in (
                "XDG_CONFIG_HOME", "VERBOSE", "VERBOSE_OUTPUT"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # never read the developer's credentials
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy_url)
    for name in ("no_proxy", "NO_PROXY"):  # localhost must go through the proxy, i.e. here
        monkeypatch.setenv(name, "")
    yield state
    server.shutdown()
    server.server_close()


def use_credentials(form: str, tmp_path: Path, monkeypatch) -> None:
    """Provide the stand-in's credentials in one of the forms the client accepts."""
    if form == "env_key":
        monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
        monkeypatch.setenv("KAGGLE_KEY", KEY)
    elif form == "kaggle_json":
        config_dir = tmp_path / "kaggle-config"
        config_dir.mkdir()
        (config_dir / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": KEY}))
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    elif form == "token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)


def complete_zips(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and zipfile.is_zipfile(path)]


@pytest.mark.parametrize("form", ["env_key", "kaggle_json", "token"])
def test_latest_version_is_resolved_and_archive_is_byte_identical(standin, tmp_path, monkeypatch,
                                                                  form):
    use_credentials(form, tmp_path, monkeypatch)
    result = download_dataset_archive(DATASET, "", tmp_path / "cache", retry_wait_s=0, max_attempts=3)
    assert result.version == "3", "an empty version must resolve to the latest number"
    assert result.archive_path.read_bytes() == standin.archives[(OWNER, SLUG, 3)], \
        "the delivered zip must be exactly what the server served"
    assert [c["body"].get("datasetVersionNumber") for c in
            standin.calls("datasets.DatasetApiService/DownloadDataset")] == [3], \
        "the resolved number, not 'latest', must be downloaded so the recorded version is true"
    assert not list((tmp_path / "cache").rglob("*.part*")), "no partial files after success"


def test_pinned_version_is_requested_and_then_reused(standin, tmp_path, monkeypatch):
    use_credentials("env_key", tmp_path, monkeypatch)
    result = download_dataset_archive(DATASET, 2, tmp_path / "cache", retry_wait_s=0, max_attempts=3)
    downloads = standin.calls("datasets.DatasetApiService/DownloadDataset")
    assert [c["body"]["datasetVersionNumber"] for c in downloads] == [2], "pin sent to server"
    assert not standin.calls("datasets.DatasetApiService/GetDataset"), "a pin needs no lookup"
    assert result.version == "2"
    assert result.archive_path.read_bytes() == standin.archives[(OWNER, SLUG, 2)]

    seen_before = len(standin.seen)
    monkeypatch.delenv("KAGGLE_KEY")  # a cached archive must not even need credentials
    again = download_dataset_archive(DATASET, "2", tmp_path / "cache", max_attempts=3, retry_wait_s=0)
    assert again == result, "a complete archive for the same dataset+version is reused"
    assert len(standin.seen) == seen_before, "reuse must not contact the server"


def readme_demo_command() -> str:
    """The `dvc exp run` command of the README's demo section, on one line."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Demo", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    command = " ".join(block.replace("\\\n", " ").split())
    return command[command.index("dvc exp run"):]


def test_missing_credentials_explain_forms_and_offline_options(standin, tmp_path):
    with pytest.raises(KaggleCredentialsError) as caught:  # a SystemExit would escape this
        download_dataset_archive(DATASET, None, tmp_path / "cache", max_attempts=3, retry_wait_s=0)
    message = str(caught.value)
    home = tmp_path / "home"
    for expected in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR",
                     str(home / ".kaggle" / "access_token"), "kaggle.json",
                     "Settings → API → Create New Token", "download.source: /path/to/archive.zip"):
        assert expected in message, f"the missing-credentials message must mention {expected!r}"
    assert readme_demo_command() in message, "the offline way out is the README's demo, which needs no downloads"
    assert isinstance(caught.value, PipelineInputError), "the stage reports it without traceback"
    assert standin.seen == [], "nothing is sent without credentials"


@pytest.mark.parametrize("form", ["env_key", "token"])
def test_rejected_credentials(standin, tmp_path, monkeypatch, form):
    use_credentials(form, tmp_path, monkeypatch)
    standin.reject_all = True
    with pytest.raises(KaggleCredentialsError, match="rejected") as caught:
        download_dataset_archive(DATASET, 1, tmp_path / "cache", retry_wait_s=0, max_attempts=3)
    assert "Create New Token" in str(caught.value), "the message must say how to renew"


@pytest.mark.parametrize(("dataset", "version"), [("someone/no-such-data", None), (DATASET, 9)])
def test_unknown_dataset_or_version_is_not_found(standin, tmp_path, monkeypatch, dataset, version):
    use_credentials("env_key", tmp_path, monkeypatch)
    with pytest.raises(KaggleNotFoundError) as caught:
        download_dataset_archive(dataset, version, tmp_path / "cache", retry_wait_s=0, max_attempts=3)
    assert dataset in str(caught.value), "the message must name the dataset slug"
    assert f"version {version or 'latest'}" in str(caught.value), "and the version asked for"


@pytest.mark.parametrize("fault", ["truncated", "not_a_zip"])
def test_broken_downloads_are_retried_a_bounded_number_of_times(standin, tmp_path, monkeypatch,
                                                                fault):
    use_credentials("env_key", tmp_path, monkeypatch)
    if fault == "truncated":
        standin.cut_after_bytes, standin.cut_times = 100, 1_000
    else:
        standin.serve_garbage = True
    started = time.monotonic()
    with pytest.raises(KaggleNetworkError, match="after 3 attempts"):
        download_dataset_archive(DATASET, 1, tmp_path / "cache", max_attempts=3, retry_wait_s=0.05)
    assert time.monotonic() - started < 10, "retries must be ours and bounded, not the client's"
    assert len(standin.calls("datasets.DatasetApiService/DownloadDataset")) == 3
    assert complete_zips(tmp_path / "cache") == [], "no complete-looking archive may be left"
    assert not list((tmp_path / "cache").rglob("*.zip")), "only a .part may remain"


def test_interrupted_download_is_resumed_on_the_next_run(standin, tmp_path, monkeypatch):
    use_credentials("env_key", tmp_path, monkeypatch)
    # The client reads 1 MiB at a time and drops the chunk a hang-up interrupts, so the archive
    # must span a few chunks for a cut to leave bytes on disk.
    served = standin.archives[(OWNER, SLUG, 1)] = build_pins_zip(1, noise_bytes=3 << 20)
    standin.cut_after_bytes, standin.cut_times = len(served) // 2, 1
    with pytest.raises(KaggleNetworkError):
        download_dataset_archive(DATASET, 1, tmp_path / "cache", max_attempts=1, retry_wait_s=0)
    part_files = list((tmp_path / "cache").rglob("*.zip.part"))
    assert len(part_files) == 1, "the interrupted download is kept as .part"
    kept = part_files[0].stat().st_size
    assert 0 < kept < len(served), "the .part holds the bytes received before the cut"
    assert not complete_zips(tmp_path / "cache"), "and nothing looks like a complete archive"

    result = download_dataset_archive(DATASET, 1, tmp_path / "cache", max_attempts=1, retry_wait_s=0)
    assert result.archive_path.read_bytes() == served, "the resumed archive must be complete"
    last_fetch = standin.calls("archive")[-1]
    assert last_fetch["range"] == f"bytes={kept}-", "the next run asks only for the rest"
    assert last_fetch["sent"] == len(served) - kept, "and the server sends only the rest"


@pytest.mark.parametrize("form", ["env_key", "token"])
def test_credentials_never_leak(standin, tmp_path, monkeypatch, caplog, capsys, form):
    caplog.set_level(logging.DEBUG)  # every logger, including the client's and urllib3's
    use_credentials(form, tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    download_dataset_archive(DATASET, None, cache, retry_wait_s=0, max_attempts=3)
    messages = []
    standin.cut_after_bytes, standin.cut_times = 50, 1_000
    with pytest.raises(KaggleError) as caught:
        download_dataset_archive(DATASET, 2, cache, max_attempts=2, retry_wait_s=0)
    messages.append(str(caught.value))
    standin.reject_all = True
    with pytest.raises(KaggleError) as caught:
        download_dataset_archive(DATASET, 1, cache, retry_wait_s=0, max_attempts=3)
    messages.append(str(caught.value))

    captured = capsys.readouterr()
    for secret in (KEY, TOKEN):
        assert secret not in caplog.text, "credentials must never be logged"
        assert secret not in captured.out + captured.err, "nor printed"
        assert all(secret not in message for message in messages), "nor put in errors"
        for path in cache.rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), \
                f"nor written to {path.name}"


def test_long_token_is_never_treated_as_a_path_in_an_error(standin, tmp_path, monkeypatch, caplog, capsys):
    long_token = "KGAT_" + "x" * 400  # longer than a file name may be: is_file() raised with it
    monkeypatch.setenv("KAGGLE_API_TOKEN", long_token)
    standin.reject_all = True
    with pytest.raises(KaggleCredentialsError) as caught:
        download_dataset_archive(DATASET, 1, tmp_path / "cache", retry_wait_s=0, max_attempts=1)
    outputs = str(caught.value) + caplog.text + "".join(capsys.readouterr())
    assert long_token not in outputs, "a token too long for a path must not surface in any message"
