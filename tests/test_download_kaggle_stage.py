"""The download stage with download.source=kaggle, against the local Kaggle stand-in server."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, tiny_params, write_params

from tests.kaggle_standin import StandinState, start_standin
from tests.test_kaggle_source import DATASET, KEY, OWNER, SLUG, USERNAME, build_pins_zip


@pytest.fixture
def server():
    state = StandinState(username=USERNAME, key=KEY, token="unused-token")
    state.archives = {(OWNER, SLUG, version): build_pins_zip(version + 2) for version in (1, 2)}
    server, proxy_url = start_standin(state)
    yield state, proxy_url
    server.shutdown()
    server.server_close()


def _run_stage(project: Path, proxy_url: str, credentials: dict) -> subprocess.CompletedProcess:
    write_params(project, tiny_params(download={"source": "kaggle", "kaggle_dataset": DATASET, "kaggle_version": 2,
                                                "retry_wait_s": 0, "min_side_px": 8}))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "HOME": str(project / "home"),
           "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "http_proxy": proxy_url, "HTTP_PROXY": proxy_url,
           "no_proxy": "", "NO_PROXY": "", **credentials}
    return subprocess.run(
        [sys.executable, "-m", "stages.download", "--raw", "data/raw.zip", "--manifest", "data/manifest.csv",
         "--skipped", "data/skipped.csv", "--report", "reports/download.json", "--kaggle-cache", ".cache/kaggle"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_kaggle_download_through_the_stage(tmp_path, server):
    state, proxy_url = server
    project = tmp_path / "project"
    done = _run_stage(project, proxy_url, {"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY})
    assert done.returncode == 0, done.stderr
    packed = zipfile.ZipFile(project / "data/raw.zip").namelist()
    assert sorted({name.split("/")[0] for name in packed}) == ["pins_A", "pins_B"], \
        "the archive's identity folders are the packed dataset's top folders"
    summary = json.loads((project / "reports/download.json").read_text(encoding="utf-8"))
    assert summary["dataset_version"] == "2" and summary["source"] == f"kaggle:{DATASET}", "version recorded"
    assert summary["ok"] == 8, "both identities' 4 images were verified"
    downloads = state.calls("datasets.DatasetApiService/DownloadDataset")
    assert [call["body"]["datasetVersionNumber"] for call in downloads] == [2], "the pinned version was asked for"
    written = [path for path in project.rglob("*") if path.is_file()]
    for path in written:
        assert KEY.encode() not in path.read_bytes(), f"the Kaggle key leaked into {path}"
    assert KEY not in done.stdout + done.stderr, "the Kaggle key leaked into the log"


def test_missing_credentials_exit_with_the_fix(tmp_path, server):
    _, proxy_url = server
    done = _run_stage(tmp_path / "project", proxy_url, {})
    assert done.returncode == 2, "missing credentials are an expected problem: exit code 2"
    assert "kaggle.json" in done.stderr and "synthetic" in done.stderr, "names a credential form and the offline way"
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "project/data/raw.zip").exists(), "nothing half-written"


def corrupt_first_member(archive: Path) -> None:
    """Flip bytes inside the first member's data, leaving the zip's directory readable."""
    with zipfile.ZipFile(archive) as opened:
        member = opened.infolist()[0]
    with open(archive, "r+b") as handle:
        handle.seek(member.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
        data_start = member.header_offset + 30 + name_length + extra_length
        handle.seek(data_start + member.compress_size // 2)
        handle.write(bytes(8))


def test_a_corrupt_cached_archive_is_moved_aside_and_downloaded_again(tmp_path, server):
    state, proxy_url = server
    project, credentials = tmp_path / "project", {"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY}
    assert _run_stage(project, proxy_url, credentials).returncode == 0, "first run downloads"
    cached = project / ".cache/kaggle" / OWNER / f"{SLUG}-v2.zip"
    corrupt_first_member(cached)
    assert zipfile.is_zipfile(cached) and zipfile.ZipFile(cached).testzip() is not None, \
        "the cached archive still looks like a zip but fails its CRC (the case that blocked every run)"

    done = _run_stage(project, proxy_url, credentials)
    assert done.returncode == 0, f"the damaged archive no longer blocks the run:\n{done.stderr[-3000:]}"
    assert "is damaged" in done.stderr and "downloading it again" in done.stderr, "the log says what happened"
    downloads = state.calls("datasets.DatasetApiService/DownloadDataset")
    assert len(downloads) == 2, "the archive was downloaded a second time"
    assert zipfile.ZipFile(cached).testzip() is None, "the cache now holds a sound archive"
    assert cached.with_name(cached.name + ".corrupt").is_file(), "the damaged file is kept aside, not deleted"

    assert _run_stage(project, proxy_url, credentials).returncode == 0, "third run"
    assert len(state.calls("datasets.DatasetApiService/DownloadDataset")) == 2, "a sound cached archive is reused"
