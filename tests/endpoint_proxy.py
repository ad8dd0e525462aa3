"""A fault-injecting HTTP proxy in front of the real test server: 429, 500, dropped connections, hangs, on chosen
requests, and a record of every request it saw (body, authorization header, concurrency).

`FaultProxy(upstream, faults={0: "429", 3: "drop"})` answers chat-completion request number 0 (0-based, in arrival
order) with HTTP 429, drops the connection of request 3 without a response, and forwards every other request to
`upstream` unchanged. `default_fault` applies to every request without an entry. Faults:

* `"429"`, `"500"`, `"503"`, `"400"`: that status with a JSON error body (429 with `Retry-After: 0`);
* `"drop"`: close the connection without answering (the client sees the server disconnect);
* `"hang"`: hold the request until `release()` or `close()`, then drop it (the client times out, or gets killed).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class ProxyRecord:
    number: int
    path: str
    body: dict[str, Any]
    authorization: str | None
    fault: str | None


class FaultProxy:
    def __init__(self, upstream: str, faults: dict[int, str] | None = None, default_fault: str | None = None):
        parsed = urlparse(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.faults = dict(faults or {})
        self.default_fault = default_fault
        self.records: list[ProxyRecord] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Lets every hanging request go (they are dropped)."""
        self._release.set()

    def reset(self, faults: dict[int, str] | None = None, default_fault: str | None = None) -> None:
        """Forgets the records and sets new faults (request numbers restart at 0)."""
        self._release.set()  # wakes every hanging request (they are dropped); the clear below re-arms "hang"
        with self._lock:
            self.records = []
            self.faults = dict(faults or {})
            self.default_fault = default_fault
            self.max_in_flight = 0
        self._release.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy._lock:
                    number = len(proxy.records)
                    fault = proxy.faults.get(number, proxy.default_fault)
                    proxy.records.append(
                        ProxyRecord(number, self.path, json.loads(body), self.headers.get("authorization"), fault)
                    )
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    self._answer(body, fault)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            def _answer(self, body: bytes, fault: str | None) -> None:
                if fault == "hang":
                    proxy._release.wait(timeout=120)
                    fault = "drop"
                if fault == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:  # the client is already gone (killed, or timed out and closed)
                        pass
                    return
                if fault is not None:
                    status = int(fault)
                    payload = json.dumps({"error": f"injected {status}"}).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self._send(payload, "application/json")
                    return
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                self.send_response(response.status)
                self._send(payload, response.getheader("content-type", "application/json"))

            def _send(self, payload: bytes, content_type: str) -> None:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
