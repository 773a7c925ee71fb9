"""Credentials never leak: planted fake AWS keys (environment, conf values, URL userinfo) appear in no log line,
exception message, Delta userMetadata, table, report or manifest; release keys stay under their prefix; the
manifest records no local absolute path."""

from __future__ import annotations

import functools
import json
import logging
import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.io import objects

REPO = Path(__file__).resolve().parents[1]
ENV_KEY_ID = "AKIAPLANTEDFAKE12345"
ENV_SECRET = "plantedSecretKeyValue/0123456789+abcdefgh"
ENV_TOKEN = "IQoJb3JpZ2luX2VjEPLANTEDSESSIONTOKEN0123456789"
URL_KEY_ID = "AKIAUSERINFOPLANT001"
URL_SECRET = "userinfo-planted-secret-value"
CONF_SECRET = "conf-planted-secret-9f8e7d6c5b4a"
SECRETS = (ENV_KEY_ID, ENV_SECRET, ENV_TOKEN, URL_KEY_ID, URL_SECRET, CONF_SECRET)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def no_retries(monkeypatch):
    """An unreachable endpoint fails at once instead of after botocore's backoff (the messages are the same)."""
    monkeypatch.setattr(objects, "s3_client", functools.partial(objects.s3_client, max_attempts=0))


@pytest.fixture
def planted_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ENV_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ENV_TOKEN)


@pytest.mark.parametrize("text, clean", [
    (f"endpoint http://{URL_KEY_ID}:{URL_SECRET}@127.0.0.1:9/x", "endpoint http://***@127.0.0.1:9/x"),
    (f'{{"aws_secret_access_key": "{CONF_SECRET}", "n": 1}}', '{"aws_secret_access_key": "***", "n": 1}'),
    (f"key {ENV_KEY_ID} secret={ENV_SECRET}", "key *** secret=***"),
    ("s3://bucket/prefix/key.jsonl and a@b.org stay", "s3://bucket/prefix/key.jsonl and a@b.org stay"),
])
def test_redaction_masks_key_ids_secret_values_and_url_userinfo(planted_env, text, clean):
    assert objects.redact_secrets(text) == clean


def test_log_filter_masks_secrets_in_messages_args_and_tracebacks(planted_env, capsys):
    from etl.cli import setup_logging

    setup_logging()
    log = logging.getLogger("etl.test_secrets")
    log.info("config %s", json.dumps({"s3_endpoint_url": f"http://{URL_KEY_ID}:{URL_SECRET}@h:1"}))
    try:
        raise RuntimeError(f"boom with {ENV_SECRET} and token={ENV_TOKEN}")
    except RuntimeError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "***" in err and leaks(err) == []


def test_unreachable_store_error_names_the_object_but_not_the_credentials(planted_env, no_retries):
    endpoint = f"http://{URL_KEY_ID}:{URL_SECRET}@127.0.0.1:9"
    with pytest.raises(objects.StorageError) as listing:
        list(objects.list_s3("s3://raw-bucket/prefix", endpoint))
    with pytest.raises(objects.StorageError) as reading:
        objects.open_object("s3://raw-bucket/prefix/a.jsonl", endpoint, max_attempts=1)
    for exc in (listing.value, reading.value):
        assert "s3://raw-bucket/prefix" in str(exc) and leaks(str(exc)) == []


def _table_text(spark, path: str) -> str:
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(path)
    return "\n".join(r[0] for r in df.select(F.to_json(F.struct(*df.columns))).collect())


def test_a_cli_run_with_planted_credentials_leaks_them_nowhere(spark, planted_env, no_retries, tmp_path, capsys):
    from etl.cli import EXIT_STORAGE, main
    from etl.io.local_s3 import local_s3
    from etl.sample_data import write_sample

    raw = tmp_path / "raw"
    write_sample(str(raw))
    lake = tmp_path / "lake"
    base = ["--conf", str(REPO / "conf" / "sample.yaml"), "--set", f"lake_root={lake}",
            "--set", f"release_dir={tmp_path / 'release'}", "--set", "database=secrets_test",
            "--set", f"families.support_chat.options.aws_secret_access_key={CONF_SECRET}"]
    with local_s3(("s3://raw-bucket/prefix",)) as endpoint:
        with_userinfo = endpoint.replace("http://", f"http://{URL_KEY_ID}:{URL_SECRET}@")
        code = main(["run", "--to-stage", "ingest", "-v", *base, "--set", f"raw_root={raw}",
                     "--set", f"s3_endpoint_url={with_userinfo}"])
    assert code == 0
    dead = f"http://{URL_KEY_ID}:{URL_SECRET}@127.0.0.1:9"
    failed = main(["inventory", "-v", *base, "--set", "raw_root=s3://raw-bucket/prefix",
                   "--set", f"s3_endpoint_url={dead}"])
    assert failed == EXIT_STORAGE
    err = capsys.readouterr().err
    assert "s3_endpoint_url" in err and "storage error: s3://raw-bucket/prefix/" in err
    assert leaks(err) == []  # logs, incl. the resolved config and the storage error
    files = [p for p in lake.rglob("*") if p.is_file() and not p.name.endswith(".parquet")]
    assert any("_delta_log" in str(p) for p in files) and any(p.suffix == ".json" for p in files)
    for path in files:  # Delta logs (userMetadata, commit info), reports, lock file
        assert leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    for table in ("inventory", "conversations", "quarantine", "pii_findings"):
        assert leaks(_table_text(spark, str(lake / table))) == [], table


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(rel=st.lists(st.sampled_from(["..", ".", "", "a", "b c", "ü", "x.jsonl", "/", "\\", "..."]), min_size=1,
                    max_size=5).map("/".join))
def test_release_keys_never_leave_the_configured_prefix(rel):
    from etl.io.s3_upload import release_target

    target = release_target("s3://releases/team/therapy", "rel-2024.01_a")
    try:
        key = target.key(rel)
    except objects.StorageError:
        return
    assert key.startswith("team/therapy/rel-2024.01_a/") and posixpath.normpath(key) == key
    assert ".." not in key.split("/")


@pytest.mark.parametrize("uri, release_id", [
    ("s3://releases/team/../other", "r1"), ("s3://releases/team", "../r1"), ("s3://releases/team", "r1/../../x"),
    ("s3://releases/team", "/abs"), ("/local/path", "r1"), ("s3://releases/./team", "r1"),
])
def test_a_release_target_that_would_escape_its_prefix_is_refused(uri, release_id):
    from etl.io.s3_upload import release_target

    with pytest.raises(objects.StorageError):
        release_target(uri, release_id)


def test_the_manifest_records_no_local_absolute_path_and_no_secret(spark, make_config, planted_env, tmp_path):
    import importlib.util

    if importlib.util.find_spec("etl.stages.export") is None:
        pytest.skip("export stage not in this build yet")
    from etl.io import delta
    from etl.schemas import (
        CONVERSATIONS_SCHEMA,
        DUP_CLUSTERS_SCHEMA,
        PREFERENCE_PAIRS_SCHEMA,
        SPLITS_SCHEMA,
    )
    from etl.stages import curriculum, export

    cfg = make_config("sample.yaml", raw_root=str(tmp_path), families__support_chat__options__token=CONF_SECRET)
    msgs = [{"role": "user", "content": "I feel low"}, {"role": "assistant", "content": "I hear you."}]
    conv = [("c1", "support_chat", "support_chat/a.jsonl", "e", "line:1", "r", msgs, "h1", {"k": "v"}, None, 2, 21,
             None, True, None)]
    delta.write_table(spark.createDataFrame(conv, CONVERSATIONS_SCHEMA), cfg, "conversations", "r", "ingest")
    delta.write_table(spark.createDataFrame([("c1", "c1", True, 1, "singleton")], DUP_CLUSTERS_SCHEMA), cfg,
                      "dup_clusters", "r", "dedup")
    delta.write_table(spark.createDataFrame([("c1", "support_chat", "g1", "train", "hash")], SPLITS_SCHEMA), cfg,
                      "splits", "r", "splits")
    delta.write_table(spark.createDataFrame([], PREFERENCE_PAIRS_SCHEMA), cfg, "preference_pairs", "r", "pairs")
    curriculum.run(spark, cfg, "r")
    export.run(spark, cfg, "r")
    release = Path(cfg.release_dir)
    for name in ("manifest.json", "croissant.json"):
        text = (release / name).read_text(encoding="utf-8")
        assert leaks(text) == [], name
        strings = _strings(json.loads(text))
        local = [s for s in strings if s.startswith(("/", "file:")) or str(tmp_path) in s or str(REPO) in s]
        assert local == [], (name, local[:5])


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (_strings(k) + _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []
