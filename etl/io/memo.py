"""Lake memos: per-key results of a pure Python function kept in a Delta table, so a rerun computes only new keys.

Some steps run Python over every row although most rows are the same bytes as last run, such as the PII gate's
detector over every exported text (lake.pii_scans). Each row is keyed in the JVM by sha256 of the JSON of the
columns the function reads (`key_of`), and its result is stored per (digest, key), where the digest names the
code behind the result and the settings it depends on. A rerun reads the stored rows of the current digest,
computes only the keys missing from them, and adds those: the result is the one a full pass gives, because a row
is reused only for the same bytes under the same code and settings. A code or settings change starts a new digest
(old rows stay, unread).

Measured and not kept, because the memo's keys and joins cost what the Python saved (20k bench lake, warm passes
of `benchmarks/stage_repeat.py`): the leakage gate's turn hashes (the gate 24.4 and 21.9 s against 20.4 s
without) and the preference-pair hygiene checks (the preference_pairs stage 47.1, 43.1, 45.9 and 53.3 s against
42.9 and 47.0 s without, although the checks alone are 10 s of Python).

A memo that cannot be written (read-only lake, S3 denied) costs only the saving: the caller keeps its result and
the failure is logged with the table path. The stages' memo of turn keys (lake.turn_keys, `etl.turn_keys`) is
one of these too, keyed by the conversation's content hash instead of a computed key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.config import Config
from etl.io import delta

log = logging.getLogger(__name__)

KEY, DIGEST = "key", "digest"


def key_of(*cols: Column) -> Column:
    """sha256 hex of the JSON of `cols` (named columns keep their names in the JSON), computed in the JVM."""
    return F.sha2(F.to_json(F.struct(*cols)), 256)


@contextmanager
def recalled(spark: SparkSession, cfg: Config, table: str, digest: str, inputs: DataFrame,
             compute: Callable[[DataFrame], DataFrame], run_id: str, stage: str, enabled: bool = True,
             key: str = KEY) -> Iterator[tuple[DataFrame, int]]:
    """(memo rows (digest, key, results...) for every distinct `key` of `inputs`, how many were computed now).

    `inputs` holds the `key` column (`key_of`, or a column that already names the content, such as
    content_hash) and the columns `compute` reads; `compute(missing)` maps the inputs whose key has no
    stored row (one row per key) to rows of the table's schema. They are computed once (persisted until the block
    ends), merged into lake.<table> and given with the stored rows. `enabled=False` computes every key and stores
    nothing.
    """
    distinct = inputs.dropDuplicates([key])
    stored = delta.read_current(spark, cfg, table) if enabled else None
    if stored is not None:
        stored = stored.where(F.col(DIGEST) == digest)
    missing = distinct if stored is None else distinct.join(stored.select(key), key, "left_anti")
    fresh = compute(missing).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_fresh = fresh.count()
        if n_fresh and enabled:
            _store(cfg, table, fresh, n_fresh, key, run_id, stage)
        # a frame of its own even with nothing stored: a caller may persist `rows` past this block (turn_keys
        # does), and unpersisting `fresh` below would uncache `fresh` itself, recomputing it on every later read
        reused = (spark.createDataFrame([], fresh.schema) if stored is None
                  else stored.join(distinct.select(key), key, "left_semi"))
        rows = reused.unionByName(fresh)
        yield rows, n_fresh
    finally:
        fresh.unpersist()


def _store(cfg: Config, table: str, fresh: DataFrame, n_fresh: int, key: str, run_id: str, stage: str) -> None:
    try:
        delta.merge_new_rows(fresh, cfg, table, (DIGEST, key), run_id, stage, known_new=n_fresh)
    except Exception as exc:  # noqa: BLE001 - the memo only saves time; the result does not depend on it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.warning("memo: could not add %d rows to %s (%s); the next run computes them again",
                    n_fresh, cfg.table_path(table), first)
