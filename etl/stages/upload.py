"""upload: send a verified release to `release_uri` (shards first, manifest last), deleting only proven shards.

Refuses a release whose `gate_report.json` is missing, failed, or written for another manifest (verify blocks
upload even when the stage is run on its own). `upload=false` returns without touching object storage. The boto3
work lives in `etl.io.s3_upload`; this module plans the items and wires the conf. Credentials come from boto3's
usual chain and are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re

from pyspark.sql import SparkSession

from etl.cli import GateFailure
from etl.config import Config
from etl.io import release, s3_upload
from etl.io.s3_upload import (
    ROLE_MANIFEST,
    ROLE_META,
    ROLE_REPORT,
    ROLE_SHARD,
    UploadItem,
)

log = logging.getLogger(__name__)


def check_gate_report(release_dir: str, manifest: dict) -> dict:
    """The gate report, if it passed for exactly this manifest; GateFailure otherwise."""
    path = os.path.join(release_dir, release.GATE_REPORT_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, json.JSONDecodeError):
        raise GateFailure(f"{path}: no readable gate report; run verify before upload") from None
    sha, _ = release.file_sha256(release.manifest_path(release_dir))
    if report.get("manifest_sha256") != sha or report.get("release_id") != manifest.get("release_id"):
        raise GateFailure(f"{path}: written for another manifest; run verify on this release before upload")
    if report.get("passed") is not True:
        raise GateFailure(f"{path}: gates failed ({', '.join(report.get('failed') or [])}); upload blocked")
    return report


def _item(release_dir: str, rel: str, role: str, sha256: str | None = None, size: int | None = None) -> UploadItem:
    local = release.local_path(release_dir, rel)
    if sha256 is None:
        sha256, size = release.file_sha256(local)
    if not re.fullmatch(r"[0-9a-f]{64}", str(sha256)) or not isinstance(size, int) or size < 0:
        raise release.ReleaseError(f"manifest shard {rel}: sha256/bytes missing or malformed; re-run export")
    return UploadItem(rel=rel, local=local, sha256=str(sha256), size=int(size), role=role)


def plan(release_dir: str, manifest: dict) -> list[UploadItem]:
    """Every object of the release: the manifest's shards (as the manifest states them), metadata, manifest."""
    items = [_item(release_dir, s.get("path"), ROLE_SHARD, s.get("sha256") or "", s.get("bytes"))
             for s in manifest.get("shards", [])]
    if os.path.isfile(os.path.join(release_dir, release.CROISSANT_FILE)):
        items.append(_item(release_dir, release.CROISSANT_FILE, ROLE_META))
    items.append(_item(release_dir, release.GATE_REPORT_FILE, ROLE_REPORT))
    items.append(_item(release_dir, release.MANIFEST_FILE, ROLE_MANIFEST))
    return items


def prune_empty_dirs(release_dir: str) -> None:
    """Remove shard folders left empty by the upload (never the release root itself)."""
    for dirpath, _, _ in sorted(os.walk(release_dir), key=lambda w: -len(w[0])):
        if os.path.realpath(dirpath) != os.path.realpath(release_dir) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def read_back_enabled(cfg: Config) -> bool:
    """upload_settings.verify_read: auto reads back only from a custom endpoint (AWS checks checksums itself)."""
    mode = cfg.upload_settings.verify_read
    return mode == "always" or (mode == "auto" and bool(cfg.s3_endpoint_url))


def upload(cfg: Config, client=None) -> dict:
    """Upload the release in cfg.release_dir to cfg.release_uri (client: a boto3 S3 client, default from conf)."""
    manifest = release.read_manifest(cfg.release_dir)
    check_gate_report(cfg.release_dir, manifest)
    target = s3_upload.release_target(cfg.release_uri, manifest.get("release_id"))
    items = plan(cfg.release_dir, manifest)
    settings = cfg.upload_settings
    client = client or s3_upload.make_client(cfg.s3_endpoint_url, settings.max_attempts, settings.connect_timeout,
                                             settings.read_timeout)
    attempts = (getattr(client.meta.config, "retries", None) or {}).get("total_max_attempts", settings.max_attempts)
    journal = s3_upload.Journal(os.path.join(cfg.release_dir, release.JOURNAL_FILE))
    up = s3_upload.Uploader(client, target, journal, read_back_enabled(cfg), attempts)
    counts = s3_upload.upload_release(up, items, manifest)
    prune_empty_dirs(cfg.release_dir)
    return {"release_id": manifest.get("release_id"), "objects": len(items), **counts,
            "release_uri": f"s3://{target.bucket}/{target.prefix}/"}


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Stage entry point: nothing when upload=false, else `upload(cfg)`."""
    if not cfg.upload:
        log.info("upload=false: release left in %s", cfg.release_dir)
        return {"uploaded": 0, "upload": False}
    return upload(cfg)
