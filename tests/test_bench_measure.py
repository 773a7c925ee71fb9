"""etl.bench.measure: bytes read from storage are told apart from Spark's input metric, which counts cache reads."""

from __future__ import annotations

from etl.bench.measure import fs_read_delta, measure


def test_fs_read_delta_keeps_only_schemes_that_grew():
    assert fs_read_delta({"file": 10, "s3a": 5}, {"file": 25, "s3a": 5, "hdfs": 3}) == {"file": 15, "hdfs": 3}
    assert fs_read_delta({}, {}) == {}


def test_a_cached_frame_read_again_is_spark_input_but_not_storage_reads(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(0, 200_000).selectExpr("id", "cast(id * 7 as string) as s").write.parquet(path)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "t").glob("*.parquet"))

    with measure("read", spark) as first:
        frame = spark.read.parquet(path).cache()
        assert frame.count() == 200_000
    try:
        with measure("again", spark) as again:
            assert frame.where("id % 2 = 0").count() == 100_000
            assert frame.where("id % 3 = 0").count() == 66_667
    finally:
        frame.unpersist()

    assert first["fs_read_scope"] == "all tasks"  # local master: the tasks run in this JVM
    assert first["fs_read_bytes_by_scheme"].get("file", 0) >= on_disk * 0.9  # the data files (maybe not footers)
    assert first["fs_read_bytes"] == sum(first["fs_read_bytes_by_scheme"].values())
    assert again["input_bytes"] > 0  # Spark's input metric counts the two in-memory scans
    assert again["fs_read_bytes"] == 0  # but nothing was read from storage
