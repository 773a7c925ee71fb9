"""Raw reads from S3 (inventory listing, ingest GETs) through a fault-injecting proxy in front of moto.

Transient faults recover within bounded retries with the same records as a clean read; persistent faults end as
one `unreadable` quarantine row (or a StorageError) naming the object; a re-run completes. Nothing is lost:
records read = conversations + quarantine. (Upload faults live in tests/test_upload.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl.io import objects
from etl.readers import ReaderLimits
from etl.stages import ingest, inventory
from etl.testing.faulty_proxy import FOREVER, Fault, FaultyProxy, operation

# Spark's Python workers inherit the environment the JVM started with: the loopback server's fake credentials
# must be in place at collection time, before the session fixture starts it.
for _name, _value in __import__("etl.io.local_s3", fromlist=["x"]).FAKE_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)

BUCKET_ROOT = "s3://raw-bucket/sample"
READ_FAULTS = ("drop", "status_500", "status_503", "delay", "corrupt", "lie_etag", "lie_length")
FAST_PERSISTENT = ("drop", "corrupt", "lie_length")
# 6 HTTP requests per S3 call (botocore standard mode, max_attempts=5 retries) x objects.READ_ATTEMPTS GETs
MAX_REQUESTS_PER_OBJECT = 6 * objects.READ_ATTEMPTS

TALLY: Counter = Counter()  # (fault kind, stage) -> faults injected, over the whole module
OUTCOMES: Counter = Counter()  # recovered / quarantined / storage_error / runs_completed


def _tally(proxy: FaultyProxy, stage: str) -> None:
    for (kind, _op), n in proxy.injected.items():
        TALLY[(kind, stage)] += n
    proxy.injected.clear()


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The sample raw tree on disk and uploaded to a loopback S3 server (moto), with its ground truth."""
    from etl.io.local_s3 import local_s3
    from etl.sample_data import write_sample

    raw = tmp_path_factory.mktemp("raw")
    truth = write_sample(str(raw))
    digest = _tree_digest(raw)
    with local_s3((BUCKET_ROOT,)) as endpoint:
        client = objects.s3_client(endpoint)
        bucket, prefix = objects.split_s3(BUCKET_ROOT)
        for key in digest:
            client.upload_file(str(raw / key), bucket, f"{prefix}/{key}")
        yield SimpleNamespace(endpoint=endpoint, raw=raw, truth=truth, digest=digest)
    assert _tree_digest(raw) == digest, "a local raw file changed or was lost"


@pytest.fixture
def proxy(store):
    with FaultyProxy(store.endpoint, lifetime_s=300) as p:
        yield p


@pytest.fixture(scope="module")
def sample_cfg(store):
    from etl.config import load_config

    return load_config(str(Path(__file__).resolve().parents[1] / "conf" / "sample.yaml"),
                       [f"raw_root={store.raw}"])


def _mapped(cfg, root: str, endpoint: str = "") -> list[dict]:
    rows = inventory.inventory_rows(objects.list_objects(root, endpoint), cfg)
    return [r for r in rows if r["status"] == inventory.STATUS_MAPPED]


def _parse_all(cfg, objs: list[dict], endpoint: str) -> dict[str, list[dict]]:
    """ingest.parse_object over every object (the code a Spark worker runs), keyed by object key."""
    fams = {f.name: (f.format, f.options) for f in cfg.raw_families()}
    limits = ReaderLimits(cfg.ingest.max_record_bytes, cfg.ingest.max_message_chars)
    return {o["key"]: ingest.parse_object(o["key"], o["uri"], o["etag"], o["family"], *fams[o["family"]], limits,
                                          cfg.ingest.quarantine_raw_chars, cfg.pii.enabled, endpoint)
            for o in objs}


@pytest.fixture(scope="module")
def clean(sample_cfg, store):
    """Rows parsed from the local files: what every faulty S3 read must reproduce."""
    return _parse_all(sample_cfg, _mapped(sample_cfg, str(store.raw)), "")


def _records(rows: list[dict]) -> int:
    return sum(1 for r in rows if r["kind"] != ingest.KIND_STATS)


def test_proxy_serves_each_fault_kind_once_then_forwards(store, proxy):
    client = objects.s3_client(proxy.url, max_attempts=0)
    key = "sample/support_chat/sample_chat.jsonl"
    head = objects.s3_client(store.endpoint).head_object(Bucket="raw-bucket", Key=key)
    proxy.set_faults([Fault("lie_head", op="head")])
    lied = client.head_object(Bucket="raw-bucket", Key=key)
    assert lied["ContentLength"] == head["ContentLength"] + 1000 and lied["ETag"] != head["ETag"]
    assert client.head_object(Bucket="raw-bucket", Key=key)["ETag"] == head["ETag"]
    proxy.set_faults([Fault("status_503", op="list")])
    with pytest.raises(Exception, match="SlowDown"):
        client.list_objects_v2(Bucket="raw-bucket", Prefix="sample/")
    assert client.list_objects_v2(Bucket="raw-bucket", Prefix="sample/")["KeyCount"] == len(store.digest)
    assert operation("GET", "/raw-bucket", "list-type=2") == "list"
    assert operation("GET", "/raw-bucket/sample/x.csv", "") == "get"
    _tally(proxy, "proxy self-test")


@pytest.mark.parametrize("kind", READ_FAULTS)
def test_transient_fault_on_every_object_read_recovers_with_the_same_records(
        kind, sample_cfg, store, proxy, clean, monkeypatch):
    monkeypatch.setattr(objects, "READ_TIMEOUT_S", 1.0)  # the delay fault outlasts it
    objs = _mapped(sample_cfg, BUCKET_ROOT, store.endpoint)
    proxy.set_faults([Fault(kind, op="get", match=o["key"], times=1, delay_s=2.5) for o in objs])
    got = _parse_all(sample_cfg, objs, proxy.url)
    assert proxy.injected[(kind, "get")] == len(objs) == 5
    assert all(n <= MAX_REQUESTS_PER_OBJECT for n in proxy.requests.values())
    _tally(proxy, "ingest (raw GET)")
    assert got == clean  # same records, same ids and hashes, nothing quarantined that was not before
    assert sum(_records(rows) for rows in got.values()) == sum(f["records"] for f in store.truth["files"].values())
    OUTCOMES["recovered"] += len(objs)


@pytest.mark.parametrize("kind", [*FAST_PERSISTENT, "status_503"])
def test_persistent_fault_quarantines_the_object_once_and_names_it(kind, sample_cfg, store, proxy, clean):
    objs = _mapped(sample_cfg, BUCKET_ROOT, store.endpoint)
    victim = next(o for o in objs if o["key"].startswith("support_chat/"))
    proxy.set_faults([Fault(kind, op="get", match=victim["key"], times=FOREVER)])
    got = _parse_all(sample_cfg, objs, proxy.url)
    _tally(proxy, "ingest (raw GET)")
    assert proxy.requests["get"] - (len(objs) - 1) <= MAX_REQUESTS_PER_OBJECT  # bounded retries
    quarantined, stats = got[victim["key"]]
    assert quarantined["kind"] == ingest.KIND_QUARANTINE and quarantined["reason"] == "unreadable"
    assert quarantined["source_uri"] == victim["key"] and victim["uri"] in quarantined["detail"]
    assert stats["kind"] == ingest.KIND_STATS and stats["records_read"] == 1  # reconciles: 1 read = 1 quarantined
    assert {k: v for k, v in got.items() if k != victim["key"]} == {k: v for k, v in clean.items() if k != victim["key"]}
    OUTCOMES["quarantined"] += 1


def test_listing_recovers_from_transient_faults_and_a_persistent_one_names_the_prefix(sample_cfg, store, proxy):
    expected = sorted(r["key"] for r in _mapped(sample_cfg, BUCKET_ROOT, store.endpoint))
    proxy.set_faults([Fault("status_503", op="list"), Fault("drop", op="list"), Fault("status_500", op="list"),
                      Fault("corrupt", op="list")])
    assert sorted(r["key"] for r in _mapped(sample_cfg, BUCKET_ROOT, proxy.url)) == expected
    assert proxy.requests["list"] <= 6
    OUTCOMES["recovered"] += 1
    proxy.set_faults([Fault("status_500", op="list", times=FOREVER)])
    with pytest.raises(objects.StorageError, match="s3://raw-bucket/sample/: listing failed"):
        _mapped(sample_cfg, BUCKET_ROOT, proxy.url)
    assert proxy.requests["list"] <= 6 + 6
    _tally(proxy, "inventory (list)")
    OUTCOMES["storage_error"] += 1


def test_an_object_that_differs_from_its_listing_is_never_handed_to_a_reader(store):
    uri = f"{BUCKET_ROOT}/support_chat/sample_chat.jsonl"
    data = (store.raw / "support_chat" / "sample_chat.jsonl").read_bytes()
    with pytest.raises(objects.StorageError, match="changed since it was listed; re-run inventory"):
        objects.open_object(uri, store.endpoint, expected_etag="0" * 32)
    with pytest.raises(objects.StorageError, match=f"unreadable after .* listed size is {len(data) + 1}"):
        objects.open_object(uri, store.endpoint, expected_size=len(data) + 1)
    with objects.open_object(uri, store.endpoint, hashlib.md5(data).hexdigest(), len(data)) as fh:
        assert fh.read() == data


def test_a_lying_etag_header_is_caught_unless_the_listed_etag_is_pinned(store, proxy):
    uri = f"{BUCKET_ROOT}/support_chat/sample_chat.jsonl"
    data = (store.raw / "support_chat" / "sample_chat.jsonl").read_bytes()
    proxy.set_faults([Fault("lie_etag", op="get", times=FOREVER)])
    with pytest.raises(objects.StorageError, match="MD5 .* of the bytes read != ETag 0123456789abcdef"):
        objects.open_object(uri, proxy.url)
    assert proxy.requests["get"] == objects.READ_ATTEMPTS  # bounded
    with objects.open_object(uri, proxy.url, expected_etag=hashlib.md5(data).hexdigest()) as fh:
        assert fh.read() == data  # IfMatch on the listed ETag: the server vouches, the header lie is moot
    _tally(proxy, "ingest (raw GET)")
    OUTCOMES["storage_error"] += 1
    OUTCOMES["recovered"] += 1


def _lake_counts(spark, cfg) -> tuple[int, int, set]:
    from etl.io import delta

    conv = delta.read_table(spark, cfg, "conversations").where("source_uri NOT LIKE 'generator:%'")
    quar = delta.read_table(spark, cfg, "quarantine")
    ids = {(r[0], r[1]) for r in conv.select("conversation_id", "content_hash").collect()}
    return conv.count(), quar.count(), ids


@pytest.mark.slow  # 30-35 s: the slow tier keeps the default tier under 15 min (907 s on 2026-11-27)
def test_inventory_and_ingest_through_a_faulty_store_lose_nothing_and_a_rerun_completes(
        spark, make_config, store, proxy, clean):
    from etl.io import delta

    cfg = make_config("sample.yaml", raw_root=BUCKET_ROOT, s3_endpoint_url=proxy.url)
    raw_records = sum(f["records"] for f in store.truth["files"].values())
    expected_ids = {(r["conversation_id"], r["content_hash"]) for rows in clean.values() for r in rows
                    if r["kind"] == ingest.KIND_CONVERSATION}
    victim = "support_chat/sample_chat.jsonl"
    kinds = ("drop", "status_503", "corrupt", "lie_etag", "lie_length")
    others = [k for k in sorted(clean) if k != victim]
    # 1. the listing fails twice; every other object's first GET fails (a different kind each); one object
    #    never reads intact: it must end as one unreadable row naming it, everything else intact
    proxy.set_faults([Fault("status_503", op="list"), Fault("drop", op="list"),
                      Fault("corrupt", op="get", match=victim, times=FOREVER),
                      *[Fault(kinds[i % len(kinds)], op="get", match=k) for i, k in enumerate(others)]])
    inventory.run(spark, cfg, "fault-1")
    _tally(proxy, "inventory (list)")
    counts = ingest.run(spark, cfg, "fault-1")
    _tally(proxy, "ingest (raw GET)")
    bad = delta.read_table(spark, cfg, "quarantine").where("reason = 'unreadable' AND source_locator = 'object'")
    assert [(r["source_uri"], f"{BUCKET_ROOT}/{victim}" in r["detail"]) for r in bad.collect()] == [(victim, True)]
    n_conv, n_quar, ids = _lake_counts(spark, cfg)
    victim_records = store.truth["files"][victim]["records"]
    assert counts["records_read"] == n_conv + n_quar == raw_records - victim_records + 1  # reconciled
    assert ids == {i for i in expected_ids if i not in _ids_of(clean[victim])}
    OUTCOMES["runs_completed"] += 1
    OUTCOMES["recovered"] += len(others)
    OUTCOMES["quarantined"] += 1
    # 2. the store heals: a re-run reads everything; raw records = conversations + quarantine
    proxy.clear()
    counts = ingest.run(spark, cfg, "fault-2")
    n_conv, n_quar, ids = _lake_counts(spark, cfg)
    assert (counts["records_read"], n_conv + n_quar, ids) == (raw_records, raw_records, expected_ids)
    OUTCOMES["runs_completed"] += 1


def _ids_of(rows: list[dict]) -> set:
    return {(r["conversation_id"], r["content_hash"]) for r in rows if r["kind"] == ingest.KIND_CONVERSATION}


def test_zz_fault_tally(capsys):
    """Print the faults injected per kind and stage (the figures of the reliability note)."""
    assert sum(TALLY.values()) > 0
    with capsys.disabled():
        print("\nfaults injected (kind, stage):", json.dumps({f"{k}|{s}": n for (k, s), n in sorted(TALLY.items())}))
        print("outcomes:", json.dumps(dict(OUTCOMES)))
