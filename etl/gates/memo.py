"""Memo of a verify gate's per-record Python work, kept in the lake, so a rerun sends only new records to Python.

The PII gate runs the detector over every exported text: a pure function of the bytes it reads. Each record is
keyed in the JVM by sha256 of the JSON of the fields it scans (`key_of`), and its result is stored per
(digest, key) in lake.pii_scans, where the digest names the code behind the result and the settings it depends on.
A rerun reads the stored rows of the current digest, computes only the keys missing from them, and adds those: the
verdict is the one a full pass gives, because a row is reused only for the same bytes under the same code and
settings. A code or settings change starts a new digest (old rows stay, unread). `verify.memo: false` recomputes
everything and stores nothing: a release checked with no lake state at all.

The leakage gate's turn hashing was memoised the same way and measured (20k lake, warm): the gate took 24.4 and
21.9 s against 20.4 s without, its time being in the joins, not in Python; so it hashes afresh.

A memo that cannot be written (read-only lake, S3 denied) costs only the saving: the gate keeps its verdict and the
failure is logged with the table path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from etl.gates.base import ReleaseView
from etl.io import delta

log = logging.getLogger(__name__)

KEY, DIGEST = "key", "digest"


def key_of(*cols: Column) -> Column:
    """sha256 hex of the JSON of `cols` (named columns keep their names in the JSON), computed in the JVM."""
    return F.sha2(F.to_json(F.struct(*cols)), 256)


def _stored(view: ReleaseView, table: str, digest: str) -> DataFrame | None:
    """The stored rows of `digest` at the table's current version, or None (memo off, or no table yet)."""
    if not view.cfg.verify.memo:
        return None
    path = view.cfg.table_path(table)
    if not delta.table_exists(view.spark, path):
        return None
    version = delta.current_version(view.spark, path)
    return delta.read_table(view.spark, view.cfg, table, version).where(F.col(DIGEST) == digest)


@contextmanager
def recalled(view: ReleaseView, table: str, digest: str, inputs: DataFrame,
             compute: Callable[[DataFrame], DataFrame]) -> Iterator[DataFrame]:
    """Memo rows (digest, key, results...) for every distinct `key` of `inputs` (key + the columns `compute` reads).

    `compute(missing)` maps the inputs whose key has no stored row (one row per key) to rows of the table's schema;
    they are computed once (persisted until the block ends), merged into lake.<table> and given with the stored
    rows. `view.memo_computed[table]` receives how many were computed now.
    """
    distinct = inputs.dropDuplicates([KEY])
    stored = _stored(view, table, digest)
    missing = distinct if stored is None else distinct.join(stored.select(KEY), KEY, "left_anti")
    fresh = compute(missing).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_fresh = fresh.count()
        view.memo_computed[table] = view.memo_computed.get(table, 0) + n_fresh
        if n_fresh and view.cfg.verify.memo:
            _store(view, table, fresh, n_fresh)
        yield fresh if stored is None else stored.join(distinct.select(KEY), KEY, "left_semi").unionByName(fresh)
    finally:
        fresh.unpersist()


def _store(view: ReleaseView, table: str, fresh: DataFrame, n_fresh: int) -> None:
    try:
        delta.merge_new_rows(fresh, view.cfg, table, (DIGEST, KEY), view.run_id, "verify")
    except Exception as exc:  # noqa: BLE001 - the memo only saves time; the verdict does not depend on it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.warning("verify memo: could not add %d rows to %s (%s); the next run computes them again",
                    n_fresh, view.cfg.table_path(table), first)
