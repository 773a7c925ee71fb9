"""Release gates: one module per gate family, each `check(view) -> GateResult`; run by the verify stage.

A gate that raises is reported as failed with the error (never skipped): a release no gate could judge is not
a release to upload.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from pyspark.sql import SparkSession

from etl.config import Config
from etl.gates import (
    coverage,
    distribution,
    hashes,
    leakage,
    pii,
    provenance,
    split,
    stats,
)
from etl.gates.base import GateResult, ReleaseView
from etl.io import release

log = logging.getLogger(__name__)

# Gate name -> check, in report order (the names are the `gate` column of gate_results).
GATES: dict[str, Callable[[ReleaseView], GateResult]] = {
    coverage.GATE: coverage.check,
    leakage.GATE: leakage.check,
    distribution.GATE: distribution.check,
    pii.GATE: pii.check,
    provenance.GATE: provenance.check,
    hashes.GATE: hashes.check,
    split.GATE: split.check,
    stats.GATE: stats.check,
}


def open_release(spark: SparkSession, cfg: Config, tables: dict | None = None, run_id: str = "verify") -> ReleaseView:
    """Read the manifest and cache every exported record (call `close_release` when done)."""
    manifest = release.read_manifest(cfg.release_dir)
    records = release.read_release_records(spark, cfg.release_dir, manifest).cache()
    return ReleaseView(spark, cfg, cfg.release_dir, manifest, records, dict(tables or {}), run_id)


def close_release(view: ReleaseView) -> None:
    """Release the cached records of `open_release`."""
    view.records.unpersist()


def run_gate(name: str, view: ReleaseView) -> GateResult:
    """One gate; an exception becomes a failed result naming the error."""
    try:
        return GATES[name](view)
    except Exception as exc:  # noqa: BLE001 - a gate that cannot judge fails the release
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        log.error("gate %s could not run: %s: %s", name, type(exc).__name__, first)
        return GateResult(name, False, {"error": f"{type(exc).__name__}: {first}"}, [])


def run_gates(view: ReleaseView, names: list[str] | None = None, seconds: dict | None = None) -> list[GateResult]:
    """Every gate (or the named ones) in report order; `seconds` (when given) receives each gate's wall time."""
    results = []
    for name in names or list(GATES):
        started = time.perf_counter()
        results.append(run_gate(name, view))
        if seconds is not None:
            seconds[name] = round(time.perf_counter() - started, 1)
    return results


__all__ = ["GATES", "GateResult", "ReleaseView", "close_release", "open_release", "run_gate", "run_gates"]
