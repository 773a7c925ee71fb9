"""One SparkSession (local, Delta) per test session; small inline DataFrames everywhere else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_RAW = (REPO / ".." / "shared" / "data" / "raw").resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ETL_SHUFFLE_PARTITIONS", "2")  # also for the `python -m etl` runs the tests start


BOTO_BACKOFF_SCALE = 0.01


TIERS = ("all", "default", "slow")
TIER_HELP = ("default: leave out the slow tier (what `bash scripts/test.sh` runs); slow: only the slow tier "
             "(whole-pipeline repeats and multi-process runs: a standalone cluster, SIGKILLed and concurrent runs, "
             "the notebook; `bash scripts/test.sh --slow`, run by CI after the default tier); all (plain pytest)")


def pytest_addoption(parser):
    parser.addoption("--tier", choices=TIERS, default="all", help=TIER_HELP)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow tier (see --tier); CI runs it after the default tier")


def pytest_collection_modifyitems(config, items):
    """--tier default / slow deselects the other tier (counted in the summary, never silently)."""
    tier = config.getoption("--tier")
    if tier == "all":
        return
    keep, drop = [], []
    for item in items:
        (keep if (item.get_closest_marker("slow") is not None) == (tier == "slow") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        config._etl_tier_note = (f"--tier {tier}: {len(drop)} tests of the other tier left out"
                                 + ("; the slow tier: bash scripts/test.sh --slow" if tier == "default" else ""))
        items[:] = keep


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    note = getattr(config, "_etl_tier_note", None)
    if note:
        terminalreporter.write_line(note)


@pytest.fixture(scope="session", autouse=True)
def short_s3_backoff():
    """botocore's waits between retries cut to 1 % in this process: the fault tests count attempts and check what
    is left behind, not how long botocore sleeps (its legacy backoff, rand x 2^attempt s, spent ~35 s of one
    listing test in time.sleep). Retry counts, error handling and the CLI runs the tests start are unchanged."""
    from botocore.retries.standard import ExponentialBackoff

    with pytest.MonkeyPatch.context() as mp:
        delay = ExponentialBackoff.delay_amount
        mp.setattr(ExponentialBackoff, "delay_amount", lambda self, context: delay(self, context) * BOTO_BACKOFF_SCALE)
        yield


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from etl.spark import get_spark

    os.environ.setdefault("ETL_WAREHOUSE_DIR", str(tmp_path_factory.mktemp("warehouse")))
    session = get_spark("etl-tests", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path):
    """Build a Config for a test: conf file (optional), overrides, lake and release under tmp_path."""
    from etl.config import load_config

    def _make(conf: str | None = None, raw_root: str | None = None, **overrides):
        items = [f"lake_root={tmp_path / 'lake'}", f"release_dir={tmp_path / 'release'}",
                 f"database=t{abs(hash(str(tmp_path))) % 10**8}"]
        if raw_root:
            items.append(f"raw_root={raw_root}")
        items += [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
        return load_config(str(REPO / "conf" / conf) if conf else None, items)

    return _make
