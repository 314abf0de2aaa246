"""A small standard-library stand-in for the Kaggle API, enough for the real client's download.

The client (with KAGGLE_API_ENVIRONMENT=LOCALHOST) calls http://localhost/api/v1/...; pointing
http_proxy at this server makes every such call (and the redirected archive GET) land here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

API_PREFIX = "/api/v1/"
STORAGE_PREFIX = "/storage/"


@dataclass
class StandinState:
    """What the stand-in serves, how it misbehaves, and what it saw."""

    username: str
    key: str
    token: str
    archives: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    reject_all: bool = False  # answer 401 to every API call, as for a revoked key
    cut_after_bytes: int | None = None  # send this many body bytes, then hang up
    cut_times: int = 0  # how many archive replies to cut (a large number = always)
    serve_garbage: bool = False  # full-length body that is not a zip
    seen: list[dict] = field(default_factory=list)  # one entry per request

    def latest(self, owner: str, slug: str) -> int | None:
        versions = [v for (o, s, v) in self.archives if (o, s) == (owner, slug)]
        return max(versions) if versions else None

    def calls(self, name: str) -> list[dict]:
        return [entry for entry in self.seen if entry["name"] == name]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _reply_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        state = self.server.state
        allowed = {f"Bearer {state.token}",
                   "Basic " + base64.b64encode(f"{state.username}:{state.key}".encode()).decode()}
        return not state.reject_all and self.headers.get("Authorization") in allowed

    def do_POST(self) -> None:
        state = self.server.state
        name = urlsplit(self.path).path.removeprefix(API_PREFIX)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        state.seen.append({"name": name, "body": body})
        if name == "security.OAuthService/IntrospectToken":
            active = not state.reject_all and body.get("token") == state.token
            return self._reply_json(200, {"active": active, "username": state.username})
        if not self._authorized():
            return self._reply_json(401, {"code": 401, "message": "Unauthenticated"})
        owner, slug = body.get("ownerSlug", ""), body.get("datasetSlug", "")
        version = body.get("datasetVersionNumber") or state.latest(owner, slug)
        if (owner, slug, version) not in state.archives:
            return self._reply_json(404, {"code": 404, "message": "Not found"})
        if name == "datasets.DatasetApiService/GetDataset":
            return self._reply_json(200, {"currentVersionNumber": version})
        if name == "datasets.DatasetApiService/DownloadDataset":
            self.send_response(302)
            self.send_header("Location", f"http://localhost{STORAGE_PREFIX}{owner}/{slug}/{version}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._reply_json(404, {"code": 404, "message": f"stand-in has no {name}"})

    def do_GET(self) -> None:
        state = self.server.state
        owner, slug, version = urlsplit(self.path).path.removeprefix(STORAGE_PREFIX).split("/")
        data = state.archives[(owner, slug, int(version))]
        if state.serve_garbage:
            data = b"not a zip " * (len(data) // 10)
        asked = self.headers.get("Range")  # the client only sends "bytes=<first>-"
        first = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        # This reply's own record: with a threaded server, seen[-1] may already be the next request's
        # (the client abandons the un-ranged reply and asks again while this thread still writes).
        call = {"name": "archive", "range": asked, "start": first}
        state.seen.append(call)
        self.send_response(206 if first else 200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data) - first))
        if first:
            self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{owner}-{slug}-{version}"')
        self.send_header("Last-Modified", formatdate(1_700_000_000, usegmt=True))
        self.end_headers()
        body = data[first:]
        if state.cut_times > 0 and state.cut_after_bytes is not None:
            state.cut_times -= 1
            body = body[: state.cut_after_bytes]  # HTTP/1.0: closing now leaves the body short
        call["sent"] = len(body)
        # The client abandons the un-ranged reply when it resumes; that is not an error here.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StandinState


def start_standin(state: StandinState) -> tuple[_Server, str]:
    """Serve `state` on a free local port in a background thread; return (server, proxy URL)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    # A short poll interval keeps shutdown() (once per test) fast.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
