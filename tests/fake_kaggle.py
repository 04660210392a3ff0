"""A local stand-in for the Kaggle API, enough for the real kaggle client to download a competition.

It answers ``POST /v1/competitions.CompetitionApiService/DownloadDataFiles`` (JSON
``{"competitionName": …}``) with a 302 to ``/files/<name>.zip`` and serves that archive with
``Accept-Ranges``, ``ETag`` and ``Last-Modified`` so the client can resume with a Range request.
Errors are JSON ``{"code", "message"}`` bodies with the same HTTP status, as Kaggle sends them.
Every request is recorded in :attr:`FakeKaggle.requests`.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DOWNLOAD_PATH = "/v1/competitions.CompetitionApiService/DownloadDataFiles"
LAST_MODIFIED = "Mon, 14 Apr 2014 12:00:00 GMT"


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKaggle:
    """Serves ``archive`` for ``competition`` to ``username``/``key`` (HTTP Basic auth).

    Knobs, changeable between requests: ``error`` = (status, message) answers the download call
    with a Kaggle JSON error; ``cut_transfers`` = how many archive GETs to cut after half of the
    bytes (the connection is closed); ``fail_transfers`` = how many further archive GETs to answer
    503 (the network "stays down").
    """

    archive: bytes
    competition: str
    username: str
    key: str
    error: tuple[int, str] | None = None
    cut_transfers: int = 0
    fail_transfers: int = 0
    requests: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKaggle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append(Seen(self.command, self.path, dict(self.headers), body))
                return body

            def _json(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self._record()
                expected = (
                    "Basic " + base64.b64encode(f"{fake.username}:{fake.key}".encode()).decode()
                )
                if self.path != DOWNLOAD_PATH:
                    self._json(404, {"code": 404, "message": f"No route {self.path}"})
                elif self.headers.get("Authorization") != expected:
                    self._json(401, {"code": 401, "message": "Unauthenticated"})
                elif fake.error is not None:
                    self._json(fake.error[0], {"code": fake.error[0], "message": fake.error[1]})
                elif json.loads(body or b"{}").get("competitionName") != fake.competition:
                    self._json(404, {"code": 404, "message": "Competition not found"})
                else:
                    self.send_response(302)
                    self.send_header("Location", f"/files/{fake.competition}.zip?token=signed")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                if not self.path.startswith(f"/files/{fake.competition}.zip"):
                    self._json(404, {"code": 404, "message": "Not found"})
                    return
                if fake.cut_transfers:
                    fake.cut_transfers -= 1
                    self._send_archive(cut=True)
                elif fake.fail_transfers:
                    fake.fail_transfers -= 1
                    self._json(503, {"code": 503, "message": "Service unavailable"})
                else:
                    self._send_archive(cut=False)

            def _send_archive(self, cut: bool) -> None:
                data, total = fake.archive, len(fake.archive)
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes=") : -1])
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(total - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", '"galaxyzoo-v1"')
                self.send_header("Last-Modified", LAST_MODIFIED)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                self.end_headers()
                if cut:
                    self.wfile.write(data[start : start + (total - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(data[start:])

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def archive_requests(self) -> list[Seen]:
        """The GETs of the archive (not the API calls)."""
        return [r for r in self.requests if r.method == "GET"]
