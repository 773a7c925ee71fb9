"""One writer per lake: a lock object at `<lake_root>/_lock`, created atomically, heart-beaten, taken over when stale.

Local lakes use an `O_EXCL` file hard-linked into place (atomic, never half-written); S3 lakes use conditional writes (`IfNoneMatch="*"` to create, `IfMatch=<etag>`
to beat, take over or delete), so two runs never both believe they hold it. The lock records the owner's run id,
host, pid, start and heartbeat times. A lock is stale when its heartbeat is older than `stale_after` seconds, or
when its pid is dead on this host (a SIGKILLed run); a stale lock is taken over with a log line. Delta's own
optimistic concurrency still guards each commit; the lock keeps two whole runs from interleaving their stages.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Self

from etl.config import is_s3, join_uri
from etl.io.objects import StorageError, s3_client, split_s3

log = logging.getLogger(__name__)

LOCK_NAME = "_lock"
POLL_S = 1.0


class LakeLocked(RuntimeError):
    """Another run holds the lake lock (and did not let go within the wait)."""


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _proc_start(pid: int) -> str | None:
    """Start time of a process (Linux /proc), to tell a dead pid from a reused one; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not (start and _proc_start(pid) not in (None, start))


def stale_reason(owner: dict, stale_after: float, now: float | None = None) -> str | None:
    """Why a lock held by `owner` is stale (dead pid on this host, old heartbeat), or None when it is live."""
    now = _now() if now is None else now
    age = now - float(owner.get("heartbeat", 0) or 0)
    pid = owner.get("pid")
    if owner.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid, owner.get("pid_start")):
        return f"its process {owner['pid']} on this host is gone"
    if age > stale_after:
        return f"no heartbeat for {age:.0f}s (> {stale_after:.0f}s)"
    return None


def describe(owner: dict) -> str:
    beat = owner.get("heartbeat")
    return (f"run {owner.get('run_id', '?')} (pid {owner.get('pid', '?')} on {owner.get('host', '?')}, "
            f"since {_iso(owner['started']) if owner.get('started') else '?'}, "
            f"heartbeat {_iso(beat) if beat else '?'})")


class _LocalStore:
    """The lock as a local file; create is O_EXCL, replace goes through a temp file and os.replace."""

    def __init__(self, path: str):
        self.path = path

    def create(self, body: bytes) -> str | None:
        """Write the body to a private file (O_EXCL), then hard-link it into place: the lock appears whole or not
        at all, and the link fails if a lock exists (a reader never sees a half-written lock)."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        return "local"

    def read(self) -> tuple[dict, str] | None:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        return _parse(raw), raw.decode("utf-8", "replace")

    def beat(self, body: bytes, expected: str) -> str | None:
        """The owner refreshes its lock in place (never absent, so no one can slip in between)."""
        current = self.read()
        if not current or current[1] != expected:
            return None
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(body)
        os.replace(tmp, self.path)
        return "local"

    def replace(self, body: bytes, expected: str) -> str | None:
        """Take over a stale lock if it still reads `expected`: rename it aside first, so only one run wins."""
        aside = f"{self.path}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return None
        with open(aside, "rb") as fh:
            seen = fh.read().decode("utf-8", "replace")
        if seen != expected:  # someone else replaced it meanwhile: put theirs back (link never clobbers)
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return None
        os.unlink(aside)
        return self.create(body)

    def delete(self, expected: str) -> None:
        current = self.read()
        if current and current[1] == expected:
            os.unlink(self.path)


class _S3Store:
    """The lock as an S3 object; every change is a conditional write on its ETag."""

    def __init__(self, uri: str, endpoint_url: str):
        self.uri = uri
        self.bucket, self.key = split_s3(uri)
        self.client = s3_client(endpoint_url)

    def _put(self, body: bytes, **cond) -> str | None:
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **cond)
        except Exception as exc:  # noqa: BLE001
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"):
                return None
            raise StorageError(f"{self.uri}: cannot write the lake lock ({exc}); check credentials") from None
        return resp.get("ETag", "").strip('"')

    def create(self, body: bytes) -> str | None:
        return self._put(body, IfNoneMatch="*")

    def read(self) -> tuple[dict, str] | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:  # noqa: BLE001
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"{self.uri}: cannot read the lake lock ({exc})") from None
        return _parse(resp["Body"].read()), resp["ETag"].strip('"')

    def replace(self, body: bytes, expected: str) -> str | None:
        return self._put(body, IfMatch=expected)

    beat = replace

    def delete(self, expected: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=expected)
        except Exception as exc:  # noqa: BLE001 - not ours any more, or already gone
            log.debug("lake lock %s: not deleted (%s)", self.uri, exc)


def _parse(raw: bytes) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}  # a half-written lock (crash while creating it): no heartbeat, so stale at once


class LakeLock:
    """Context manager: hold `<lake_root>/_lock` for `run_id`, waiting up to `wait_s` seconds for it."""

    def __init__(self, lake_root: str, run_id: str, wait_s: float = 0.0, stale_after: float = 300.0,
                 heartbeat_s: float | None = None, endpoint_url: str = ""):
        local_root = lake_root.removeprefix("file:")
        self.uri = join_uri(local_root, LOCK_NAME)
        self.store: _LocalStore | _S3Store | None = None
        if is_s3(lake_root):
            self.store = _S3Store(self.uri, endpoint_url)
        elif "://" not in local_root and not local_root.startswith("dbfs:"):
            self.store = _LocalStore(self.uri)
        self.run_id = run_id
        self.wait_s = max(0.0, wait_s)
        self.stale_after = stale_after
        self.heartbeat_s = heartbeat_s or max(1.0, stale_after / 5)
        self.started = _now()
        self._token: str | None = None  # what the store holds for us (local: the text, S3: the ETag)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "pid_start": _proc_start(os.getpid()), "started": self.started, "heartbeat": _now()},
                          sort_keys=True).encode()

    def _try_once(self) -> dict | None:
        """Take the lock if free or stale; return the live owner's record when someone else holds it."""
        body = self._body()
        created = self.store.create(body)
        if created:
            self._token = body.decode() if created == "local" else created
            return None
        current = self.store.read()
        if current is None:
            return {}  # released between our two calls: try again
        owner, token = current
        reason = stale_reason(owner, self.stale_after)
        if reason is None:
            return owner
        got = self.store.replace(body, token)
        if not got:
            return {}
        self._token = body.decode() if got == "local" else got
        log.warning("lake lock %s: took over a stale lock held by %s: %s", self.uri, describe(owner), reason)
        return None

    def acquire(self) -> LakeLock:
        if self.store is None:  # e.g. dbfs:/ or abfss://: Delta's own commit protocol is the only guard there
            log.warning("lake lock: %s is neither a local folder nor s3://; running without a lake lock", self.uri)
            return self
        deadline = _now() + self.wait_s
        announced = None
        while True:
            owner = self._try_once()
            if owner is None:
                break
            if owner and _now() >= deadline:
                raise LakeLocked(f"lake {self.uri.rsplit('/', 1)[0]} is locked by {describe(owner)}; wait for it "
                                 f"(--wait-lock SECONDS or lock_timeout in the conf) or stop that run. A lock left by "
                                 f"a crashed run is taken over once stale ({self.stale_after:.0f}s without heartbeat)")
            if owner and owner.get("run_id") != announced:
                announced = owner.get("run_id")
                log.info("lake lock %s is held by %s; waiting up to %.0fs", self.uri, describe(owner), self.wait_s)
            time.sleep(min(POLL_S, max(0.05, deadline - _now())) if owner else 0.05)
        log.info("lake lock %s acquired by run %s", self.uri, self.run_id)
        self._beat = threading.Thread(target=self._heartbeat, name="lake-lock-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            body = self._body()
            got = self.store.beat(body, self._token) if self._token else None
            if not got:
                log.error("lake lock %s: lost (another run took it over); this run should stop", self.uri)
                return
            self._token = body.decode() if got == "local" else got

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        if self._token and self.store is not None:
            self.store.delete(self._token)
            self._token = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
