"""Lake writes compute their input once: the fingerprint, the count and the MERGE share one materialisation."""

from __future__ import annotations

import pandas as pd

from etl.dedup.udfs import EMBED_OUT_SCHEMA
from etl.io import delta
from etl.schemas import EMBEDDINGS, QUARANTINE


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


def test_a_changed_table_is_computed_once_for_fingerprint_and_write(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    seen = spark.sparkContext.accumulator(0)
    schema = delta.SCHEMAS[QUARANTINE]

    def counted(batches):
        for batch in batches:
            seen.add(len(batch))
            yield batch

    def rows(reason):
        template = {f.name: None for f in schema.fields}
        data = [{**template, "source_uri": f"s3://b/k{i}", "reason": reason, "family": "f", "ingest_run_id": "r",
                 "source_locator": str(i), "raw_text": "{}"} for i in range(5)]
        return spark.createDataFrame(pd.DataFrame(data)[[f.name for f in schema.fields]], schema)

    first = delta.write_table(rows("bad_json").mapInPandas(counted, schema), cfg, QUARANTINE, "r1", "ingest")
    assert first.changed and seen.value == 5
    seen.value = 0
    second = delta.write_table(rows("empty").mapInPandas(counted, schema), cfg, QUARANTINE, "r2", "ingest")
    assert second.changed and seen.value == 5  # fingerprint + overwrite read one materialisation
    assert {r.reason for r in delta.read_table(spark, cfg, QUARANTINE).collect()} == {"empty"}
