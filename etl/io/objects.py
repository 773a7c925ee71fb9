"""Object storage: list and open raw objects on local disk or S3 (boto3), the one place that does it."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Iterator
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """An object-store failure, with the object named."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the root
    uri: str
    size: int
    etag: str | None
    mtime: datetime | None
    error: str | None = None


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


# Defaults for raw reads (a module attribute so a test can shorten them in-process).
READ_TIMEOUT_S = 60.0
READ_ATTEMPTS = 4  # whole GETs per object (a resume after a dropped connection counts as one)
READ_CHUNK = 1 << 20
SPOOL_MEMORY = 8 << 20  # a verified object is spooled: in memory up to this size, then in a temp file
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


def s3_client(endpoint_url: str = "", max_attempts: int = 5, connect_timeout: float = 10,
              read_timeout: float | None = None):
    """boto3 S3 client with bounded standard retries; the endpoint comes from conf (empty for AWS)."""
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(retries={"mode": "standard", "max_attempts": max_attempts},
                     connect_timeout=connect_timeout, read_timeout=read_timeout or READ_TIMEOUT_S,
                     request_checksum_calculation="when_supported")
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=cfg)


def _md5_file(path: str) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_key(key: str) -> bool:
    parts = key.replace("\\", "/").split("/")
    return not key.startswith("/") and ".." not in parts


def list_local(root: str) -> Iterator[ObjectInfo]:
    root = os.path.abspath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, root).replace(os.sep, "/")
            if os.path.islink(path) and not _inside(os.path.realpath(path), os.path.realpath(root)):
                # never follow a link out of raw_root: listed (so it is seen) but not read
                yield ObjectInfo(key, path, 0, None, None, error="symlink points outside raw_root; not read")
                continue
            try:
                st = os.stat(path)
                etag = _md5_file(path)
                yield ObjectInfo(key, path, st.st_size, etag, datetime.fromtimestamp(st.st_mtime, tz=timezone.utc))
            except OSError as exc:
                yield ObjectInfo(key, path, 0, None, None, error=f"{type(exc).__name__}: {exc.strerror or exc}")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def list_s3(root: str, endpoint_url: str = "") -> Iterator[ObjectInfo]:
    bucket, prefix = split_s3(root)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = s3_client(endpoint_url)
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(prefix):]
                if not key or key.endswith("/"):
                    continue
                yield ObjectInfo(key, f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"'),
                                 obj["LastModified"])
    except Exception as exc:  # noqa: BLE001 - re-raised with the prefix named
        raise StorageError(f"s3://{bucket}/{prefix}: listing failed ({_short(exc)}); check credentials, "
                           f"bucket name and s3_endpoint_url") from None


def list_objects(root: str, endpoint_url: str = "") -> Iterator[ObjectInfo]:
    """Every object under root, keys relative to it, sorted (local walk or paginated list_objects_v2)."""
    if root.startswith(("s3://", "s3a://")):
        return list_s3(root, endpoint_url)
    if not os.path.isdir(root):
        raise StorageError(f"{root}: raw_root is not a folder; fix raw_root in the conf")
    return list_local(root)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return redact_secrets(text)


# Credentials must never reach a log line, an exception message or a table: AWS key ids, values of secret-like
# keys, URL userinfo, and the literal values of the secret environment variables present in this process.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s@\"'<>]+@"), r"\1***@"),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), "***"),
    (re.compile(r"(?i)((?:aws_)?(?:secret_access_key|secret|session_token|security_token|password|passwd|token)"
                r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}]+"), r"\1***"),
    (re.compile(r"(?i)(x-amz-security-token[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}]+"), r"\1***"),
    (re.compile(r"(?i)(Credential=)[^/\s,]+"), r"\1***"),
    (re.compile(r"(?i)(Signature=)[0-9a-f]+"), r"\1***"),
)
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")


def redact_secrets(text: str) -> str:
    """`text` with credentials masked (key ids, secret-like values, URL userinfo, secret env values)."""
    if not text:
        return text
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= 8 and value in text:
            text = text.replace(value, "***")
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def open_object(uri: str, endpoint_url: str = "", expected_etag: str | None = None,
                expected_size: int | None = None, max_attempts: int | None = None) -> BinaryIO:
    """A binary stream of one object. S3 objects are verified before a reader sees a byte (see read_s3_verified)."""
    if uri.startswith(("s3://", "s3a://")):
        return read_s3_verified(uri, endpoint_url, expected_etag, expected_size, max_attempts or READ_ATTEMPTS)
    if not os.path.abspath(uri).startswith("/") or not os.path.isfile(uri):
        raise StorageError(f"{uri}: not a readable file")
    return open(uri, "rb")


def read_s3_verified(uri: str, endpoint_url: str = "", expected_etag: str | None = None,
                     expected_size: int | None = None, max_attempts: int = READ_ATTEMPTS) -> BinaryIO:
    """The object spooled (memory, then a temp file) and checked: byte count and MD5 against size and ETag.

    A dropped connection resumes with a Range GET pinned to the same ETag; a body that does not match its size
    or (single-part) ETag is read again from the start; both within `max_attempts` GETs, on top of botocore's
    own bounded retries for 5xx and timeouts. A persistent failure raises StorageError naming the object, so
    the caller quarantines it; a reader never sees a partial or corrupted object.
    """
    bucket, key = split_s3(uri)
    client = s3_client(endpoint_url)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    state = {"pos": 0, "md5": hashlib.md5(usedforsecurity=False), "etag": None, "total": None}
    problems: list[str] = []
    for attempt in range(1, max_attempts + 1):
        try:
            _fetch(client, bucket, key, spool, state, expected_etag)
        except StorageError:
            spool.close()
            raise
        except Exception as exc:  # noqa: BLE001 - connection dropped mid-body: resume from state["pos"]
            if not _is_checksum_error(exc):
                problems.append(f"attempt {attempt}: {type(exc).__name__} at byte {state['pos']}")
                log.warning("%s: read interrupted at byte %d (%s); resuming", uri, state["pos"], _short(exc))
                continue
            problem = f"botocore checksum mismatch ({_short(exc)})"
        else:
            problem = _verify(state, expected_etag, expected_size)
        if problem is None:
            spool.seek(0)
            return spool
        problems.append(f"attempt {attempt}: {problem}")
        log.warning("%s: %s; reading it again", uri, problem)
        spool.seek(0)
        spool.truncate()
        state.update(pos=0, md5=hashlib.md5(usedforsecurity=False), etag=None, total=None)
    spool.close()
    raise StorageError(f"{uri}: unreadable after {max_attempts} attempts ({'; '.join(problems[-3:])}); "
                       f"the object is quarantined, re-run ingest once the store serves it intact")


def _fetch(client, bucket: str, key: str, spool, state: dict, expected_etag: str | None) -> None:
    """One GET (a Range GET from state["pos"] when resuming) appended to the spool; state tracks bytes + MD5."""
    uri = f"s3://{bucket}/{key}"
    args = {"Bucket": bucket, "Key": key}
    pin = state["etag"] or expected_etag
    if pin:
        args["IfMatch"] = pin  # the same version as listed / as the bytes already read, or 412
    if state["pos"]:
        args["Range"] = f"bytes={state['pos']}-"
    try:
        resp = client.get_object(**args)
    except Exception as exc:  # noqa: BLE001 - botocore already retried what is retryable
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
        hint = "it changed since it was listed; re-run inventory" if code in ("PreconditionFailed", "412") else \
            "check the key, credentials and s3_endpoint_url"
        raise StorageError(f"{uri}: cannot read ({_short(exc)}); {hint}") from None
    if state["etag"] is None:
        state["etag"] = (resp.get("ETag") or "").strip('"') or None
        state["total"] = resp.get("ContentLength") if not state["pos"] else None
    body = resp["Body"]
    try:
        for chunk in iter(lambda: body.read(READ_CHUNK), b""):
            spool.write(chunk)
            state["md5"].update(chunk)
            state["pos"] += len(chunk)
    finally:
        body.close()


def _is_checksum_error(exc: Exception) -> bool:
    from botocore.exceptions import FlexibleChecksumError

    return isinstance(exc, FlexibleChecksumError)


def _verify(state: dict, expected_etag: str | None, expected_size: int | None) -> str | None:
    """Why the spooled bytes are not the object (size or MD5 mismatch), or None when they are."""
    got = state["pos"]
    for what, size in (("listed size", expected_size), ("Content-Length", state["total"])):
        if size is not None and got != size:
            return f"{got} bytes read, {what} is {size}"
    etag = (expected_etag or state["etag"] or "").strip('"').lower()
    if _PLAIN_MD5.fullmatch(etag) and state["md5"].hexdigest() != etag:
        return f"MD5 {state['md5'].hexdigest()} of the bytes read != ETag {etag}"
    return None  # multipart ETags ("...-N") carry no MD5 of the whole: size checked, botocore checks CRCs


def is_safe_key(key: str) -> bool:
    """Keys that stay inside the root they are joined to (no absolute path, no `..`)."""
    return _safe_key(key)


def write_text(uri: str, text: str, endpoint_url: str = "") -> None:
    """Write a small report (JSON, HTML) next to the lake, locally or on S3."""
    if uri.startswith(("s3://", "s3a://")):
        bucket, key = split_s3(uri)
        try:
            s3_client(endpoint_url).put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"{uri}: cannot write ({_short(exc)}); check credentials and bucket") from None
        return
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    tmp = f"{uri}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, uri)


def read_text(uri: str, endpoint_url: str = "") -> str | None:
    """Read a small report back; None when it does not exist."""
    if uri.startswith(("s3://", "s3a://")):
        bucket, key = split_s3(uri)
        try:
            return s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except Exception:  # noqa: BLE001
            return None
    if not os.path.exists(uri):
        return None
    with open(uri, encoding="utf-8") as fh:
        return fh.read()
