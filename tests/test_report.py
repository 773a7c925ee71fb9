"""Release report: rendered in headless Chromium with the key numbers on the page; missing tables degrade."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from lake_fixture import sample_lake  # noqa: F401 - shared session fixture

from etl import report_render as rr
from etl.io import delta
from etl.schemas import (
    CONVERSATIONS_SCHEMA,
    DUP_CLUSTERS_SCHEMA,
    PII_FINDINGS_SCHEMA,
    PREFERENCE_PAIRS_SCHEMA,
)
from etl.stages import report

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000")
SCREENSHOT_ENV = "ETL_REPORT_SCREENSHOT"  # also save the sample report's screenshot here (for a review)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium not installed: `bash scripts/bootstrap.sh` installs it when run as root (apt-get chromium)")


def render(page: Path, tmp_path: Path, screenshot: Path | None = None) -> str:
    """The DOM after load (and optionally a PNG screenshot) from headless Chromium."""
    exe = chromium()
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    if screenshot is not None:
        shot = subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1280,2600", page.as_uri()],
                              capture_output=True, text=True, timeout=180, check=False)
        assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    return dom.stdout


def conv(cid: str, family: str, turns: int, chars: int) -> dict:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"} for i in range(turns)]
    return {"conversation_id": cid, "family": family, "source_uri": "k", "source_etag": None, "source_locator": cid,
            "ingest_run_id": "r", "messages": messages, "content_hash": cid, "metadata": {}, "topic": None,
            "turn_count": turns, "char_count": chars, "quality_score": None, "pii_redacted": True, "parent_id": None}


def pair(pid: str, strategy: str, margin: float | None) -> dict:
    msg = [{"role": "assistant", "content": "answer"}]
    return {"pair_id": pid, "prompt": [{"role": "user", "content": "q"}], "chosen": msg, "rejected": msg,
            "strategy": strategy, "margin": margin, "chosen_score": None, "rejected_score": None,
            "source_conversation_ids": [pid], "family": "counsel_chat", "split": "train"}


MANIFEST = {
    "release_id": "rel-test-0001", "created_at": "2026-01-02T03:04:05Z", "code_version": "abc123",
    "shards": [{"path": "B/sft/train-00000-of-00001.jsonl"}],
    "tables": [],
    "counts": {"records": 1234,
               "by_family_split_phase": {"counsel_chat": {"train": {"B": 1100}, "test": {"B": 57}},
                                         "preference_ranked": {"train": {"C": 77}}},
               "excluded": {"counsel_chat": {"non_canonical": 31}}},
}
GATES = {"release_id": "rel-test-0001", "run_id": "run-9", "passed": False, "failed": ["leakage"],
         "gates": [{"gate": "coverage", "passed": True, "figures": {"families": 5}, "examples": []},
                   {"gate": "leakage", "passed": False, "figures": {"hashes_in_two_splits": 3},
                    "examples": [{"h": 1}, {"h": 2}]}]}


@pytest.fixture
def release_lake(spark, make_config, tmp_path):
    """Hand-made tables and release files with numbers the page must show."""
    cfg = make_config(raw_root=str(tmp_path))
    tables = {
        "conversations": (CONVERSATIONS_SCHEMA, [conv("a", "counsel_chat", 2, 300), conv("b", "counsel_chat", 4, 900),
                                                 conv("c", "esconv_failed", 24, 5000)]),
        "dup_clusters": (DUP_CLUSTERS_SCHEMA, [
            {"conversation_id": i, "cluster_id": "a", "is_canonical": i == "a", "cluster_size": 3, "reason": "near"}
            for i in ("a", "b", "c")]),
        "pii_findings": (PII_FINDINGS_SCHEMA, [
            {"family": "counsel_chat", "pii_type": "EMAIL", "findings": 7, "conversations": 5},
            {"family": "esconv_failed", "pii_type": "PHONE", "findings": 3, "conversations": 2}]),
        "preference_pairs": (PREFERENCE_PAIRS_SCHEMA, [pair("p1", "ranked", 2.0), pair("p2", "ranked", 6.0),
                                                       pair("p3", "degraded", None)]),
    }
    for name, (schema, rows) in tables.items():
        delta.write_table(spark.createDataFrame(rows, schema), cfg, name, "r", "test")
    os.makedirs(cfg.release_dir, exist_ok=True)
    Path(cfg.release_dir, "manifest.json").write_text(json.dumps(MANIFEST))
    Path(cfg.release_dir, "gate_report.json").write_text(json.dumps(GATES))
    return cfg


def test_family_split_phase_frame_pivots_manifest_counts():
    wide = rr.family_split_phase_frame(MANIFEST["counts"]["by_family_split_phase"])
    expected = pd.DataFrame({"phase": ["B", "C"], "family": ["counsel_chat", "preference_ranked"],
                             "train": [1100, 77], "test": [57, 0], "total": [1157, 77]})
    pd.testing.assert_frame_equal(wide.reset_index(drop=True), expected, check_names=False, check_dtype=False)


def test_gate_frame_summarises_scalar_figures_and_counts_examples():
    frame = rr.gate_frame(GATES["gates"])
    assert frame.to_dict("records") == [
        {"gate": "coverage", "result": "PASS", "figures": "families=5", "examples": 0},
        {"gate": "leakage", "result": "FAIL", "figures": "hashes_in_two_splits=3", "examples": 2}]


def test_report_shows_key_numbers_in_a_browser(spark, release_lake, tmp_path):
    counts = report.run(spark, release_lake, "run-report")
    page = Path(counts["report"])
    assert counts["missing"] == ["quarantine"]
    for png in ("family_split.png", "turns.png", "chars.png", "cluster_sizes.png", "pii.png", "margins.png"):
        assert (page.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    dom = render(page, tmp_path, tmp_path / "report.png")
    text = " ".join(dom.split())
    for expected in ("rel-test-0001", "1234", "1100", "1157", "non_canonical", "31",  # manifest counts
                     "1/2", "leakage", "FAIL", "hashes_in_two_splits=3",  # gates
                     '<td>EMAIL</td><td class="n">7</td><td class="n">5</td>', "PHONE",  # PII findings
                     '<td>ranked</td><td class="n">2</td>', '<td class="n">4.0</td>',  # pairs: 2 ranked, mean margin 4.0
                     '<td class="n">3</td><td class="n">1</td><td class="n">2</td>',  # cluster size 3: 1 cluster, 2 rows removed
                     '<td>esconv_failed</td><td class="n">1</td><td class="n">24</td>'):  # lengths: 1 conversation, 24 turns
        assert expected in text, expected
    assert f"table {release_lake.database}.quarantine not found: run the ingest stage" in text


def test_report_degrades_to_notes_when_nothing_was_written(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path))
    counts = report.run(spark, cfg, "run-empty")
    html = Path(counts["report"]).read_text()
    assert counts["missing"] == ["release", "gates", "lengths", "duplicates", "pii", "pairs", "quarantine"]
    assert "manifest.json not found in release_dir: run the export stage" in html
    assert f"table {cfg.database}.dup_clusters not found: run the dedup stage" in html
    assert "run the verify stage" in html


def test_sample_release_report_renders_the_pipeline_output(sample_lake, tmp_path):
    """The report the pipeline wrote for the sample shows the manifest's totals (screenshot kept on request)."""
    page = sample_lake.release / "report" / "index.html"
    assert page.exists(), f"no report at {page}; stages run: {sample_lake.seconds}"
    manifest = json.loads((sample_lake.release / "manifest.json").read_text())
    shot = Path(os.environ[SCREENSHOT_ENV]) if os.environ.get(SCREENSHOT_ENV) else tmp_path / "sample.png"
    text = " ".join(render(page, tmp_path, shot).split())
    assert manifest["release_id"] in text
    assert f"<b>{manifest['counts']['records']}</b>" in text
    assert "Release gates" in text and "not found" not in text


def test_margin_bins_split_each_strategy_range_into_equal_bins(spark):
    pairs = spark.createDataFrame([pair("p1", "ranked", 2.0), pair("p2", "ranked", 6.0), pair("p3", "ranked", 5.5),
                                   pair("p4", "degraded", None), pair("p5", "safety", 1.0)], PREFERENCE_PAIRS_SCHEMA)
    rows = sorted(tuple(r) for r in report.margin_bins(pairs, n_bins=4).collect())
    assert rows == [("ranked", 2.0, 3.0, 1), ("ranked", 5.0, 6.0, 2), ("safety", 1.0, 1.1, 1)]
