"""Shared fixtures and checks of the upload tests (test_upload.py, test_upload_faults.py).

A loopback S3 server (moto) with fake credentials; faults are injected through botocore event hooks. Every fault
test ends with the same two checks: no manifest shard is missing locally without a remote copy whose bytes hash to
the manifest's sha256 (checked here by GET + hashlib, not by the code under test), and a plain re-run completes the
release. No test talks to AWS: fake credentials, loopback endpoint only. Import the fixtures a module uses:
`from upload_support import endpoint, fake_aws_env, setup  # noqa: F401`.
"""

from __future__ import annotations

import hashlib
import json
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
    """Fake credentials and no AWS config files, for the rest of the test session."""
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


def s3_client_for(endpoint: str, attempts: int = 3):
    from etl.io.s3_upload import make_client

    return make_client(endpoint, attempts, 2.0, 5.0)


def write_release(root: Path, created_at: str = "2026-01-01T00:00:00Z", passed: bool = True) -> dict:
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
    manifest = write_release(tmp_path / "release")
    cfg = make_config(raw_root=str(tmp_path), upload="true", release_uri=f"s3://{bucket}/releases",
                      s3_endpoint_url=endpoint, upload_settings__max_attempts=3)
    return cfg, manifest, bucket


def release_key(rel: str) -> str:
    return f"releases/rel-test0001/{rel}"


def remote_sha(client, bucket: str, rel: str) -> str | None:
    try:
        body = client.get_object(Bucket=bucket, Key=release_key(rel))["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return hashlib.sha256(body).hexdigest()


def assert_nothing_lost(cfg, manifest: dict, client, bucket: str) -> None:
    """Every shard is either still local or remote with the manifest's sha256."""
    for shard in manifest["shards"]:
        local = Path(cfg.release_dir) / shard["path"]
        assert local.exists() or remote_sha(client, bucket, shard["path"]) == shard["sha256"], shard["path"]


def assert_complete(cfg, manifest: dict, client, bucket: str) -> None:
    """The whole release is remote and correct, and the local shards are gone."""
    for shard in manifest["shards"]:
        assert remote_sha(client, bucket, shard["path"]) == shard["sha256"], shard["path"]
        assert not (Path(cfg.release_dir) / shard["path"]).exists()
    assert remote_sha(client, bucket, "manifest.json") is not None


def count_puts(client, keys: list):
    def count(request, **kwargs):
        keys.append(request.url.split("/rel-test0001/", 1)[-1])
    client.meta.events.register("before-send.s3.PutObject", count)


class _Raw:
    """Enough of urllib3's response for botocore to parse an injected error."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, *args, **kwargs):
        yield self._body


def error_response(request, status: int, code: str):
    from botocore.awsrequest import AWSResponse

    body = f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>".encode()
    return AWSResponse(request.url, status, {}, _Raw(body))


SECOND = "B/foundations_qa/train-00001-of-00002.jsonl"


def fail_puts_of(client, rel: str, fault, times: int | None = None) -> list:
    """Every PUT of `rel` (the first `times` only, when given) answered by `fault(request)`: an injected response,
    or an exception it raises. Returns the list of faulted attempts, one entry each."""
    attempts: list = []

    def hook(request, **kwargs):
        if request.url.endswith(rel) and (times is None or len(attempts) < times):
            attempts.append(1)
            return fault(request)
    client.meta.events.register("before-send.s3.PutObject", hook)
    return attempts
