"""Open the lake from a notebook or script: one call gives a session with every table registered by name."""

from __future__ import annotations

from etl.config import Config, load_config


def open_lake(conf: str | None = None, overrides: list[str] | None = None, check_paths: bool = False):
    """(spark, cfg) with Delta configured and `<database>.<table>` registered for every existing table."""
    from etl.io.delta import register_all
    from etl.spark import get_spark

    cfg: Config = load_config(conf, overrides, check_paths=check_paths)
    spark = get_spark()
    register_all(spark, cfg)
    return spark, cfg
