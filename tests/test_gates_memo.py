"""The PII gate's memo (etl.io.memo): a rerun takes stored per-record spans for unchanged bytes, scans the
rest, and gives the verdict a full pass gives; with `verify.memo: false` nothing is stored or read."""

from __future__ import annotations

import logging
from pathlib import Path

from etl.schemas import PII_SCANS
from gate_support import FAMILIES, lake_tables, sft, sound_shards, write_release


def _release_with_defects() -> dict:
    """The sound release with an e-mail address in c2's answer and a phone number in the pair's rejected text."""
    shards = sound_shards()
    leaked = sft("c2")
    leaked["messages"][1]["content"] += " Write to me at jane.doe@example.com any time."
    shards["B/foundations_qa/train-00000-of-00001.jsonl"][1] = leaked
    pair = shards["C/preference_alignment/train-00000-of-00001.jsonl.gz"][0]
    pair["rejected"] = [{"role": "assistant", "content": "Call me on +1 415 555 0132 and we can talk it over."}]
    return shards


def _run(spark, cfg, shards) -> tuple[tuple, dict]:
    """((passed, figures, examples) of the pii gate, memo rows computed per table) for one verify pass."""
    from etl.gates import close_release, open_release, run_gate

    write_release(Path(cfg.release_dir), shards, [])
    view = open_release(spark, cfg, lake_tables(spark), run_id="memo-test")
    try:
        result = run_gate("pii", view)
    finally:
        close_release(view)
    return (result.passed, result.figures, result.examples), dict(view.memo_computed)


def test_a_rerun_reuses_every_stored_result_and_a_changed_record_is_scanned_again(spark, make_config, tmp_path):
    from etl.io import delta

    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES)
    sound, computed = _run(spark, cfg, sound_shards())
    assert sound[0] and sound[1]["hits"] == 0, sound
    assert computed == {PII_SCANS: 6}  # 6 records
    again, computed = _run(spark, cfg, sound_shards())
    assert again == sound and computed == {PII_SCANS: 0}

    bad, computed = _run(spark, cfg, _release_with_defects())
    assert computed == {PII_SCANS: 2}  # c2's record and the pair
    assert not bad[0] and bad[1]["hits_by_type"] == {"EMAIL": 1, "PHONE": 1}
    assert {(e["record_key"], e["field"]) for e in bad[2]} == {("c2", "messages[1]"), ("p1", "rejected[0]")}
    again, computed = _run(spark, cfg, _release_with_defects())
    assert again == bad and computed == {PII_SCANS: 0}  # the stored span fails it
    assert delta.read_table(spark, cfg, PII_SCANS).count() == 8  # each record's bytes once

    no_memo = make_config(raw_root=str(tmp_path), families=FAMILIES, verify__memo="false",
                          lake_root=str(tmp_path / "other_lake"))
    full, computed = _run(spark, no_memo, _release_with_defects())
    assert full == bad and computed == {PII_SCANS: 6}
    assert not delta.table_exists(spark, no_memo.table_path(PII_SCANS))


def test_a_memo_that_cannot_be_written_keeps_the_verdict_and_names_the_table(spark, make_config, tmp_path,
                                                                           monkeypatch, caplog):
    from etl.io import delta

    def denied(df, cfg, name, *args, **kwargs):
        raise PermissionError(f"Access Denied writing {cfg.table_path(name)}")

    monkeypatch.setattr(delta, "merge_new_rows", denied)
    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES)
    with caplog.at_level(logging.WARNING, logger="etl.io.memo"):
        results, computed = _run(spark, cfg, _release_with_defects())
    assert not results[0] and results[1]["hits_by_type"] == {"EMAIL": 1, "PHONE": 1}
    assert computed == {PII_SCANS: 6}
    warned = [r.getMessage() for r in caplog.records]
    assert any(cfg.table_path(PII_SCANS) in m and "Access Denied" in m for m in warned), warned


def test_the_digest_follows_the_scanned_metadata_fields():
    from etl.gates import pii

    assert pii.code_digest(("question_title",)) != pii.code_digest(("question_title", "situation"))
    assert pii.code_digest(("situation",)) == pii.code_digest(("situation",))
