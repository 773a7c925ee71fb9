"""Object storage: list and open raw objects on local disk or S3 (boto3), the one place that does it."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Iterator
from urllib.parse import urlparse


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


def s3_client(endpoint_url: str = "", max_attempts: int = 5, connect_timeout: float = 10, read_timeout: float = 60):
    """boto3 S3 client with bounded standard retries; the endpoint comes from conf (empty for AWS)."""
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(retries={"mode": "standard", "max_attempts": max_attempts},
                     connect_timeout=connect_timeout, read_timeout=read_timeout,
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
            try:
                st = os.stat(path)
                etag = _md5_file(path)
                yield ObjectInfo(key, path, st.st_size, etag, datetime.fromtimestamp(st.st_mtime, tz=timezone.utc))
            except OSError as exc:
                yield ObjectInfo(key, path, 0, None, None, error=f"{type(exc).__name__}: {exc.strerror or exc}")


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
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def open_object(uri: str, endpoint_url: str = "") -> BinaryIO:
    """A binary stream of one object; S3 objects are streamed, never loaded whole."""
    if uri.startswith(("s3://", "s3a://")):
        bucket, key = split_s3(uri)
        try:
            body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"{uri}: cannot read ({_short(exc)})") from None
        return io.BufferedReader(_StreamingBodyIO(body), buffer_size=1 << 20)
    if not os.path.abspath(uri).startswith("/") or not os.path.isfile(uri):
        raise StorageError(f"{uri}: not a readable file")
    return open(uri, "rb")


class _StreamingBodyIO(io.RawIOBase):
    """Adapts botocore's StreamingBody to a raw stream so it can be buffered and gunzipped."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._body.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


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
