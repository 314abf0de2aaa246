"""Download one version of a Kaggle dataset as a verified zip, resuming interrupted downloads."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import requests
from urllib3 import exceptions as urllib3_exceptions

from facerec.errors import PipelineInputError

log = logging.getLogger(__name__)

TOKEN_HELP = "create one at kaggle.com → Settings → API → Create New Token"
# The README's demo command: `-S download.source=synthetic` alone would go on to need ImageNet
# weights, which are just as unreachable offline.
DEMO_COMMAND = ("dvc exp run -n demo -S download.source=synthetic -S train.weights=none -S train.image_size=64 "
                "-S train.epochs=30 -S train.fine_tune_epochs=0")
OFFLINE_HELP = (
    f"To try the pipeline without Kaggle, run the README's demo (synthetic faces, no downloads at all): "
    f"`{DEMO_COMMAND}`. To train on real data without Kaggle, set `download.source: /path/to/archive.zip` "
    "(or a folder with one sub-folder per identity)."
)
RETRIABLE_STATUS = {408, 429, 500, 502, 503, 504}


class KaggleError(PipelineInputError):
    """Kaggle download failed for a reason the user can fix; the message says how."""


class KaggleCredentialsError(KaggleError):
    """No Kaggle credentials were found, or Kaggle rejected them."""


class KaggleNotFoundError(KaggleError):
    """The dataset or the requested version does not exist (or is not visible to this account)."""


class KaggleNetworkError(KaggleError):
    """The download kept failing or arriving incomplete after all attempts."""


class _IncompleteDownloadError(Exception):
    """The body was shorter than announced or is not a readable zip."""


@dataclass(frozen=True)
class KaggleArchive:
    """What the download stage extracts and records."""

    archive_path: Path  # the downloaded .zip, complete and verified
    version: str  # dataset version actually downloaded (the resolved number when "latest")


def kaggle_config_dir() -> Path:
    """Return the folder the kaggle client reads kaggle.json from (same rules as the client)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy_dir = Path.home() / ".kaggle"
    if legacy_dir.exists() or not sys.platform.startswith("linux"):
        return legacy_dir
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _token_or_token_file(value: str | None) -> str | None:
    """The token itself, or the content of the file it names (the client accepts both)."""
    if not value or "\n" in value:
        return value
    try:
        # A long token is not a path: is_file() raises "File name too long" with the token in
        # its message, which must never reach a traceback.
        return (Path(value).read_text().strip() or None) if Path(value).is_file() else value
    except OSError:
        return value


def _credential_forms() -> list[tuple[str, str, str | None]]:
    """List (short name, where we looked, secret or None) for each form the client accepts."""
    home_kaggle = Path.home() / ".kaggle"
    token_files = [home_kaggle / "access_token", home_kaggle / "access_token.txt"]
    file_token = next((p.read_text().strip() for p in token_files if p.is_file()), None)
    env_token = _token_or_token_file(os.environ.get("KAGGLE_API_TOKEN") or None)
    config_json = kaggle_config_dir() / "kaggle.json"
    # The client overlays KAGGLE_USERNAME / KAGGLE_KEY on kaggle.json, so either may supply each.
    legacy = _read_json(config_json)
    legacy.update({name: os.environ[f"KAGGLE_{name.upper()}"] for name in ("username", "key")
                   if os.environ.get(f"KAGGLE_{name.upper()}")})
    legacy_where = (f"KAGGLE_USERNAME + KAGGLE_KEY environment variables, or {config_json} "
                    'holding {"username": ..., "key": ...} (folder set by KAGGLE_CONFIG_DIR)')
    oauth_json = home_kaggle / "credentials.json"
    return [
        ("KAGGLE_API_TOKEN", "KAGGLE_API_TOKEN environment variable (the token or a file path)",
         env_token),
        (str(token_files[0]), f"access token file {token_files[0]} (or {token_files[1].name})",
         file_token),
        ("KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json", legacy_where,
         legacy.get("key") if legacy.get("username") else None),
        (str(oauth_json), f"{oauth_json} (written by `kaggle auth login`)",
         _read_json(oauth_json).get("refresh_token") or None),
    ]


def _redact(text: str) -> str:
    """Remove any credential value from `text`, in case a library echoed one into an error."""
    for _, _, secret in _credential_forms():
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _missing_credentials_message() -> str:
    looked_for = "\n".join(f"  - {where}" for _, where, _ in _credential_forms())
    return (
        f"No Kaggle credentials found. Looked for:\n{looked_for}\n"
        f"To get a token, {TOKEN_HELP}, then export KAGGLE_API_TOKEN=<token> or save it to "
        f"{Path.home() / '.kaggle' / 'access_token'} (chmod 600).\n{OFFLINE_HELP}"
    )


def _rejected_message(source: str, status: int | str) -> str:
    return (
        f"Kaggle rejected the credentials from {source} ({status}). They may be expired or "
        f"revoked: {TOKEN_HELP} and replace the old token (or kaggle.json).\n{OFFLINE_HELP}"
    )


class _ClientOutput(io.TextIOBase):
    """Route the kaggle client's print() calls into our log instead of stdout."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("kaggle client: %s", _redact(line.strip()))
        return len(text)


def _parse_slug(dataset: str) -> tuple[str, str]:
    parts = str(dataset).strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise KaggleError(f"Kaggle dataset {dataset!r} must look like 'owner/dataset-slug'")
    return parts[0], parts[1]


def _parse_version(version: str | int | None) -> int | None:
    if version is None or str(version).strip() == "":
        return None
    text = str(version).strip()
    if isinstance(version, bool) or not text.isdigit() or int(text) < 1:
        raise KaggleError(f"Kaggle dataset version {version!r} must be a positive integer, "
                          "or empty for the latest version")
    return int(text)


def is_complete_zip(path: Path, *, check_crc: bool = False) -> bool:
    """True when `path` is a zip whose central directory (and, optionally, every CRC) reads."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    if not check_crc:
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):  # zlib.error: a damaged deflate stream
        return False


def reusable_archive(path: Path) -> bool:
    """True when a cached archive passes every CRC; a damaged one is moved aside so it is fetched again.

    Reuse without the CRC test would make every later run fail at extraction, never downloading
    again. The damaged file is kept (as `<name>.corrupt`) for inspection, not silently deleted.
    """
    if not path.exists():
        return False
    if is_complete_zip(path, check_crc=True):
        return True
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    log.warning("Cached Kaggle archive %s is damaged (unreadable zip or bad CRC); moved it to %s and "
                "downloading it again", path, aside)
    return False


def _authenticated_api(source: str):
    """Build and authenticate a KaggleApi for this call, without the client's print/exit."""
    with contextlib.redirect_stdout(_ClientOutput()):
        # Importing the package runs its module-level authenticate(); our credential check has
        # already passed, so it neither prints the auth help nor exits.
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        # The class reads these at import time; re-read them now so the call follows the current
        # environment. "--verbose" is left out on purpose: it prints the Authorization header.
        config_dir = kaggle_config_dir()
        api.config_dir, api.config = str(config_dir), str(config_dir / "kaggle.json")
        api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
        try:
            api.authenticate()
        except SystemExit:  # authenticate() calls exit(1) when a token fails introspection
            raise KaggleCredentialsError(_rejected_message(source, "token not accepted")) from None
        except Exception as error:  # anything else may quote the credential: never re-raise it raw
            raise KaggleCredentialsError(_rejected_message(
                source, _redact(f"{type(error).__name__}: {error}"))) from None
    return api


def _latest_version(api, owner: str, slug: str) -> int:
    with contextlib.redirect_stdout(_ClientOutput()):
        reply = api.dataset_status(f"{owner}/{slug}", format="json(current_version_number)")
    status = json.loads(reply)  # one GetDataset RPC
    version = int(status.get("current_version_number") or 0)
    if version < 1:
        raise KaggleNotFoundError(f"Kaggle lists no published version of '{owner}/{slug}'")
    return version


def _download_once(api, owner: str, slug: str, version: int, archive_path: Path) -> None:
    """Fetch the archive into a .part file (resuming one left by an earlier run), then rename."""
    from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

    part_path = archive_path.with_name(archive_path.name + ".part")
    request = ApiDownloadDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    request.dataset_version_number = version
    with api.build_kaggle_client() as client, contextlib.redirect_stdout(_ClientOutput()):
        # DownloadDataset answers with a redirect; requests follows it and streams the zip.
        response = client.datasets.dataset_api_client.download_dataset(request)
        try:
            # max_retries=0: retries are ours (bounded by max_attempts). resume=True lets the
            # client append to our .part via a Range request when its sidecar marker proves the
            # bytes belong to the same remote object (ETag/Last-Modified and size).
            api.download_file(response, str(part_path), client.http_client(), quiet=False,
                              resume=True, max_retries=0)
        except (ValueError, requests.HTTPError) as error:
            # ValueError: body shorter than Content-Length. HTTPError here can only come from a
            # resume request to the storage URL (e.g. an expired signed link, 403): it says
            # nothing about the credentials, and the next attempt gets a fresh link.
            raise _IncompleteDownloadError(f"{type(error).__name__}: {error}") from error
        finally:
            response.close()
    if not is_complete_zip(part_path, check_crc=True):
        # A full-length body that is not a zip cannot be repaired by resuming: start over.
        part_path.unlink(missing_ok=True)
        Path(f"{part_path}.kaggle-partial").unlink(missing_ok=True)
        raise _IncompleteDownloadError(f"downloaded file is not a valid zip ({archive_path.name})")
    os.replace(part_path, archive_path)


def _raise_for_http(error: requests.HTTPError, dataset: str, version: int | None, source: str):
    """Turn a definitive HTTP failure into a KaggleError; return silently if it is retriable."""
    status = error.response.status_code if error.response is not None else None
    if status in (401, 403):
        raise KaggleCredentialsError(_rejected_message(source, f"HTTP {status}")) from None
    if status == 404:
        raise KaggleNotFoundError(
            f"Kaggle dataset '{dataset}' version {version or 'latest'} was not found (HTTP 404). "
            "Check the dataset slug and version in params.yaml (download section); a private "
            "dataset also needs an account that can see it.") from None
    if status not in RETRIABLE_STATUS:
        raise KaggleError(f"Kaggle refused the download of '{dataset}' (HTTP {status}): "
                          f"{_redact(str(error))}") from None


def download_dataset_archive(dataset: str, version: str | int | None, download_dir: Path, *,
                             max_attempts: int, retry_wait_s: float) -> KaggleArchive:
    """Return a complete, CRC-checked zip of `dataset` at `version` (None or "" = latest).

    Archives live in `download_dir/<owner>/<slug>-v<version>.zip` and are reused; an
    interrupted download stays as `.part` and is resumed by the next attempt or run.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts = {max_attempts!r} must be at least 1")
    owner, slug = _parse_slug(dataset)
    pinned = _parse_version(version)
    archive_dir = Path(download_dir) / owner

    def archive_for(number: int) -> Path:
        return archive_dir / f"{slug}-v{number}.zip"

    if pinned is not None and reusable_archive(archive_for(pinned)):
        log.info("Reusing Kaggle archive %s (version %d)", archive_for(pinned), pinned)
        return KaggleArchive(archive_for(pinned), str(pinned))
    source = next((name for name, _, secret in _credential_forms() if secret), None)
    if source is None:
        raise KaggleCredentialsError(_missing_credentials_message())
    log.info("Using Kaggle credentials from %s", source)
    archive_dir.mkdir(parents=True, exist_ok=True)

    api, resolved, last_error = None, pinned, None
    for attempt in range(1, max_attempts + 1):
        try:
            api = api or _authenticated_api(source)
            resolved = resolved or _latest_version(api, owner, slug)
            archive_path = archive_for(resolved)
            if not reusable_archive(archive_path):
                log.info("Downloading Kaggle dataset %s version %d (attempt %d/%d)",
                         dataset, resolved, attempt, max_attempts)
                started = time.monotonic()
                _download_once(api, owner, slug, resolved, archive_path)
                log.info("Downloaded %s: %.1f MB in %.1f s", archive_path.name,
                         archive_path.stat().st_size / 1e6, time.monotonic() - started)
            return KaggleArchive(archive_path, str(resolved))
        except requests.HTTPError as error:  # before RequestException: HTTPError is one
            _raise_for_http(error, dataset, resolved, source)
            last_error = error
        except (requests.RequestException, urllib3_exceptions.HTTPError, OSError,
                _IncompleteDownloadError) as error:
            last_error = error
        log.warning("Kaggle download attempt %d/%d failed: %s", attempt, max_attempts,
                    _redact(f"{type(last_error).__name__}: {last_error}"))
        if attempt < max_attempts:
            time.sleep(retry_wait_s)
    raise KaggleNetworkError(
        f"Could not download Kaggle dataset '{dataset}' version {resolved or 'latest'} after "
        f"{max_attempts} attempts ({_redact(f'{type(last_error).__name__}: {last_error}')}). "
        f"Check the network or proxy and run the stage again: a partial download in "
        f"{archive_dir} is resumed, not restarted.\n{OFFLINE_HELP}")
