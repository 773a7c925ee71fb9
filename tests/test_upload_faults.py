"""Upload under faults injected through botocore event hooks (5xx, timeouts, dropped connections, a rejected or
corrupted body, a lying HEAD, crashes and SIGKILL): nothing is lost and a plain re-run completes the release."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from upload_support import (  # noqa: F401 - the fixtures are used by name
    FAKE_SECRET, REPO, SECOND, SHARDS, assert_complete, assert_nothing_lost, count_puts, endpoint,
    error_response, fail_puts_of, fake_aws_env, release_key, remote_sha, s3_client_for, setup,
)


# ------------------------------------------------------------------ faults on PUT


def test_put_503_is_retried_a_bounded_number_of_times_and_the_error_names_the_object(setup, endpoint, caplog):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint, attempts=3)
    attempts = fail_puts_of(client, SECOND, lambda request: error_response(request, 503, "SlowDown"))
    caplog.set_level("DEBUG")
    with pytest.raises(StorageError) as err:
        upload(cfg, client)
    message = str(err.value)
    assert len(attempts) == 3  # upload_settings.max_attempts is the total, first try included
    assert release_key(SECOND) in message and "3 attempt(s)" in message and "\n" not in message
    assert FAKE_SECRET not in message and FAKE_SECRET not in caplog.text
    assert (Path(cfg.release_dir) / SECOND).exists()
    assert remote_sha(client, bucket, "manifest.json") is None  # nothing published while a shard is missing
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, s3_client_for(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_transient_500s_are_retried_and_the_upload_completes(setup, endpoint):
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint, attempts=3)
    failures = fail_puts_of(client, SECOND, lambda request: error_response(request, 500, "InternalError"), times=2)
    upload(cfg, client)
    assert len(failures) == 2
    assert_complete(cfg, manifest, client, bucket)


@pytest.mark.parametrize("fault", ["ReadTimeoutError", "ConnectionClosedError"])
def test_timeouts_and_dropped_connections_leave_the_local_file_and_rerun_completes(setup, endpoint, fault):
    import botocore.exceptions as bex

    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint, attempts=2)

    def broken(request):
        raise getattr(bex, fault)(endpoint_url=request.url)
    attempts = fail_puts_of(client, SECOND, broken)
    with pytest.raises(StorageError, match=fault) as err:
        upload(cfg, client)
    assert len(attempts) == 2 and release_key(SECOND) in str(err.value)
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, s3_client_for(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_a_checksum_rejected_by_the_server_is_not_retried_and_leaves_the_file(setup, endpoint):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint, attempts=3)
    # what AWS answers when the body does not match x-amz-checksum-sha256
    attempts = fail_puts_of(client, SECOND, lambda request: error_response(request, 400, "BadDigest"))
    with pytest.raises(StorageError, match="BadDigest"):
        upload(cfg, client)
    assert len(attempts) == 1
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, s3_client_for(endpoint))
    assert_complete(cfg, manifest, client, bucket)


def test_a_body_corrupted_in_flight_is_caught_by_the_read_back(setup, endpoint):
    """moto stores the client's checksum without checking the body, so only the read-back sees this."""
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint)

    def corrupt(request, **kwargs):
        if request.url.endswith(SECOND):
            body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
            request.body = bytes([body[0] ^ 0x20]) + body[1:]  # same length, one flipped bit
    client.meta.events.register("before-send.s3.PutObject", corrupt)
    with pytest.raises(StorageError, match="read-back sha256") as err:
        upload(cfg, client)
    assert release_key(SECOND) in str(err.value)
    assert (Path(cfg.release_dir) / SECOND).exists()
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, s3_client_for(endpoint))  # the HEAD matches but the read-back does not: sent again
    assert_complete(cfg, manifest, client, bucket)


# ------------------------------------------------------------------ lying HEAD


@pytest.mark.parametrize("lie", ["size", "checksum", "metadata"])
def test_a_head_that_disagrees_keeps_the_local_file(setup, endpoint, lie):
    from etl.io.objects import StorageError
    from etl.stages.upload import upload

    cfg, manifest, bucket = setup
    client = s3_client_for(endpoint)

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
    assert release_key(SECOND) in str(err.value)
    assert (Path(cfg.release_dir) / SECOND).exists()
    journal = (Path(cfg.release_dir) / ".upload_journal.jsonl").read_text()
    assert SECOND not in journal
    assert_nothing_lost(cfg, manifest, client, bucket)
    upload(cfg, s3_client_for(endpoint))
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
        upload(cfg, s3_client_for(endpoint))
    first = min(SHARDS)
    assert (Path(cfg.release_dir) / first).exists()
    assert_nothing_lost(cfg, manifest, s3_client_for(endpoint), bucket)
    monkeypatch.undo()
    client = s3_client_for(endpoint)
    puts: list = []
    count_puts(client, puts)
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
    client = s3_client_for(endpoint)
    assert_nothing_lost(cfg, manifest, client, bucket)
    assert remote_sha(client, bucket, "manifest.json") is None
    upload(cfg, client)
    assert_complete(cfg, manifest, client, bucket)
