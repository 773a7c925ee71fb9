"""Analyst SQL: column comments in the catalog, views for common questions, README queries, `python -m etl sql`."""

from __future__ import annotations

import re

import pytest
from lake_fixture import sample_lake  # noqa: F401 - shared session fixture

from etl import catalog
from etl.io import delta
from etl.schemas import (
    CONVERSATIONS_SCHEMA,
    CURRICULUM_SCHEMA,
    DUP_CLUSTERS_SCHEMA,
    DUP_EDGES_SCHEMA,
    PREFERENCE_PAIRS_SCHEMA,
    SPLITS_SCHEMA,
)


def conv(cid: str, family: str, prompt: str, answer: str, parent: str | None = None) -> dict:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"conversation_id": cid, "family": family, "source_uri": f"{family}/x.csv", "source_etag": None,
            "source_locator": cid, "ingest_run_id": "r1", "messages": messages, "content_hash": f"h-{cid}",
            "metadata": {}, "topic": None, "turn_count": 2, "char_count": len(prompt) + len(answer),
            "quality_score": None, "pii_redacted": True, "parent_id": parent}


def pair(pid: str, strategy: str, family: str, split: str, margin: float, chosen: str, rejected: str) -> dict:
    return {"pair_id": pid, "prompt": [{"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "strategy": strategy, "margin": margin,
            "chosen_score": margin, "rejected_score": 0.0, "source_conversation_ids": [pid], "family": family,
            "split": split}


@pytest.fixture(scope="module")
def small_lake(spark, tmp_path_factory):
    """A hand-made lake: a, b (duplicate of a), c; splits; a curriculum; three preference pairs."""
    from etl.config import load_config

    root = tmp_path_factory.mktemp("catalog")
    cfg = load_config(None, [f"raw_root={root}", f"lake_root={root / 'lake'}", f"release_dir={root / 'release'}", "database=cat_test"])
    rows = {
        "conversations": (CONVERSATIONS_SCHEMA, [
            conv("a", "counsel_chat", "I feel anxious at work", "Let us look at what happens before it starts."),
            conv("b", "counsel_chat", "I feel anxious at work!", "Let us look at what happens before it starts."),
            conv("c", "esconv_failed", "My dog died", "I am so sorry. How are you holding up?"),
        ]),
        "dup_clusters": (DUP_CLUSTERS_SCHEMA, [
            {"conversation_id": "a", "cluster_id": "a", "is_canonical": True, "cluster_size": 2, "reason": "near"},
            {"conversation_id": "b", "cluster_id": "a", "is_canonical": False, "cluster_size": 2, "reason": "near"},
            {"conversation_id": "c", "cluster_id": "c", "is_canonical": True, "cluster_size": 1, "reason": "singleton"},
        ]),
        "dup_edges": (DUP_EDGES_SCHEMA, [
            {"conversation_id_a": "a", "conversation_id_b": "b", "kind": "duplicate", "jaccard": 0.9, "cosine": 0.98,
             "source": "minhash", "field": "answer"},
            {"conversation_id_a": "a", "conversation_id_b": "b", "kind": "duplicate", "jaccard": 0.8, "cosine": 0.99,
             "source": "embedding", "field": "prompt"},
        ]),
        "splits": (SPLITS_SCHEMA, [
            {"conversation_id": "a", "family": "counsel_chat", "split_group": "a", "split": "train", "rule": "hash"},
            {"conversation_id": "b", "family": "counsel_chat", "split_group": "a", "split": "train", "rule": "hash"},
            {"conversation_id": "c", "family": "esconv_failed", "split_group": "c", "split": "test", "rule": "hash"},
        ]),
        "curriculum": (CURRICULUM_SCHEMA, [
            {"family": "counsel_chat", "phase": "B", "stage": "sft", "stage_order": 1, "weight": 1.0, "depends_on": []},
            {"family": "preference_ranked", "phase": "C", "stage": "dpo", "stage_order": 1, "weight": 1.0,
             "depends_on": []},
        ]),
        "preference_pairs": (PREFERENCE_PAIRS_SCHEMA, [
            pair("p1", "ranked", "counsel_chat", "train", 2.0, "a" * 30, "b" * 10),
            pair("p2", "ranked", "counsel_chat", "train", 4.0, "a" * 50, "b" * 10),
            pair("p3", "degraded", "counsel_chat", "test", 1.0, "a" * 20, "b" * 40),
        ]),
    }
    for name, (schema, data) in rows.items():
        delta.write_table(spark.createDataFrame(data, schema), cfg, name, "r1", "test")
    # A second conversations version: c's answer changes, so time travel has something to show.
    changed = [*rows["conversations"][1][:2], conv("c", "esconv_failed", "My dog died", "That is a real loss.")]
    delta.write_table(spark.createDataFrame(changed, CONVERSATIONS_SCHEMA), cfg, "conversations", "r2", "test")
    delta.register_all(spark, cfg)
    return cfg


def test_empty_lake_opens_without_tables_or_views(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    assert delta.register_all(spark, cfg) == []
    assert catalog.create_views(spark, cfg) == []


def test_partial_lake_gets_only_the_views_its_tables_allow(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    data = [{"conversation_id": "x", "family": "sarcasm", "split_group": "x", "split": "val", "rule": "hash"}]
    delta.write_table(spark.createDataFrame(data, SPLITS_SCHEMA), cfg, "splits", "r1", "test")
    delta.register_all(spark, cfg)
    views = {t.name for t in spark.catalog.listTables(cfg.database) if t.tableType == "VIEW"}
    assert views == {"v_split_summary"}


def test_written_tables_show_schema_comments_in_describe(spark, small_lake):
    comments = catalog.column_comments(spark, small_lake.database, "conversations")
    assert comments["content_hash"] == "sha256 of the canonical messages (README: content hash)"
    assert comments["parent_id"] == "conversation this row was derived from (windows, generators)"
    assert catalog.missing_comments(spark, small_lake) == {}


def test_add_missing_comments_fills_a_table_written_without_them(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    plain = spark.createDataFrame([("x", "sarcasm", "x", "val", "hash")],
                                  "conversation_id string, family string, split_group string, split string, rule string")
    plain.write.format("delta").save(cfg.table_path("splits"))
    delta.register_all(spark, cfg)
    assert catalog.missing_comments(spark, cfg) == {"splits": ["conversation_id", "family", "split_group", "split", "rule"]}
    catalog.add_missing_comments(spark, cfg)
    assert catalog.column_comments(spark, cfg.database, "splits")["split"] == "train | val | test | holdout"
    assert catalog.missing_comments(spark, cfg) == {}


def test_split_summary_counts_rows_and_groups_per_family_and_split(spark, small_lake):
    rows = spark.sql("SELECT * FROM cat_test.v_split_summary ORDER BY family, split").collect()
    assert [tuple(r) for r in rows] == [("counsel_chat", "train", 2, 1, 100.0), ("esconv_failed", "test", 1, 1, 100.0)]


def test_duplicate_examples_put_each_removed_row_beside_its_canonical_member(spark, small_lake):
    rows = spark.sql("SELECT * FROM cat_test.v_duplicate_examples").collect()
    assert len(rows) == 1
    r = rows[0]
    assert (r.canonical_id, r.duplicate_id, r.cluster_size) == ("a", "b", 2)
    assert (r.canonical_prompt, r.duplicate_prompt) == ("I feel anxious at work", "I feel anxious at work!")
    assert (r.jaccard, r.cosine, r.edge_sources) == (0.9, 0.99, "embedding,minhash")


def test_family_coverage_joins_conversations_splits_pairs_and_curriculum(spark, small_lake):
    rows = {r.family: r for r in spark.sql("SELECT * FROM cat_test.v_family_coverage").collect()}
    assert set(rows) == {"counsel_chat", "esconv_failed", "preference_ranked", "preference_synthetic"}
    cc = rows["counsel_chat"]
    assert (cc.conversations, cc.duplicates_removed, cc.train, cc.test, cc.curriculum) == (2, 1, 2, 0, "B:sft")
    assert (rows["preference_ranked"].preference_pairs, rows["preference_ranked"].curriculum) == (2, "C:dpo")
    assert (rows["preference_synthetic"].preference_pairs, rows["preference_synthetic"].conversations) == (1, 0)


def test_preference_summary_reports_margins_and_lengths_per_strategy(spark, small_lake):
    rows = spark.sql("SELECT strategy, split, pairs, avg_margin, min_margin, max_margin, avg_chosen_chars, "
                     "avg_rejected_chars, length_ratio FROM cat_test.v_preference_summary ORDER BY strategy").collect()
    assert [tuple(r) for r in rows] == [("degraded", "test", 1, 1.0, 1.0, 1.0, 20.0, 40.0, 0.5),
                                        ("ranked", "train", 2, 3.0, 2.0, 4.0, 40.0, 10.0, 4.0)]


def test_time_travel_reads_the_first_version(spark, small_lake):
    first = spark.sql("SELECT messages[1].content AS answer FROM cat_test.conversations VERSION AS OF 0 "
                      "WHERE conversation_id = 'c'").first()
    now = spark.sql("SELECT messages[1].content AS answer FROM cat_test.conversations WHERE conversation_id = 'c'").first()
    assert (first.answer, now.answer) == ("I am so sorry. How are you holding up?", "That is a real loss.")
    ops = [r.operation for r in spark.sql("DESCRIBE HISTORY cat_test.conversations").collect()]
    assert ops == ["WRITE", "WRITE"]


def test_split_statements_keeps_semicolons_inside_quotes():
    assert catalog.split_statements("SELECT 'a;b' AS x; SHOW TABLES IN lake;\n") == ["SELECT 'a;b' AS x",
                                                                                     "SHOW TABLES IN lake"]


@pytest.fixture
def keep_logging():
    """main() reconfigures the root logger onto pytest's captured stderr; put the handlers back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_sql_command_prints_query_results(spark, small_lake, capsys, keep_logging):
    from etl.cli import main

    rc = main(["sql", "--set", f"lake_root={small_lake.lake_root}", "--set", "database=cat_test",
               "-e", "SELECT family, count(*) AS n FROM cat_test.conversations GROUP BY family ORDER BY family"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"\|\s*counsel_chat\|\s*2\|", out) and re.search(r"\|\s*esconv_failed\|\s*1\|", out)


def test_readme_queries_run_on_the_sample_lake(spark, sample_lake):
    """Every example query the README shows runs on the pipeline's own output and returns rows."""
    empty = []
    for title, sql in catalog.EXAMPLE_QUERIES:
        rows = spark.sql(re.sub(r"\blake\.", f"{sample_lake.database}.", sql)
                         .replace("IN lake", f"IN {sample_lake.database}")).collect()
        if not rows:
            empty.append(title)
    assert empty in ([], ["What changed since version 0"]), f"queries with no rows: {empty}"


def test_every_table_the_pipeline_wrote_shows_its_column_comments(spark, sample_lake):
    from etl.config import load_config

    cfg = load_config(sample_lake.conf, [*sample_lake.path_overrides(), f"database={sample_lake.database}"])
    assert catalog.registered_tables(spark, cfg.database) >= {"conversations", "splits", "dup_clusters", "embeddings"}
    assert catalog.missing_comments(spark, cfg) == {}


def test_verify_counts_say_where_its_time_went(sample_lake):
    """The verify stage's counts (the bench report's per-stage figures) time every gate."""
    from etl.gates import GATES

    assert sample_lake.gate_failure is None
    seconds = sample_lake.counts["verify"]["gate_seconds"]
    assert list(seconds) == list(GATES) and all(s >= 0 for s in seconds.values())
