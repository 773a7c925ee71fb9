"""A small sample lake, built once per test session and shared by the notebook, catalog, report and cluster tests.

`from lake_fixture import sample_lake` in a test module. The pipeline runs in-process on the session's Spark
(local mode) over the built-in sample tree, with cheaper settings than conf/sample.yaml (fewer generated rows,
shorter embedding sequences) so the whole pipeline stays a small part of the suite. Verify may fail on so small
a sample: the build goes on to the report, as the CLI does, and records it. Any other stage failure fails the
tests that use the lake, naming the stage.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CONF = str(REPO / "conf" / "sample.yaml")
SAMPLE_DATABASE = "sample_lake"
SAMPLE_RUN_ID = "sample-lake-test"
# Cheaper than the demo, same code paths; the cluster test passes the same overrides to spark-submit.
SAMPLE_OVERRIDES = (
    "generators.volumes={edge_case_synthetic: 40, sarcasm: 30, roleplay_simulator: 20}",
    "dedup.embeddings.max_seq_length=64",
    "upload=false",
)


@dataclass
class SampleLake:
    root: Path
    raw: Path
    lake: Path
    release: Path
    database: str
    overrides: list[str]
    counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    gate_failure: str | None = None
    truth: dict = field(default_factory=dict)  # what write_sample planted (duplicates, PII, bad records)

    @property
    def conf(self) -> str:
        return SAMPLE_CONF

    def path_overrides(self) -> list[str]:
        return [f"raw_root={self.raw}", f"lake_root={self.lake}", f"release_dir={self.release}"]


_lock = threading.Lock()
_built: dict[str, SampleLake] = {}


def build_sample_lake(spark, root: Path) -> SampleLake:
    """Sample raw tree + every available stage but upload, in this process."""
    from etl.cli import GateFailure, available_stages, run_stage
    from etl.config import load_config
    from etl.io.delta import register_all
    from etl.sample_data import write_sample

    lake = SampleLake(root, root / "raw", root / "lake", root / "release", SAMPLE_DATABASE, [*SAMPLE_OVERRIDES])
    lake.truth = write_sample(str(lake.raw), seed=42, scale=1)
    cfg = load_config(SAMPLE_CONF, [*lake.overrides, *lake.path_overrides(), f"database={lake.database}"])
    register_all(spark, cfg)
    for name in available_stages():
        if name == "upload":
            continue
        start = time.monotonic()
        try:
            lake.counts[name] = run_stage(spark, cfg, name, SAMPLE_RUN_ID)
        except GateFailure as exc:
            lake.gate_failure = str(exc)
        except Exception as exc:  # re-raised with the stage named
            raise RuntimeError(f"sample pipeline failed at stage {name}: {type(exc).__name__}: {exc}") from exc
        finally:
            lake.seconds[name] = round(time.monotonic() - start, 1)
    register_all(spark, cfg)  # views over the tables the run created
    return lake


@pytest.fixture(scope="session")
def sample_lake(spark, tmp_path_factory) -> SampleLake:
    """The shared sample lake (built on first use; later modules get the same one)."""
    with _lock:
        if "lake" not in _built:
            _built["lake"] = build_sample_lake(spark, tmp_path_factory.mktemp("sample_lake"))
        return _built["lake"]
