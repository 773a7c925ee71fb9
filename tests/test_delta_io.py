"""Lake writes compute their input once: the fingerprint, the count and the MERGE share one materialisation."""

from __future__ import annotations

import json

import pandas as pd

from etl.dedup.udfs import EMBED_OUT_SCHEMA
from etl.io import delta
from etl.schemas import EMBEDDINGS, QUARANTINE


def _quarantine_rows(spark, reason: str, families=("f",), n: int = 5):
    schema = delta.SCHEMAS[QUARANTINE]
    template = {f.name: None for f in schema.fields}
    data = [{**template, "source_uri": f"s3://b/{fam}/k{i}", "reason": reason, "family": fam, "ingest_run_id": "r",
             "source_locator": str(i), "raw_text": "{}"} for fam in families for i in range(n)]
    return spark.createDataFrame(pd.DataFrame(data)[[f.name for f in schema.fields]], schema)


def test_new_cache_rows_run_their_udf_once(spark, make_config, tmp_path):
    """merge_new_rows materialises its input: the embedding UDF runs once per new row, not for the count and
    again for each read of the MERGE (it ran 2-3 times per text before)."""
    cfg = make_config(raw_root=str(tmp_path))
    seen = spark.sparkContext.accumulator(0)

    def fake_embed(batches):
        for batch in batches:
            seen.add(len(batch))
            yield pd.DataFrame({"text_hash": batch["text_hash"], "model": "m", "vector": [[1.0, 0.0]] * len(batch)})

    def texts(hashes):
        return spark.createDataFrame([(h, f"text {h}") for h in hashes], "text_hash string, text string")

    assert delta.merge_new_rows(texts(["a", "b"]).mapInPandas(fake_embed, EMBED_OUT_SCHEMA), cfg, EMBEDDINGS,
                                ("text_hash", "model"), "r1", "dedup") == 2
    seen.value = 0
    added = delta.merge_new_rows(texts(["b", "c", "d"]).mapInPandas(fake_embed, EMBED_OUT_SCHEMA), cfg, EMBEDDINGS,
                                 ("text_hash", "model"), "r2", "dedup")
    assert added == 2 and seen.value == 3  # the three input rows embedded once each, two of them new
    assert sorted(r.text_hash for r in delta.read_table(spark, cfg, EMBEDDINGS).collect()) == ["a", "b", "c", "d"]


def test_rows_given_as_known_new_still_insert_only_absent_keys(spark, make_config, tmp_path):
    """known_new skips the anti-join and count (the memo did both); a key stored meanwhile is still not doubled."""
    cfg = make_config(raw_root=str(tmp_path))
    vectors = "text_hash string, model string, vector array<float>"
    delta.merge_new_rows(spark.createDataFrame([("a", "m", [1.0]), ("b", "m", [1.0])], vectors), cfg, EMBEDDINGS,
                         ("text_hash", "model"), "r1", "dedup")
    fresh = spark.createDataFrame([("b", "m", [2.0]), ("c", "m", [2.0])], vectors).persist()
    assert delta.merge_new_rows(fresh, cfg, EMBEDDINGS, ("text_hash", "model"), "r2", "dedup", known_new=2) == 2
    fresh.unpersist()
    rows = {r.text_hash: r.vector for r in delta.read_table(spark, cfg, EMBEDDINGS).collect()}
    assert rows == {"a": [1.0], "b": [1.0], "c": [2.0]}


def test_a_caches_missing_entries_are_computed_once_and_a_key_stored_meanwhile_is_not_doubled(
        spark, make_config, tmp_path):
    """add_missing: the rows' UDF runs once for the count and the MERGE, an absent table is created, and a key
    another writer stored after the caller looked keeps its stored row."""
    cfg = make_config(raw_root=str(tmp_path))
    vectors = "text_hash string, model string, vector array<float>"
    seen = spark.sparkContext.accumulator(0)

    def counted(batches):
        for batch in batches:
            seen.add(len(batch))
            yield batch

    first = spark.createDataFrame([("a", "m", [1.0])], vectors).mapInPandas(counted, vectors)
    assert delta.add_missing(first, cfg, EMBEDDINGS, ("text_hash", "model"), "r1", "dedup") == 1
    seen.value = 0
    second = spark.createDataFrame([("a", "m", [2.0]), ("b", "m", [2.0])], vectors).mapInPandas(counted, vectors)
    assert delta.add_missing(second, cfg, EMBEDDINGS, ("text_hash", "model"), "r2", "dedup") == 2
    assert seen.value == 2  # computed once: not again for the MERGE
    rows = {r.text_hash: r.vector for r in delta.read_table(spark, cfg, EMBEDDINGS).collect()}
    assert rows == {"a": [1.0], "b": [2.0]}
    assert delta.add_missing(spark.createDataFrame([], vectors), cfg, EMBEDDINGS, ("text_hash", "model"),
                             "r3", "dedup") == 0
    assert delta.current_version(spark, cfg.table_path(EMBEDDINGS)) == 1  # nothing to add: no commit


def test_a_changed_table_is_computed_once_for_fingerprint_and_write(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    seen = spark.sparkContext.accumulator(0)
    schema = delta.SCHEMAS[QUARANTINE]

    def counted(batches):
        for batch in batches:
            seen.add(len(batch))
            yield batch

    first = delta.write_table(_quarantine_rows(spark, "bad_json").mapInPandas(counted, schema), cfg, QUARANTINE, "r1", "ingest")
    assert first.changed and seen.value == 5
    seen.value = 0
    second = delta.write_table(_quarantine_rows(spark, "empty").mapInPandas(counted, schema), cfg, QUARANTINE, "r2", "ingest")
    assert second.changed and seen.value == 5  # fingerprint + overwrite read one materialisation
    assert {r.reason for r in delta.read_table(spark, cfg, QUARANTINE).collect()} == {"empty"}


def _counting_fingerprints(monkeypatch) -> list:
    calls = []
    real = delta.fingerprint

    def counted(df):
        calls.append(df)
        return real(df)

    monkeypatch.setattr(delta, "fingerprint", counted)
    return calls


def test_an_unchanged_rewrite_compares_with_the_recorded_fingerprint(spark, make_config, tmp_path, monkeypatch):
    """The second write of the same rows hashes only its input: the old table's fingerprint comes from the
    userMetadata of the commit that wrote it, not from reading the table again."""
    cfg = make_config(raw_root=str(tmp_path))
    calls = _counting_fingerprints(monkeypatch)
    first = delta.write_table(_quarantine_rows(spark, "bad_json"), cfg, QUARANTINE, "r1", "ingest")
    recorded = delta.recorded_fingerprint(spark, cfg.table_path(QUARANTINE),
                                          delta._slice_stamp(list(delta.SCHEMAS[QUARANTINE].names), None))
    assert first.changed and len(calls) == 1 and recorded is not None and recorded[0] == 5
    again = delta.write_table(_quarantine_rows(spark, "bad_json"), cfg, QUARANTINE, "r2", "ingest")
    assert not again.changed and len(calls) == 2  # one fingerprint: the input's
    changed = delta.write_table(_quarantine_rows(spark, "empty"), cfg, QUARANTINE, "r3", "ingest")
    assert changed.changed and len(calls) == 3
    assert delta.current_version(spark, cfg.table_path(QUARANTINE)) == 1


def test_a_table_changed_by_another_commit_is_hashed_again(spark, make_config, tmp_path, monkeypatch):
    """A DELETE after the last write makes the recorded fingerprint stale: the old table is read and hashed, so
    writing the originally recorded rows again is a change, not a no-op."""
    from delta.tables import DeltaTable

    cfg = make_config(raw_root=str(tmp_path))
    path = cfg.table_path(QUARANTINE)
    delta.write_table(_quarantine_rows(spark, "bad_json"), cfg, QUARANTINE, "r1", "ingest")
    # the DELETE carries the write's userMetadata (fingerprint included): only its operation tells it apart
    meta = DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()[0]
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", meta)
    try:
        DeltaTable.forPath(spark, path).delete("source_locator = '0'")
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    assert DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()[0] == meta
    calls = _counting_fingerprints(monkeypatch)
    restored = delta.write_table(_quarantine_rows(spark, "bad_json"), cfg, QUARANTINE, "r2", "ingest")
    assert restored.changed and len(calls) == 2  # the input and the table as the DELETE left it
    assert delta.read_table(spark, cfg, QUARANTINE).count() == 5


def test_slice_writes_trust_only_a_record_of_the_same_slice(spark, make_config, tmp_path, monkeypatch):
    cfg = make_config(raw_root=str(tmp_path))
    both = _quarantine_rows(spark, "bad_json", families=("a", "b"))
    delta.write_table(both, cfg, QUARANTINE, "r1", "ingest")
    calls = _counting_fingerprints(monkeypatch)
    b_changed = _quarantine_rows(spark, "empty", families=("b",))
    assert delta.write_table(b_changed, cfg, QUARANTINE, "r2", "ingest", replace_where="family = 'b'").changed
    assert len(calls) == 2  # the last commit covered the whole table, not slice b: hashed
    a_same = _quarantine_rows(spark, "bad_json", families=("a",))
    assert not delta.write_table(a_same, cfg, QUARANTINE, "r3", "ingest", replace_where="family = 'a'").changed
    assert len(calls) == 4  # the last commit wrote slice b: slice a is hashed from the table
    assert not delta.write_table(b_changed, cfg, QUARANTINE, "r4", "ingest", replace_where="family = 'b'").changed
    assert len(calls) == 5  # the last commit wrote slice b: its record is used
    assert sorted((r.family, r.reason) for r in delta.read_table(spark, cfg, QUARANTINE).collect()) == (
        [("a", "bad_json")] * 5 + [("b", "empty")] * 5)


def test_a_foreign_or_unreadable_user_metadata_is_not_trusted(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    path = cfg.table_path(QUARANTINE)
    stamp = delta._slice_stamp(list(delta.SCHEMAS[QUARANTINE].names), None)
    for meta in ("not json", '["a list"]', json.dumps({"fingerprint": [5, 1, 2], "fingerprint_of": "other"}),
                 json.dumps({"fingerprint": "x", "fingerprint_of": stamp}),
                 json.dumps({"fingerprint": [5, True, 2], "fingerprint_of": stamp}),
                 json.dumps({"fingerprint": [6, 1, 2], "fingerprint_of": stamp})):  # the commit wrote 5 rows
        _quarantine_rows(spark, "bad_json").write.format("delta").mode("overwrite").option(
            "userMetadata", meta).save(path)
        assert delta.recorded_fingerprint(spark, path, stamp) is None, meta
    valid = json.dumps({"fingerprint": [5, 1, 2], "fingerprint_of": stamp})
    _quarantine_rows(spark, "bad_json").write.format("delta").mode("overwrite").option("userMetadata", valid).save(path)
    assert delta.recorded_fingerprint(spark, path, stamp) == (5, 1, 2)  # the same checks accept a well-formed record
