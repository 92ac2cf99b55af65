"""A tiny Together-like API on loopback whose every answer a test sets, hostile or not.

Independent of the simulator: it serves exactly the bytes it is given, so a test can
send what no honest server would (numbers of 400 digits, objects nested 600 deep,
escape sequences in every string). It runs in a thread, so a daemon or a CLI command
in a subprocess can talk to it. `GET /v1/fine-tunes` lists every job whose answer is
a JSON object unless `listing` overrides it; metrics and events default to empty.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    """A status and body bytes sent as `application/json`."""

    status: int = 200
    body: bytes = b"{}"


def answer(obj: Any, status: int = 200) -> Answer:
    """JSON text of `obj` (big integers digit by digit, NaN literally)."""
    return Answer(status, json.dumps(obj).encode())


class HostileApi:
    """The programmable server; `with HostileApi.running() as api: api.base_url`."""

    def __init__(self) -> None:
        self.jobs: dict[str, Answer] = {}
        self.metrics: dict[str, Answer] = {}
        self.listing: Answer | None = None
        self.hits: Counter[str] = Counter()  # requests per path
        self.base_url = ""

    def set_job(self, job: dict[str, Any]) -> None:
        """Answer retrieves of `job["id"]` (and list it) with `job`."""
        self.jobs[job["id"]] = answer(job)

    def route(self, path: str) -> Answer:
        """The answer for a GET of `path`."""
        self.hits[path] += 1
        parts = path.split("?", 1)[0].rstrip("/").split("/")  # ['', 'v1', 'fine-tunes', ...]
        if parts[1:3] != ["v1", "fine-tunes"]:
            return answer({"error": {"message": "no such route"}}, 404)
        if len(parts) == 3:
            return self.listing or self._listing()
        found = self.jobs.get(parts[3], answer({"error": {"message": "no such job"}}, 404))
        if len(parts) == 4:
            return found
        if parts[4] == "metrics":
            return self.metrics.get(parts[3], answer({"metrics": []}))
        return answer({"data": []})

    def _listing(self) -> Answer:
        objects = [json.loads(a.body) for a in self.jobs.values() if a.status == 200]
        return answer({"data": [o for o in objects if isinstance(o, dict)]})

    def requests_to(self, suffix: str) -> int:
        """How many requests hit a path ending in `suffix` so far."""
        return sum(n for path, n in list(self.hits.items()) if path.split("?")[0].endswith(suffix))

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[HostileApi]:
        """Serve on an ephemeral loopback port in a thread until the block ends."""
        api = cls()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
        server.daemon_threads = True
        api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield api
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _handler(api: HostileApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            reply = api.route(self.path)
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests count requests in `hits`."""

    return Handler
