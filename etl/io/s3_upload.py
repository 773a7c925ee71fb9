"""Verified upload of one release to S3 or an S3-compatible server (boto3; endpoint from conf).

Per object: PUT with a SHA-256 checksum (`ChecksumAlgorithm`, the value precomputed, and the hex digest as
metadata `sha256`), then proof by `head_object(ChecksumMode="ENABLED")` (size, checksum, metadata), optionally a
read-back hash, then one journal line (append + fsync), and only then is the local file deleted. Anything
unproven raises StorageError naming the object and leaves the local file. Re-running skips what is proven
(journal + HEAD) and finds copies an interrupted run sent but never journaled (HEAD before PUT).

Why a read-back: AWS S3 rejects a body that does not match the sent checksum (BadDigest), so its HEAD checksum
is proof; some S3-compatible servers (moto among them) store the client's checksum without checking it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from etl.io.objects import StorageError, split_s3
from etl.io.release import file_sha256, is_safe_relpath

log = logging.getLogger(__name__)

SHA256_METADATA = "sha256"
ROLE_SHARD, ROLE_META, ROLE_REPORT, ROLE_MANIFEST = "shard", "meta", "report", "manifest"
_RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTENT_TYPES = {".gz": "application/gzip", ".jsonl": "application/x-ndjson", ".json": "application/json"}


@dataclass(frozen=True)
class Target:
    """Where one release goes: `s3://<bucket>/<prefix>/<release_id>/<rel>`."""

    bucket: str
    prefix: str  # configured prefix + release id, no trailing slash

    def key(self, rel: str) -> str:
        """Object key of a release-relative path; StorageError for a path that would leave the prefix."""
        if not is_safe_relpath(rel):
            raise StorageError(f"{rel!r}: release path is not a safe relative path; refusing to upload it")
        return f"{self.prefix}/{rel}"

    def uri(self, rel: str) -> str:
        """`s3://bucket/key` of a release-relative path (for messages)."""
        return f"s3://{self.bucket}/{self.key(rel)}"


@dataclass(frozen=True)
class UploadItem:
    """One local file of the release and what the manifest says it must be."""

    rel: str
    local: str
    sha256: str
    size: int
    role: str = ROLE_SHARD

    @property
    def delete_after(self) -> bool:
        """Shards are deleted once proven; metadata files stay for the report stage and for humans."""
        return self.role == ROLE_SHARD


def release_target(release_uri: str, release_id: str) -> Target:
    """Target for a release under `release_uri`; keys can never leave the configured prefix."""
    bucket, prefix = split_s3(release_uri)
    prefix = prefix.strip("/")
    if not bucket or not release_uri.startswith(("s3://", "s3a://")):
        raise StorageError(f"release_uri {release_uri!r}: expected s3://bucket/prefix")
    if prefix and not is_safe_relpath(prefix):
        raise StorageError(f"release_uri {release_uri!r}: prefix must not contain '..', '.' or empty parts")
    if not isinstance(release_id, str) or not _RELEASE_ID.fullmatch(release_id) or ".." in release_id:
        raise StorageError(f"manifest release_id {release_id!r}: not a safe key part (letters, digits, ._-)")
    return Target(bucket, f"{prefix}/{release_id}" if prefix else release_id)


def make_client(endpoint_url: str, max_attempts: int, connect_timeout: float, read_timeout: float):
    """boto3 S3 client; `max_attempts` is the total per request (botocore standard retry mode, bounded)."""
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(retries={"mode": "standard", "total_max_attempts": max_attempts},
                     connect_timeout=connect_timeout, read_timeout=read_timeout,
                     request_checksum_calculation="when_supported", response_checksum_validation="when_supported")
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=cfg)


def b64_sha256(hexdigest: str) -> str:
    """The base64 form S3 uses for ChecksumSHA256."""
    return base64.b64encode(bytes.fromhex(hexdigest)).decode("ascii")


def remote_problems(head: dict | None, item: UploadItem) -> list[str]:
    """Why a HEAD response does not prove the object is `item` (empty list: proven)."""
    if head is None:
        return ["no remote object"]
    problems = []
    if head.get("ContentLength") != item.size:
        problems.append(f"HEAD size {head.get('ContentLength')} != local {item.size}")
    checksum = head.get("ChecksumSHA256")
    if checksum != b64_sha256(item.sha256):
        problems.append("HEAD returned no SHA256 checksum" if checksum is None
                        else f"HEAD checksum {checksum} != local {b64_sha256(item.sha256)}")
    if (head.get("Metadata") or {}).get(SHA256_METADATA) != item.sha256:
        problems.append("HEAD sha256 metadata differs from the local file")
    return problems


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Journal:
    """`.upload_journal.jsonl`: one JSON line per verified object, appended and fsynced before any delete."""

    def __init__(self, path: str):
        self.path = path
        self.entries: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash proves nothing; HEAD decides
                    if isinstance(entry, dict) and "key" in entry:
                        self.entries[entry["key"]] = entry

    def verified(self, key: str, sha256: str) -> bool:
        """True when the journal holds a proof for `key` with this sha256."""
        return self.entries.get(key, {}).get("sha256") == sha256

    def record(self, key: str, item: UploadItem) -> None:
        """Append one proof line and fsync it (before the caller deletes anything)."""
        entry = {"key": key, "path": item.rel, "sha256": item.sha256, "bytes": item.size,
                 "verified_at": datetime.now(timezone.utc).isoformat()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries[key] = entry


def delete_local(path: str) -> None:
    """Remove a local file whose remote copy is proven and journaled (a seam for crash tests)."""
    os.remove(path)


class Uploader:
    """Sends items to one target and proves each; the one place that talks to S3 for a release."""

    def __init__(self, client, target: Target, journal: Journal, read_back: bool, max_attempts: int):
        self.client, self.target, self.journal = client, target, journal
        self.read_back, self.max_attempts = read_back, max_attempts

    def _fail(self, rel: str, what: str, exc: BaseException, local: str | None = None) -> StorageError:
        attempts = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("RetryAttempts")
        tries = f"{attempts + 1} attempt(s)" if isinstance(attempts, int) else f"up to {self.max_attempts} attempt(s)"
        kept = f"; local file kept at {local}" if local else ""
        return StorageError(f"{self.target.uri(rel)}: {what} failed after {tries} ({_short(exc)}){kept}; "
                            "re-run upload")

    def head(self, rel: str) -> dict | None:
        """HEAD with checksum mode; None when the object does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(Bucket=self.target.bucket, Key=self.target.key(rel), ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(rel, "HEAD", exc) from None
        except BotoCoreError as exc:
            raise self._fail(rel, "HEAD", exc) from None

    def get_bytes(self, rel: str) -> bytes | None:
        """A small object's bytes (the remote manifest); None when absent."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.target.bucket, Key=self.target.key(rel))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(rel, "GET", exc) from None
        except BotoCoreError as exc:
            raise self._fail(rel, "GET", exc) from None

    def remote_sha256(self, rel: str) -> str:
        """sha256 hex of the remote object's bytes, streamed (the read-back proof); "" when botocore finds the
        body does not match the stored checksum (a corrupt copy, not a failed read)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            FlexibleChecksumError,
        )

        digest = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.target.bucket, Key=self.target.key(rel))["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                digest.update(chunk)
        except FlexibleChecksumError:
            return ""
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(rel, "read-back GET", exc) from None
        return digest.hexdigest()

    def confirm(self, item: UploadItem) -> list[str]:
        """Why the remote object is not proven to be `item` (empty: proven by HEAD and, if on, read-back)."""
        problems = remote_problems(self.head(item.rel), item)
        if not problems and self.read_back:
            actual = self.remote_sha256(item.rel)
            if actual != item.sha256:
                problems.append(f"read-back sha256 {actual[:16] or '(body fails its stored checksum)'} != local "
                                f"{item.sha256[:16]}...")
        return problems

    def put(self, item: UploadItem) -> None:
        """PUT with a SHA-256 checksum; the manifest only if absent (412 is left to `confirm`)."""
        from botocore.exceptions import BotoCoreError, ClientError

        ext = ".gz" if item.rel.endswith(".gz") else os.path.splitext(item.rel)[1]
        kwargs = {"Bucket": self.target.bucket, "Key": self.target.key(item.rel), "ContentLength": item.size,
                  "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64_sha256(item.sha256),
                  "Metadata": {SHA256_METADATA: item.sha256},
                  "ContentType": _CONTENT_TYPES.get(ext, "application/octet-stream")}
        if item.role == ROLE_MANIFEST:
            kwargs["IfNoneMatch"] = "*"
        try:
            with open(item.local, "rb") as body:
                self.client.put_object(Body=body, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if item.role == ROLE_MANIFEST and status == 412:
                log.info("%s: already exists; checking it is this release's", self.target.uri(item.rel))
                return
            raise self._fail(item.rel, "PUT", exc, item.local) from None
        except (BotoCoreError, OSError) as exc:
            raise self._fail(item.rel, "PUT", exc, item.local) from None

    def _proven(self, item: UploadItem) -> None:
        """Journal the proven object (fsync), then delete the local file if it is a shard."""
        key = self.target.key(item.rel)
        if not self.journal.verified(key, item.sha256):
            self.journal.record(key, item)
        if item.delete_after and os.path.exists(item.local):
            delete_local(item.local)

    def send(self, item: UploadItem) -> str:
        """Make `item` remote and proven; 'skipped' when it already was, else 'uploaded'. Raises when unproven."""
        uri = self.target.uri(item.rel)
        have_local = os.path.isfile(item.local)
        if self.journal.verified(self.target.key(item.rel), item.sha256) or not have_local:
            problems = self.confirm(item)
            if not problems:
                self._proven(item)
                return "skipped"
            if not have_local:
                raise StorageError(f"{uri}: local file {item.local} is gone and the remote copy is not proven "
                                   f"({problems[0]}); re-export the release, then re-run upload")
        sha, size = file_sha256(item.local)
        if (sha, size) != (item.sha256, item.size):
            raise StorageError(f"{item.local}: sha256/bytes differ from the manifest; re-run export and verify")
        before = self.confirm(item)
        if not before:  # sent by an interrupted run, never journaled
            self._proven(item)
            return "skipped"
        if item.role == ROLE_MANIFEST and before != ["no remote object"]:
            raise StorageError(f"{uri}: a different manifest is already published ({before[0]}); "
                               "a release is never overwritten: set release_id for a new release")
        self.put(item)
        problems = self.confirm(item)
        if problems:
            raise StorageError(f"{uri}: not confirmed after PUT ({'; '.join(problems)}); local file kept at "
                               f"{item.local}; re-run upload")
        self._proven(item)
        return "uploaded"


def shard_table(manifest: dict) -> list[tuple]:
    """(path, sha256, bytes, records) of every shard: what makes two manifests the same release."""
    return sorted((s.get("path"), s.get("sha256"), s.get("bytes"), s.get("records")) for s in manifest.get("shards", []))


def published_manifest(up: Uploader, item: UploadItem, local: dict) -> dict | None:
    """The remote manifest if this release is already published (same shards); raise if it differs."""
    raw = up.get_bytes(item.rel)
    if raw is None:
        return None
    try:
        remote = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StorageError(f"{up.target.uri(item.rel)}: remote manifest is not JSON; inspect it by hand") from None
    if remote.get("release_id") != local.get("release_id") or shard_table(remote) != shard_table(local):
        raise StorageError(f"{up.target.uri(item.rel)}: release {local.get('release_id')} is already published "
                           "with different shards; refusing to overwrite (set release_id for a new release)")
    return remote


def upload_release(up: Uploader, items: list[UploadItem], manifest: dict) -> dict:
    """Shards first, metadata next, manifest last; a published release keeps its remote manifest and Croissant."""
    manifest_item = next(i for i in items if i.role == ROLE_MANIFEST)
    published = published_manifest(up, manifest_item, manifest) is not None
    counts = {"uploaded": 0, "skipped": 0, "kept_remote": 0, "deleted_local": 0}
    for role in (ROLE_SHARD, ROLE_META, ROLE_REPORT, ROLE_MANIFEST):
        for item in sorted((i for i in items if i.role == role), key=lambda i: i.rel):
            if published and role in (ROLE_META, ROLE_MANIFEST) and up.confirm(item):
                log.info("%s: release already published; keeping the remote copy", up.target.uri(item.rel))
                counts["kept_remote"] += 1
                continue
            existed = os.path.exists(item.local)
            counts[up.send(item)] += 1
            counts["deleted_local"] += int(item.delete_after and existed and not os.path.exists(item.local))
    log.info("release %s: %s -> s3://%s/%s", manifest.get("release_id"), json.dumps(counts), up.target.bucket,
             up.target.prefix)
    return counts
