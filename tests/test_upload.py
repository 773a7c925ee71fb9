"""Upload to a loopback S3 server (moto) with faults injected through botocore event hooks.

Every fault test ends with the same two checks: no manifest shard is missing locally without a remote copy whose
bytes hash to the manifest's sha256 (checked here by GET + hashlib, not by the code under test), and a plain
re-run completes the release. No test talks to AWS: fake credentials, loopback endpoint only.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_SECRET = "PLANTED-fake-secret-3f9c1e7a-never-log-me"
SHARDS = {
    "B/foundations_qa/train-00000-of-00002.jsonl": [{"messages": [{"role": "user", "content": "q1"}]}],
    "B/foundations_qa/train-00001-of-00002.jsonl": [{"messages": [{"role": "user", "content": "q2"}]}] * 3,
    "C/preference_alignment/test-00000-of-00001.jsonl": [{"prompt": [], "chosen": [], "rejected": []}],
}


@pytest.fixture(scope="session", autouse=True)
def fake_aws_env(tmp_path_factory):
    """Fake credentials and no AWS config files, for the whole test session of this module."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        nowhere = tmp_path_factory.mktemp("aws") / "none"
        mp.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKETESTKEY00000")
        mp.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(nowhere))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def endpoint(fake_aws_env):
    """moto's S3 server on 127.0.0.1, a free port, for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _client(endpoint: str, attempts: int = 3):
    from etl.io.s3_upload import make_client

    return make_client(endpoint, attempts, 2.0, 5.0)


def _write_release(root: Path, created_at: str = "2026-01-01T00:00:00Z", passed: bool = True) -> dict:
    """A small release: shards, croissant.json, manifest.json and a gate report for that manifest."""
    shards = []
    for rel, lines in SHARDS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        path.write_bytes(data)
        phase, stage, name = rel.split("/")
        shards.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                       "records": len(lines), "phase": phase, "stage": stage, "split": name.split("-")[0]})
    manifest = {"release_id": "rel-test0001", "created_at": created_at, "shards": shards, "tables": []}
    (root / "croissant.json").write_text(json.dumps({"name": "t", "datePublished": created_at}))
    mbytes = json.dumps(manifest, indent=2).encode()
    (root / "manifest.json").write_bytes(mbytes)
    report = {"release_id": manifest["release_id"], "passed": passed, "failed": [] if passed else ["pii"],
              "manifest_sha256": hashlib.sha256(mbytes).hexdigest()}
    (root / "gate_report.json").write_text(json.dumps(report))
    return manifest


@pytest.fixture
def setup(tmp_path, endpoint, make_config):
    """(cfg, manifest, bucket) for a fresh bucket and a fresh local release."""
    from etl.io.s3_upload import make_client

    bucket = f"rel-{uuid.uuid4().hex[:12]}"
    make_client(endpoint, 3, 2.0, 5.0).create_bucket(Bucket=bucket)
    manifest = _write_release(tmp_path / "release")
    cfg = make_config(raw_root=str(tmp_path), upload="true", release_uri=f"s3://{bucket}/releases",
                      s3_endpoint_url=endpoint, upload_settings__max_attempts=3)
    return cfg, manifest, bucket


def _key(rel: str) -> str:
    return f"releases/rel-test0001/{rel}"


def _remote_sha(client, bucket: str, rel: str) -> str | None:
    try:
        body = client.get_object(Bucket=bucket, Key=_key(rel))["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return hashlib.sha256(body).hexdigest()


def assert_nothing_lost(cfg, manifest: dict, client, bucket: str) -> None:
    """Every shard is either still local or remote with the manifest's sha256."""
    for shard in manifest["shards"]:
        local = Path(cfg.release_dir) / shard["path"]
        assert local.exists() or _remote_sha(client, bucket, shard["path"]) == shard["sha256"], shard["path"]


def assert_complete(cfg, manifest: dict, client, bucket: str) -> None:
    """The whole release is remote and correct, and the local shards are gone."""
    for shard in manifest["shards"]:
        assert _remote_sha(client, bucket, shard["path"]) == shard["sha256"], shard["path"]
        assert not (Path(cfg.release_dir) / shard["path"]).exists()
    assert _remote_sha(client, bucket, "manifest.json") is not None


def _put_counter(client, keys: list):
    def count(request, **kwargs):
        keys.append(request.url.split("/rel-test0001/", 1)[-1])
    client.meta.events.register("before-send.s3.PutObject", count)


class _Raw:
    """Enough of urllib3's response for botocore to parse an injected error."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, *args, **kwargs):
        yield self._body


def _error_response(request, status: int, code: str):
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode()
    return AWSResponse(request.url, status, {}, _Raw(body))


SECOND = "B/foundations_qa/train-00001-of-00002.jsonl"


# ------------------------------------------------------------------ the happy path


def test_upload_sends_shards_first_manifest_last_and_deletes_only_proven_shards(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint)
    puts: list = []
    _put_counter(client, puts)
    counts = upload(cfg, client)
    assert puts == sorted(SHARDS) + ["croissant.json", "gate_report.json", "manifest.json"]
    assert counts["uploaded"] == 6 and counts["deleted_local"] == 3
    assert_complete(cfg, manifest, client, bucket)
    head = client.head_object(Bucket=bucket, Key=_key(SECOND), ChecksumMode="ENABLED")
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
    upload(cfg, _client(endpoint))
    client = _client(endpoint)
    puts: list = []
    _put_counter(client, puts)
    counts = upload(cfg, client)
    assert puts == [] and counts["uploaded"] == 0 and counts["skipped"] == 6


def test_upload_false_touches_nothing(tmp_path, endpoint, make_config):
    from etl.stages.upload import run

    _write_release(tmp_path / "release")
    cfg = make_config(raw_root=str(tmp_path), upload="false", s3_endpoint_url=endpoint)
    assert run(None, cfg, "r1") == {"uploaded": 0, "upload": False}
    assert (tmp_path / "release" / SECOND).exists()


# ------------------------------------------------------------------ faults on PUT


def test_put_503_is_retried_a_bounded_number_of_times_and_the_error_names_the_object(setup, endpoint, caplog):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint, attempts=3)
    attempts: list = []

    def unavailable(request, **kwargs):
        if request.url.endswith(SECOND):
            attempts.append(1)
            return _error_response(request, 503, "SlowDown")
    client.meta.events.register("before-send.s3.PutObject", unavailable)
    caplog.set_level("DEBUG")
    with pytest.raises(StorageError) as err:
        upload(cfg, client)
    message = str(err.value)
    assert len(attempts) == 3  # upload_settings.max_attempts is the total, first try included
    assert _key(SECOND) in message and "3 attempt(s)" in message and "\n" not in message
    assert FAKE_SECRET not in message and FAKE_SECRET not in caplog.text
    assert (Path(cfg.release_dir) / SECOND).exists()
    assert _remote_sha(client, bucket, "manifest.json") is None  # nothing published while a shard is missing
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, _client(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_transient_500s_are_retried_and_the_upload_completes(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint, attempts=3)
    failures: list = []

    def flaky(request, **kwargs):
        if request.url.endswith(SECOND) and len(failures) < 2:
            failures.append(1)
            return _error_response(request, 500, "InternalError")
    client.meta.events.register("before-send.s3.PutObject", flaky)
    upload(cfg, client)
    assert len(failures) == 2
    assert_complete(cfg, manifest, client, bucket)


@pytest.mark.parametrize("fault", ["ReadTimeoutError", "ConnectionClosedError"])
def test_timeouts_and_dropped_connections_leave_the_local_file_and_rerun_completes(setup, endpoint, fault):
    import botocore.exceptions as bex

    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint, attempts=2)
    attempts: list = []

    def broken(request, **kwargs):
        if request.url.endswith(SECOND):
            attempts.append(1)
            raise getattr(bex, fault)(endpoint_url=request.url)
    client.meta.events.register("before-send.s3.PutObject", broken)
    with pytest.raises(StorageError, match=fault) as err:
        upload(cfg, client)
    assert len(attempts) == 2 and _key(SECOND) in str(err.value)
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, _client(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_a_checksum_rejected_by_the_server_is_not_retried_and_leaves_the_file(setup, endpoint):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint, attempts=3)
    attempts: list = []

    def bad_digest(request, **kwargs):  # what AWS answers when the body does not match x-amz-checksum-sha256
        if request.url.endswith(SECOND):
            attempts.append(1)
            return _error_response(request, 400, "BadDigest")
    client.meta.events.register("before-send.s3.PutObject", bad_digest)
    with pytest.raises(StorageError, match="BadDigest"):
        upload(cfg, client)
    assert len(attempts) == 1
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, _client(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_a_body_corrupted_in_flight_is_caught_by_the_read_back(setup, endpoint):
    """moto stores the client's checksum without checking the body, so only the read-back sees this."""
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint)

    def corrupt(request, **kwargs):
        if request.url.endswith(SECOND):
            body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
            request.body = bytes([body[0] ^ 0x20]) + body[1:]  # same length, one flipped bit
    client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(StorageError, match="read-back sha256") as err:
        upload(cfg, client)
    assert _key(SECOND) in str(err.value)
    assert (Path(cfg.release_dir) / SECOND).exists()
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, _client(endpoint))  # the HEAD matches but the read-back does not: sent again
    assert_complete(cfg, manifest, client, bucket)


# ------------------------------------------------------------------ lying HEAD


@pytest.mark.parametrize("lie", ["size", "checksum", "metadata"])
def test_a_head_that_disagrees_keeps_the_local_file(setup, endpoint, lie):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint)

    def liar(http_response, parsed, **kwargs):
        if http_response.url.endswith(SECOND) and "ContentLength" in parsed:
            if lie == "size":
                parsed["ContentLength"] += 1
            elif lie == "checksum":
                parsed["ChecksumSHA256"] = "AAAA" + parsed.get("ChecksumSHA256", "")[4:]
            else:
                parsed["Metadata"] = {"sha256": "0" * 64}
    client.meta.events.register("after-call.s3.HeadObject", liar)
    with pytest.raises(StorageError, match="not confirmed after PUT") as err:
        upload(cfg, client)
    assert _key(SECOND) in str(err.value)
    assert (Path(cfg.release_dir) / SECOND).exists()
    journal = (Path(cfg.release_dir) / ".upload_journal.jsonl").read_text()
    assert SECOND not in journal
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, _client(endpoint))
    assert_complete(cfg, manifest, client, bucket)


# ------------------------------------------------------------------ crashes


def test_a_crash_between_journal_and_delete_resumes_without_resending(setup, endpoint, monkeypatch):
    from etl.io import s3_upload
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup

    def crash(path):
        raise KeyboardInterrupt("killed before delete")
    monkeypatch.setattr(s3_upload, "delete_local", crash)
    with pytest.raises(KeyboardInterrupt):
        upload(cfg, _client(endpoint))
    first = min(SHARDS)
    assert (Path(cfg.release_dir) / first).exists()
    assert_nothing_lost(cfg, manifest, _client(endpoint), bucket)
    monkeypatch.undo()
    client = _client(endpoint)
    puts: list = []
    _put_counter(client, puts)
    upload(cfg, client)
    assert first not in puts  # proven by journal + HEAD, only deleted now
    assert_complete(cfg, manifest, client, bucket)


KILL_SCRIPT = """
import json, os, signal, sys
from etl.config import load_config
from etl.io import s3_upload
from etl.stages.upload import upload
point, overrides = sys.argv[1], json.loads(sys.argv[2])
cfg = load_config(None, overrides)
client = s3_upload.make_client(cfg.s3_endpoint_url, 2, 2.0, 5.0)
seen = []
def kill_on_second_put(request, **kwargs):
    seen.append(request.url)
    if len(seen) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
if point == "put":
    client.meta.events.register("before-send.s3.PutObject", kill_on_second_put)
else:
    s3_upload.delete_local = lambda path: os.kill(os.getpid(), signal.SIGKILL)
upload(cfg, client)
"""


@pytest.mark.parametrize("point", ["delete", "put"])
def test_sigkill_during_upload_loses_nothing_and_a_rerun_completes(setup, endpoint, point):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    overrides = [f"raw_root={cfg.raw_root}", f"lake_root={cfg.lake_root}", f"release_dir={cfg.release_dir}",
                 "upload=true", f"release_uri={cfg.release_uri}", f"s3_endpoint_url={endpoint}"]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, point, json.dumps(overrides)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert FAKE_SECRET not in proc.stderr
    client = _client(endpoint)
    assert_nothing_lost(cfg, manifest, client, bucket)
    assert _remote_sha(client, bucket, "manifest.json") is None
    upload(cfg, client)
    assert_complete(cfg, manifest, client, bucket)


# ------------------------------------------------------------------ refusals


def test_a_published_release_with_other_shards_is_never_overwritten(setup, endpoint):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint)
    other = {**manifest, "shards": manifest["shards"][:1]}
    client.put_object(Bucket=bucket, Key=_key("manifest.json"), Body=json.dumps(other).encode())
    with pytest.raises(StorageError, match="already published with different shards"):
        upload(cfg, client)
    assert all((Path(cfg.release_dir) / rel).exists() for rel in SHARDS)
    assert _remote_sha(client, bucket, SECOND) is None


def test_a_reexported_release_keeps_the_remote_manifest_and_sends_no_shard(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = _client(endpoint)
    upload(cfg, client)
    first_manifest = client.get_object(Bucket=bucket, Key=_key("manifest.json"))["Body"].read()
    _write_release(Path(cfg.release_dir), created_at="2026-02-02T00:00:00Z")  # same shards, new created_at
    puts: list = []
    _put_counter(client, puts)
    counts = upload(cfg, client)
    assert puts == ["gate_report.json"] and counts["kept_remote"] == 2
    assert client.get_object(Bucket=bucket, Key=_key("manifest.json"))["Body"].read() == first_manifest
    assert_complete(cfg, manifest, client, bucket)


def test_failed_or_stale_gate_report_blocks_upload(setup, endpoint):
    from etl.cli import GateFailure
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    _write_release(Path(cfg.release_dir), passed=False)
    with pytest.raises(GateFailure, match="gates failed"):
        upload(cfg, _client(endpoint))
    _write_release(Path(cfg.release_dir))
    (Path(cfg.release_dir) / "manifest.json").write_text(json.dumps({**manifest, "created_at": "changed"}))
    with pytest.raises(GateFailure, match="another manifest"):
        upload(cfg, _client(endpoint))
    assert _remote_sha(_client(endpoint), bucket, SECOND) is None


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
