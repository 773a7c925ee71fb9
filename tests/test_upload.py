"""Upload to a loopback S3 server (moto): the happy path, reruns, and the refusals (a published release, a
failed gate report, keys outside the prefix). Faults: test_upload_faults.py; fixtures: upload_support.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from upload_support import (  # noqa: F401 - the fixtures are used by name
    SECOND, SHARDS, assert_complete, count_puts, endpoint, fake_aws_env, release_key, remote_sha, s3_client_for,
    setup, write_release,
)


# ------------------------------------------------------------------ the happy path


def test_upload_sends_shards_first_manifest_last_and_deletes_only_proven_shards(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint)
    puts: list = []
    count_puts(client, puts)
    counts = upload(cfg, client)
    assert puts == sorted(SHARDS) + ["croissant.json", "gate_report.json", "manifest.json"]
    assert counts["uploaded"] == 6 and counts["deleted_local"] == 3
    assert_complete(cfg, manifest, client, bucket)
    head = client.head_object(Bucket=bucket, Key=release_key(SECOND), ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == manifest["shards"][1]["sha256"]
    assert head["ChecksumSHA256"]
    for kept in ("manifest.json", "croissant.json", "gate_report.json"):
        assert (Path(cfg.release_dir) / kept).exists()
    journal = (Path(cfg.release_dir) / ".upload_journal.jsonl").read_text().splitlines()
    assert len(journal) == 6
    assert not (Path(cfg.release_dir) / "B").exists()  # emptied shard folders are pruned


def test_rerun_after_a_complete_upload_sends_nothing(setup, endpoint):
    from etl.stages.upload import upload

    cfg, _, _ = setup
    upload(cfg, s3_client_for(endpoint))
    client = s3_client_for(endpoint)
    puts: list = []
    count_puts(client, puts)
    counts = upload(cfg, client)
    assert puts == [] and counts["uploaded"] == 0 and counts["skipped"] == 6


def test_upload_false_touches_nothing(tmp_path, endpoint, make_config):
    from etl.stages.upload import run

    write_release(tmp_path / "release")
    cfg = make_config(raw_root=str(tmp_path), upload="false", s3_endpoint_url=endpoint)
    assert run(None, cfg, "r1") == {"uploaded": 0, "upload": False}
    assert (tmp_path / "release" / SECOND).exists()



# ------------------------------------------------------------------ refusals


def test_a_published_release_with_other_shards_is_never_overwritten(setup, endpoint):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint)
    other = {**manifest, "shards": manifest["shards"][:1]}
    client.put_object(Bucket=bucket, Key=release_key("manifest.json"), Body=json.dumps(other).encode())
    with pytest.raises(StorageError, match="already published with different shards"):
        upload(cfg, client)
    assert all((Path(cfg.release_dir) / rel).exists() for rel in SHARDS)
    assert remote_sha(client, bucket, SECOND) is None


def test_a_reexported_release_keeps_the_remote_manifest_and_sends_no_shard(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint)
    upload(cfg, client)
    first_manifest = client.get_object(Bucket=bucket, Key=release_key("manifest.json"))["Body"].read()
    write_release(Path(cfg.release_dir), created_at="2026-02-02T00:00:00Z")  # same shards, new created_at
    puts: list = []
    count_puts(client, puts)
    counts = upload(cfg, client)
    assert puts == ["gate_report.json"] and counts["kept_remote"] == 2
    assert client.get_object(Bucket=bucket, Key=release_key("manifest.json"))["Body"].read() == first_manifest
    assert_complete(cfg, manifest, client, bucket)


def test_failed_or_stale_gate_report_blocks_upload(setup, endpoint):
    from etl.cli import GateFailure
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    write_release(Path(cfg.release_dir), passed=False)
    with pytest.raises(GateFailure, match="gates failed"):
        upload(cfg, s3_client_for(endpoint))
    write_release(Path(cfg.release_dir))
    (Path(cfg.release_dir) / "manifest.json").write_text(json.dumps({**manifest, "created_at": "changed"}))
    with pytest.raises(GateFailure, match="another manifest"):
        upload(cfg, s3_client_for(endpoint))
    assert remote_sha(s3_client_for(endpoint), bucket, SECOND) is None


def test_release_keys_cannot_leave_the_configured_prefix(tmp_path):
    from etl.io.objects import StorageError
    from etl.io.release import ReleaseError
    from etl.io.s3_upload import release_target
    from etl.stages.upload import plan

    target = release_target("s3://bucket/releases/", "rel-1")
    assert target.key("B/s/train-00000-of-00001.jsonl") == "releases/rel-1/B/s/train-00000-of-00001.jsonl"
    for bad in ("../x.jsonl", "/etc/passwd", "B/../../x", "B//x", "B\\x"):
        with pytest.raises(StorageError):
            target.key(bad)
    for bad_id in ("../up", "a/b", "", ".."):
        with pytest.raises(StorageError):
            release_target("s3://bucket/releases", bad_id)
    with pytest.raises(StorageError):
        release_target("s3://bucket/a/../b", "rel-1")
    shard = {"path": "../../outside.jsonl", "sha256": "0" * 64, "bytes": 1}
    with pytest.raises(ReleaseError):
        plan(str(tmp_path), {"release_id": "rel-1", "shards": [shard]})


# ------------------------------------------------------------------ pure parts


def test_remote_problems_names_each_disagreement():
    from etl.io.s3_upload import UploadItem, b64_sha256, remote_problems

    sha = hashlib.sha256(b"abc").hexdigest()
    item = UploadItem("a.jsonl", "/nowhere", sha, 3)
    good = {"ContentLength": 3, "ChecksumSHA256": b64_sha256(sha), "Metadata": {"sha256": sha}}
    assert remote_problems(good, item) == []
    assert remote_problems(None, item) == ["no remote object"]
    assert remote_problems({**good, "ContentLength": 4}, item) == ["HEAD size 4 != local 3"]
    assert remote_problems({"ContentLength": 3, "Metadata": {"sha256": sha}}, item) == [
        "HEAD returned no SHA256 checksum"]


def test_journal_ignores_a_line_cut_short_by_a_crash(tmp_path):
    from etl.io.s3_upload import Journal

    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"key": "k1", "sha256": "aa"}) + "\n" + '{"key": "k2", "sha2')
    journal = Journal(str(path))
    assert journal.verified("k1", "aa") and not journal.verified("k2", "bb")
