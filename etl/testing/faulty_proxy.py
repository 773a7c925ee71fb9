"""A fault-injecting HTTP proxy on loopback, in front of a local S3 server (moto), for reliability tests.

Point `s3_endpoint_url` at `FaultyProxy.url`; every request is forwarded to the upstream server unchanged,
except those matched by a `Fault`, which get one of:

  drop        headers + about half of the body, then the connection is closed (dropped mid-body)
  status_500  an S3-style 500 InternalError, upstream not called
  status_503  an S3-style 503 SlowDown, upstream not called
  delay       `delay_s` seconds of silence before the (normal) answer: longer than a client read timeout
  corrupt     the body with some bytes flipped (same length, same headers)
  lie_head    a HEAD answer whose Content-Length and ETag are not the object's
  lie_etag    a normal answer whose ETag header is not the object's
  lie_length  Content-Length and body cut to half: a short object that looks complete on the wire

Threaded and bounded (at most `max_threads` requests at once, socket timeouts everywhere) and it stops by
itself after `lifetime_s`, so a failing test never leaves it running. Every injected fault is counted.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

KINDS = ("drop", "status_500", "status_503", "delay", "corrupt", "lie_head", "lie_etag", "lie_length")
FOREVER = -1
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
_ERRORS = {500: ("InternalError", "We encountered an internal error. Please try again."),
           503: ("SlowDown", "Please reduce your request rate.")}


@dataclass
class Fault:
    """Inject `kind` into requests of operation `op` whose decoded path contains `match`, `times` times."""

    kind: str
    op: str = "get"  # get | list | head | put | delete | any
    match: str = ""  # substring of the decoded path (e.g. an object key); "" = every request of `op`
    times: int = 1  # FOREVER (-1): every matching request
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r}: use one of {', '.join(KINDS)}")


def operation(method: str, path: str, query: str) -> str:
    """The S3 operation class of a request: list | get | head | put | delete | post."""
    if method == "GET":
        key = path.lstrip("/").partition("/")[2]
        return "list" if ("list-type" in query or not key) else "get"
    return method.lower()


class FaultyProxy:
    """Loopback HTTP proxy that forwards to `upstream` (http://host:port) and injects the configured faults."""

    def __init__(self, upstream: str, faults: tuple[Fault, ...] | list[Fault] = (), max_threads: int = 16,
                 lifetime_s: float = 600.0, timeout_s: float = 30.0):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.timeout_s = timeout_s
        self.injected: Counter = Counter()  # (kind, op) -> faults served
        self.requests: Counter = Counter()  # op -> requests seen
        self._faults: list[list] = []  # [fault, remaining]
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_threads)
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.slots = self._slots
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="faulty-proxy", daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False
        self.set_faults(faults)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_faults(self, faults) -> None:
        """Replace the fault plan (counters are kept)."""
        with self._lock:
            self._faults = [[f, f.times] for f in faults]

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear(self) -> None:
        self.set_faults(())

    def take(self, op: str, path: str) -> Fault | None:
        """The first armed fault matching this request (its remaining count decremented), else None."""
        with self._lock:
            self.requests[op] += 1
            for entry in self._faults:
                fault, remaining = entry
                if remaining == 0 or fault.op not in (op, "any") or fault.match not in path:
                    continue
                if remaining > 0:
                    entry[1] = remaining - 1
                self.injected[(fault.kind, op)] += 1
                return fault
        return None

    def total_injected(self) -> int:
        return sum(self.injected.values())

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    slots: threading.BoundedSemaphore

    def process_request(self, request, client_address):
        # Bounded: wait (briefly) for a free slot, else refuse the connection instead of piling up threads.
        if not self.slots.acquire(timeout=10):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _handler_for(proxy: FaultyProxy):
    class Handler(_ProxyHandler):
        pass

    Handler.proxy = proxy
    Handler.timeout = proxy.timeout_s
    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultyProxy

    def log_message(self, fmt, *args) -> None:  # quiet: the test counts, it does not read access logs
        log.debug("proxy: " + fmt, *args)

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        trailer = self.rfile.readline(65537)
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(raw)
                raw += self.rfile.read(size + 2)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        path, _, query = self.path.partition("?")
        op = operation(self.command, path, query)
        body = self._read_body()
        fault = self.proxy.take(op, unquote(path))
        self.close_connection = True
        if fault and fault.kind in ("status_500", "status_503"):
            self._send_error(500 if fault.kind == "status_500" else 503)
            return
        if fault and fault.kind == "delay":
            time.sleep(fault.delay_s)
        try:
            status, reason, headers, data = self._upstream(body)
        except OSError as exc:
            self._send_error(503, f"upstream unreachable: {exc}")
            return
        kind = fault.kind if fault else ""
        if kind == "corrupt" and data:
            data = _corrupt(data)
        elif kind in ("lie_head", "lie_etag"):
            headers = _lie(headers, kind == "lie_head")
        elif kind == "lie_length" and data:
            data = data[: max(1, len(data) // 2)]
            headers = [(k, str(len(data)) if k.lower() == "content-length" else v) for k, v in headers]
        self._reply(status, reason, headers, data, drop=(kind == "drop"))

    def _upstream(self, body: bytes):
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=self.proxy.timeout_s)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = b"" if self.command == "HEAD" else resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _reply(self, status: int, reason: str, headers, data: bytes, drop: bool = False) -> None:
        try:
            self.send_response_only(status, reason)
            has_length = False
            for key, value in headers:
                if key.lower() in _HOP_HEADERS:
                    continue
                has_length |= key.lower() == "content-length"
                self.send_header(key, value)
            if not has_length and self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if drop:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (e.g. its read timeout fired during a delay): nothing to answer

    def _send_error(self, status: int, message: str = "") -> None:
        code, text = _ERRORS.get(status, ("InternalError", "error"))
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message or text}</Message></Error>").encode()
        self._reply(status, http.client.responses.get(status, ""), [("Content-Type", "application/xml")],
                    b"" if self.command == "HEAD" else body)


def _corrupt(data: bytes) -> bytes:
    """Flip the low bit of a few bytes spread over the body (length unchanged)."""
    out = bytearray(data)
    for pos in {len(out) // 3, len(out) // 2, (2 * len(out)) // 3}:
        out[pos] ^= 0x01
    return bytes(out)


def _lie(headers, length_too: bool):
    out = []
    for key, value in headers:
        if key.lower() == "etag":
            value = '"0123456789abcdef0123456789abcdef"'
        elif length_too and key.lower() == "content-length":
            value = str(int(value or 0) + 1000)
        out.append((key, value))
    return out
