"""Release gates on a tiny release: each gate passes on the sound release and fails on one planted defect.

The sound release: four counsel_chat conversations exported as SFT (c1, c2 train; c3 val; c4 test), c1 again as
phase A text, and one preference pair p1 from c1. Lake tables are inline DataFrames handed to the gates, except
`conversations` and `preference_pairs`, which are also real Delta tables so provenance can check history. The
preference shard is gzipped, as export writes it with `export.compression: gzip`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from etl import contract
from etl.schemas import CONVERSATIONS, PREFERENCE_PAIRS
from gate_support import (  # noqa: F401 - lake, gate_run and sound are fixtures used by name
    FAMILIES, SPLIT_OF, TURNS, _messages, conversation_rows, gate_run, lake, lake_tables, pair, sft, sound,
    sound_shards, write_release,
)


# ------------------------------------------------------------------ one pass + one fail per gate


def test_coverage_passes_when_required_families_have_their_records(sound):
    result = sound["coverage"]
    assert result.passed, result
    assert result.figures["required"] == {"counsel_chat": {"records": 5, "min_records": 2}}


def test_coverage_fails_on_a_missing_required_family(gate_run):
    families = FAMILIES[:-1] + ", support_chat: {path: 'support_chat/**', format: chatml_jsonl, required: true}}"
    result = gate_run("coverage", families=families)
    assert not result.passed
    assert result.examples == [{"family": "support_chat", "records": 0, "min_records": 1, "problem": "missing"}]


def test_leakage_passes_when_no_key_straddles_splits(sound):
    result = sound["leakage"]
    assert result.passed, result
    assert result.figures["leaking_keys"] == 0


def test_leakage_fails_on_a_planted_prompt_in_two_splits_and_a_rejected_answer_in_sft(gate_run):
    TURNS["c5"] = (TURNS["c1"][0], "A different answer that is long enough to count as informative.")
    SPLIT_OF["c5"] = "test"
    try:
        shards = sound_shards()
        shards["B/foundations_qa/test-00000-of-00001.jsonl"].append(sft("c5"))
        bad_pair = pair()
        bad_pair["rejected"] = [{"role": "assistant", "content": TURNS["c2"][1]}]  # c2's SFT answer
        shards["C/preference_alignment/train-00000-of-00001.jsonl.gz"] = [bad_pair]
        result = gate_run("leakage", shards=shards, conversations=conversation_rows(("c1", "c2", "c3", "c4", "c5")))
    finally:
        TURNS.pop("c5"), SPLIT_OF.pop("c5")
    assert not result.passed
    assert result.figures["lake"] == {"answer_hash": 0, "content_hash": 0, "dup_edge": 0, "holdout_family": 0,
                                      "prompt_hash": 1}
    assert result.figures["export"] == {"answer_hash": 0, "content_hash": 0, "holdout_family": 0, "prompt_hash": 1,
                                        "rejected_in_sft": 1}


@pytest.mark.parametrize("strategy,leaks", [("safety", 0), ("ranked", 1)])
def test_a_template_chosen_reply_shared_across_splits_is_not_a_leak_but_a_data_answer_is(gate_run, strategy, leaks):
    """Safety pairs answer many red-team prompts with one templated reply: only their prompts are checked."""
    template = "I can't help with that, but if you are struggling, 988 (call or text) is there around the clock."
    shards = sound_shards()
    for split, cid in (("train", "c2"), ("test", "c4")):
        p = pair()
        p["prompt"], p["chosen"] = _messages(cid)[:1], [{"role": "assistant", "content": template}]
        p["metadata"] = {**p["metadata"], "pair_id": f"p-{cid}", "split": split, "strategy": strategy,
                         "family": "preference_synthetic", "source_conversation_ids": [cid]}
        shards[f"C/preference_alignment/{split}-00000-of-00001.jsonl"] = [p]
    shards["C/preference_alignment/train-00000-of-00001.jsonl.gz"] = []
    result = gate_run("leakage", shards=shards)
    assert result.figures["export"]["answer_hash"] == leaks
    assert result.passed == (leaks == 0)


def test_distribution_passes_within_tolerance(sound):
    result = sound["distribution"]
    assert result.passed, result
    assert result.figures["ratios"] == {"counsel_chat": {"rows": 5, "train": 0.6, "val": 0.2, "test": 0.2}}


def test_distribution_fails_on_a_skewed_split_and_a_misrouted_record(gate_run):
    shards = sound_shards()
    shards["B/edge_cases/train-00000-of-00001.jsonl"] = [sft("c2")]
    result = gate_run("distribution", shards=shards, verify__min_rows_for_ratio_check=5)
    assert not result.passed
    problems = {(e["problem"], e.get("split")) for e in result.examples}
    assert ("split_ratio", "train") in problems and ("misrouted", None) in problems
    assert result.figures["misrouted_records"] == 1


def test_pii_passes_on_redacted_text(sound):
    result = sound["pii"]
    assert result.passed, result
    assert result.figures["hits"] == 0


def test_pii_fails_on_an_unredacted_email_without_repeating_it(gate_run):
    shards = sound_shards()
    leaked = sft("c2")
    leaked["messages"][1]["content"] += " Write to me at jane.doe@example.com any time."
    shards["B/foundations_qa/train-00000-of-00001.jsonl"][1] = leaked
    result = gate_run("pii", shards=shards)
    assert not result.passed
    assert result.figures["hits_by_type"] == {"EMAIL": 1}
    assert result.examples[0]["record_key"] == "c2" and result.examples[0]["field"] == "messages[1]"
    assert "jane.doe" not in json.dumps(result.figures) + json.dumps(result.examples)


def test_provenance_passes_when_records_trace_to_raw_objects_and_history(sound):
    result = sound["provenance"]
    assert result.passed, result
    assert result.figures["table_versions"] == {CONVERSATIONS: 0, PREFERENCE_PAIRS: 0}


def test_provenance_fails_on_an_orphan_record_and_a_version_not_in_history(gate_run, lake):
    tables = copy.deepcopy(lake[1])
    tables[0]["version"] = 7
    result = gate_run("provenance", tables=tables, conversations=conversation_rows(("c1", "c2", "c3")))
    assert not result.passed
    assert result.figures["records_by_problem"] == {"no conversations row": 1}
    assert {"table": CONVERSATIONS, "problem": "version 7 not in Delta history"} in result.examples


def test_hash_passes_when_shards_match_the_manifest(sound):
    result = sound["hash"]
    assert result.passed, result


def test_hash_fails_on_a_tampered_shard(spark, make_config, tmp_path, lake):
    from etl.gates import close_release, open_release, run_gate

    cfg = make_config(raw_root=str(tmp_path), lake_root=lake[0], families=FAMILIES)
    write_release(Path(cfg.release_dir), sound_shards(), lake[1])
    shard = Path(cfg.release_dir) / "B/foundations_qa/val-00000-of-00001.jsonl"
    shard.write_text(shard.read_text().replace("lonely", "alone!"))  # same length, other bytes
    view = open_release(spark, cfg, lake_tables(spark))
    try:
        result = run_gate("hash", view)
    finally:
        close_release(view)
    assert not result.passed
    assert result.figures["content_hash_mismatches"] == 1
    assert result.examples[0]["shard"] == "B/foundations_qa/val-00000-of-00001.jsonl"
    assert result.examples[0]["problem"].startswith("sha256 ")


def test_split_passes_when_each_record_is_in_one_split(sound):
    result = sound["split"]
    assert result.passed, result
    assert result.figures["records_by_split"] == {"test": 1, "train": 4, "val": 1}


def test_split_fails_on_a_record_in_two_splits(gate_run):
    shards = sound_shards()
    shards["B/foundations_qa/val-00000-of-00001.jsonl"].append(sft("c2"))  # metadata still says train
    result = gate_run("split", shards=shards)
    assert not result.passed
    assert result.figures["records_by_problem"] == {
        "differs from the lake's split": 1, "in several splits": 2, "metadata.split differs from the shard's split": 1,
        "twice in one phase/stage": 2}


def test_stats_passes_on_sound_turn_structure(sound):
    result = sound["stats"]
    assert result.passed, result
    assert result.figures["records_by_kind"] == {"preference": 1, "sft": 4, "text": 1}


def test_stats_fails_on_an_empty_message(gate_run):
    shards = sound_shards()
    empty = sft("c3")
    empty["messages"].append({"role": "user", "content": "   "})
    shards["B/foundations_qa/val-00000-of-00001.jsonl"] = [empty]
    result = gate_run("stats", shards=shards)
    assert not result.passed
    assert result.figures["records_by_problem"] == {"empty message": 1}
    assert result.examples == [{"record_key": "c3", "shard": "B/foundations_qa/val-00000-of-00001.jsonl",
                                "problem": "empty message"}]


# ------------------------------------------------------------------ the stage and the CLI


def test_failing_gate_exits_4_with_one_line_and_gate_results_append_per_run(spark, make_config, tmp_path, capsys):
    from etl.cli import EXIT_GATE, main
    from etl.io import delta
    from etl.stages import verify

    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES)
    shards = sound_shards()
    shards["B/foundations_qa/val-00000-of-00001.jsonl"][0]["messages"][0]["content"] += " Mail me at sam.lee@example.net today."
    write_release(Path(cfg.release_dir), shards, [])
    args = ["verify", "--run-id", "run-1"] + [f"--set={k}={v}" for k, v in (
        ("raw_root", cfg.raw_root), ("lake_root", cfg.lake_root), ("release_dir", cfg.release_dir),
        ("database", cfg.database), ("families", FAMILIES))]
    assert main(args) == EXIT_GATE
    errors = [line for line in capsys.readouterr().err.splitlines() if "release blocked" in line]
    assert len(errors) == 1 and "gates failed:" in errors[0] and "pii (" in errors[0]
    report = json.loads((Path(cfg.release_dir) / "gate_report.json").read_text())
    assert report["passed"] is False and "pii" in report["failed"]
    results = delta.read_table(spark, cfg, "gate_results")
    assert results.where("run_id = 'run-1'").count() == 8
    version = delta.current_version(spark, cfg.table_path("gate_results"))
    rows = [r.asDict() for r in results.collect()]
    verify.write_gate_results(spark, cfg, "run-1", rows)  # the same run id again: no new version, no new rows
    assert delta.current_version(spark, cfg.table_path("gate_results")) == version
    verify.write_gate_results(spark, cfg, "run-2", [{**r, "run_id": "run-2"} for r in rows])
    assert sorted(r["run_id"] for r in delta.read_table(spark, cfg, "gate_results").select("run_id").collect()) == \
        ["run-1"] * 8 + ["run-2"] * 8


# ------------------------------------------------------------------ pandas helpers, no Spark


def test_ratio_problems_flags_only_big_families_out_of_tolerance():
    from etl.gates.distribution import ratio_problems

    counts = {"big": {"train": 80, "val": 10, "test": 10}, "small": {"train": 1}}
    observed, problems = ratio_problems(counts, {"train": 0.9, "val": 0.05, "test": 0.05}, 0.02, 50)
    assert observed == {"big": {"rows": 100, "train": 0.8, "val": 0.1, "test": 0.1}}
    assert [(p["family"], p["split"]) for p in problems] == [("big", "test"), ("big", "train"), ("big", "val")]


def test_hash_mismatches_frame_reports_stale_hashes_only():
    from etl.gates.hashes import hash_mismatches_frame

    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    pdf = pd.DataFrame({"record_key": ["a", "b"], "shard": ["s", "s"],
                        "content_hash": [contract.content_hash(msgs), "0" * 64],
                        "messages_json": [json.dumps(msgs), json.dumps(msgs)]})
    out = hash_mismatches_frame(pdf)
    assert list(out["record_key"]) == ["b"]


def test_scans_frame_names_field_type_and_offsets_per_record():
    from etl.gates.pii import scans_frame

    pdf = pd.DataFrame({"key": ["a", "b"], "text": [None, "nothing to see"],
                        "messages": [json.dumps([{"role": "user", "content": "mail me: bob@example.org"}]), None],
                        "prompt": [None, None], "chosen": [None, None], "rejected": [None, None],
                        "metadata": [json.dumps({"question_title": "no pii here"}), None]})
    out = scans_frame(pdf, ("question_title",), "d1")
    assert out["key"].tolist() == ["a", "b"] and set(out["digest"]) == {"d1"}
    assert out["spans"].tolist() == [[{"field": "messages[0]", "pii_type": "EMAIL", "start": 9, "end": 24}], []]
