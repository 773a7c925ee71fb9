"""inventory: routing by path pattern, statuses, coverage, and the same inventory from S3 as from local disk."""

import os

import pytest

from etl.config import FamilyConf
from etl.io import objects
from etl.stages import inventory

from conftest import SHARED_RAW

FAMILIES = (
    FamilyConf("qa", path="qa/**/*.csv*", format="qa_csv"),
    FamilyConf("chat", path="chat/*.jsonl", format="chatml_jsonl"),
)
IGNORE = ("**/LICENSE*", "**/README*", "**/.*")


@pytest.mark.parametrize("key, family, status", [
    ("qa/2020/answers.csv", "qa", "mapped"),
    ("qa/answers.csv.gz", "qa", "mapped"),
    ("qa/LICENSE", None, "ignored"),
    ("chat/a.jsonl", "chat", "mapped"),
    ("chat/sub/a.jsonl", None, "unmapped"),
    ("other/x.json", None, "unmapped"),
    ("README.md", None, "ignored"),
])
def test_route_maps_keys_by_first_matching_family_pattern(key, family, status):
    fam, got_status, _ = inventory.route(key, FAMILIES, IGNORE)
    assert (fam.name if fam else None, got_status) == (family, status)


def test_new_object_under_a_family_folder_is_picked_up_without_config_change(make_config, tmp_path):
    raw = tmp_path / "raw"
    (raw / "counsel_chat" / "2026").mkdir(parents=True)
    (raw / "counsel_chat" / "2026" / "new_batch.csv").write_text("a,b\n1,2\n")
    (raw / "counsel_chat" / "empty.csv").write_text("")
    (raw / "mystery").mkdir()
    (raw / "mystery" / "x.bin").write_bytes(b"\x00")
    cfg = make_config("shared_corpus.yaml", raw_root=str(raw))
    rows = {r["key"]: r for r in inventory.inventory_rows(objects.list_objects(cfg.raw_root), cfg)}
    assert rows["counsel_chat/2026/new_batch.csv"]["family"] == "counsel_chat"
    assert rows["counsel_chat/2026/new_batch.csv"]["status"] == "mapped"
    assert rows["counsel_chat/empty.csv"]["status"] == "empty"
    assert rows["mystery/x.bin"]["status"] == "unmapped"
    cov = {c["family"]: c for c in inventory.coverage(list(rows.values()), cfg)}
    assert cov["counsel_chat"]["status"] == "partial"
    assert cov["hh_rlhf_harmless"]["status"] == "missing"
    assert cov["sarcasm"]["status"] == "generated"


def test_inventory_from_s3_equals_inventory_from_local_tree(make_config):
    from etl.io.local_s3 import local_s3

    cfg = make_config("shared_corpus.yaml")
    local = inventory.inventory_rows(objects.list_objects(str(SHARED_RAW)), cfg)
    with local_s3(("s3://raw-bucket/corpus",)) as endpoint:
        client = objects.s3_client(endpoint)
        for row in local:
            client.upload_file(row["uri"], "raw-bucket", f"corpus/{row['key']}")
        remote = inventory.inventory_rows(objects.list_objects("s3://raw-bucket/corpus", endpoint), cfg)

    def comparable(rows):
        return sorted((r["key"], r["size"], r["etag"], r["family"], r["format"], r["status"]) for r in rows)

    assert comparable(remote) == comparable(local)
    assert len(local) == 8


def test_inventory_stage_writes_table_and_rerun_adds_no_version(spark, make_config):
    from etl.io import delta

    cfg = make_config("shared_corpus.yaml")
    counts = inventory.run(spark, cfg, "run-1")
    assert counts["objects_mapped"] == 4 and counts["objects_ignored"] == 4
    path = cfg.table_path("inventory")
    v1 = delta.current_version(spark, path)
    inventory.run(spark, cfg, "run-2")
    assert delta.current_version(spark, path) == v1
    assert os.path.exists(os.path.join(cfg.lake_root, "_reports", "coverage.json"))
    got = spark.sql(f"SELECT count(*) AS n FROM {cfg.database}.inventory WHERE status = 'mapped'").first()["n"]
    assert got == 4
