"""ingest: every raw record becomes a conversation or a quarantine row; reruns add no Delta versions."""

import json
import subprocess
import sys

import pytest

from etl.io import delta
from etl.stages import ingest, inventory

from conftest import REPO


@pytest.fixture(scope="module")
def shared_lake(spark, tmp_path_factory):
    """The real corpus inventoried and ingested once for this module."""
    from etl.config import load_config

    root = tmp_path_factory.mktemp("shared")
    cfg = load_config(str(REPO / "conf" / "shared_corpus.yaml"),
                      [f"lake_root={root / 'lake'}", f"release_dir={root / 'release'}", "database=shared_ingest"])
    inventory.run(spark, cfg, "inv-1")
    counts = ingest.run(spark, cfg, "ing-1")
    return cfg, counts


def test_real_corpus_reconciles_per_family(shared_lake):
    _, counts = shared_lake
    got = {r["family"]: (r["records_read"], r["conversations"], r["quarantined"]) for r in counts["by_family"]}
    assert got == {
        "counsel_chat": (2129, 2129, 0),
        "counsel_chat_legacy": (1482, 1475, 7),  # 5 answers that are only <p><br></p>, 2 rows with no question
        "hh_rlhf_harmless": (2312, 2309, 3),  # 3 chosen transcripts ending in an empty Assistant turn
        "esconv_failed": (196, 196, 0),
    }


def test_quarantine_reasons_on_real_corpus(spark, shared_lake):
    cfg, _ = shared_lake
    rows = delta.read_table(spark, cfg, "quarantine").groupBy("family", "reason").count().collect()
    assert {(r["family"], r["reason"], r["count"]) for r in rows} == {
        ("counsel_chat_legacy", "no_assistant_turn", 5),
        ("counsel_chat_legacy", "no_user_turn", 2),
        ("hh_rlhf_harmless", "no_assistant_turn", 3),
    }


def test_conversations_follow_the_contract(spark, shared_lake):
    from etl.contract import content_hash

    cfg, _ = shared_lake
    conv = delta.read_table(spark, cfg, "conversations")
    bad_roles = conv.selectExpr("explode(messages) AS m").where(
        "m.role NOT IN ('system','user','assistant') OR length(trim(m.content)) = 0").count()
    assert bad_roles == 0
    assert conv.where("NOT exists(messages, m -> m.role = 'user') OR "
                      "NOT exists(messages, m -> m.role = 'assistant')").count() == 0
    assert conv.select("conversation_id").distinct().count() == conv.count()
    for row in conv.limit(50).collect():
        assert row["content_hash"] == content_hash([m.asDict() for m in row["messages"]])
    legacy = conv.where("family = 'counsel_chat_legacy'").first()
    assert "<p>" not in legacy["messages"][1]["content"]
    cc = conv.where("family = 'counsel_chat'").first()
    assert cc["metadata"]["upstream_split"] in ("train", "val", "test")
    assert cc["quality_score"] is not None


def test_rerun_on_unchanged_input_adds_no_version(spark, shared_lake):
    cfg, _ = shared_lake
    versions = {t: delta.current_version(spark, cfg.table_path(t)) for t in ("conversations", "quarantine")}
    counts = ingest.run(spark, cfg, "ing-2")
    assert counts["conversations_changed"] is False
    assert counts["objects_parsed"] == 0 and counts["objects_reused"] == counts["objects"]  # the ingest ledger
    assert {t: delta.current_version(spark, cfg.table_path(t)) for t in versions} == versions
    ops = [h["operation"] for h in delta.history(spark, cfg.table_path("conversations"))]
    assert ops == ["WRITE"]


def test_tables_are_readable_by_another_engine(spark, shared_lake):
    from deltalake import DeltaTable

    cfg, _ = shared_lake
    for table in ("conversations", "quarantine", "inventory"):
        other = DeltaTable(cfg.table_path(table)).to_pyarrow_table().num_rows
        assert other == delta.read_table(spark, cfg, table).count()


def test_fresh_session_queries_tables_by_name(shared_lake):
    cfg, _ = shared_lake
    code = (
        "from etl.lake import open_lake\n"
        f"spark, cfg = open_lake(None, ['lake_root={cfg.lake_root}', 'database=lake'])\n"
        "rows = spark.sql('SELECT family, count(*) AS n FROM lake.conversations GROUP BY family').collect()\n"
        "import json; print(json.dumps({r['family']: r['n'] for r in rows}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"counsel_chat": 2129, "counsel_chat_legacy": 1475, "hh_rlhf_harmless": 2309, "esconv_failed": 196}


def test_bad_objects_end_in_quarantine_and_counts_reconcile(spark, make_config, tmp_path):
    import gzip

    raw = tmp_path / "raw"
    (raw / "support_chat").mkdir(parents=True)
    good = {"messages": [{"role": "user", "content": "I feel low"}, {"role": "assistant", "content": "I hear you."}]}
    lines = [json.dumps(good).encode(), b"{not json", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
             json.dumps({"messages": [{"role": "user", "content": "only me"}]}).encode()]
    (raw / "support_chat" / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (raw / "support_chat" / "empty.jsonl").write_bytes(b"")
    many = [json.dumps({"messages": [{"role": "user", "content": f"I feel low, day {i}"},
                                     {"role": "assistant", "content": f"I hear you ({i * 7919 % 1000})."}]})
            for i in range(2000)]
    blob = gzip.compress(("\n".join(many) + "\n").encode())
    (raw / "support_chat" / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (raw / "counsel_chat").mkdir()
    (raw / "counsel_chat" / "x.csv").write_text("questionTitle,answerText\nT,A\n")
    cfg = make_config("shared_corpus.yaml", raw_root=str(raw))
    inventory.run(spark, cfg, "r")
    counts = ingest.run(spark, cfg, "r")
    by = {r["family"]: r for r in counts["by_family"]}
    assert by["support_chat"]["conversations"] > 500  # the lines before the gzip cut survive
    reasons = {r["reason"] for r in delta.read_table(spark, cfg, "quarantine").collect()}
    assert {"malformed_json", "invalid_utf8", "no_assistant_turn", "truncated_gzip", "missing_column"} <= reasons
    for r in counts["by_family"]:
        assert r["records_read"] == r["conversations"] + r["quarantined"]
    statuses = {r["key"]: r["status"] for r in delta.read_table(spark, cfg, "inventory").collect()}
    assert statuses["support_chat/empty.jsonl"] == "empty"


def _chat(user: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})


def _raw_lake(spark, make_config, tmp_path, files: dict[str, str]):
    """(support_chat folder, config, ingest_now(run_id, config)) over a raw tree holding `files`."""
    raw = tmp_path / "raw" / "support_chat"
    raw.mkdir(parents=True)
    for name, text in files.items():
        (raw / name).write_text(text)
    cfg = make_config("shared_corpus.yaml", raw_root=str(tmp_path / "raw"))

    def ingest_now(run_id, config=cfg):
        inventory.run(spark, config, run_id)
        return ingest.run(spark, config, run_id)

    return raw, cfg, ingest_now


def test_rerun_parses_only_new_and_changed_objects_and_drops_removed_ones(spark, make_config, tmp_path):
    """The ingest ledger: an unchanged object keeps its rows (and their run id), a changed one is parsed again, a
    removed one leaves with its rows and PII counts, a new one is parsed, and a settings change parses everything."""
    raw, cfg, ingest_now = _raw_lake(spark, make_config, tmp_path, {
        "a.jsonl": _chat("I feel low", "I hear you.") + "\n{bad json\n",
        "b.jsonl": _chat("Write to me at sam@example.com please", "Thank you for sharing.") + "\n",
        "e.jsonl": _chat("My exams scare me", "Exams can feel huge.") + "\n"})

    def rows(table):
        return {(r["source_uri"], r["source_locator"]): r["ingest_run_id"]
                for r in delta.read_table(spark, cfg, table).collect()}

    first = ingest_now("r1")
    assert (first["objects_parsed"], first["objects_reused"]) == (3, 0)
    assert first["conversations_written"] == "slice"
    assert delta.read_table(spark, cfg, "pii_findings").where("pii_type = 'EMAIL'").first()["findings"] == 1

    (raw / "a.jsonl").write_text(_chat("I feel low", "I hear you.") + "\n" + _chat("Still low", "Tell me more.") + "\n")
    (raw / "b.jsonl").unlink()
    (raw / "c.jsonl").write_text(_chat("I cannot sleep", "That sounds exhausting.") + "\n")
    second = ingest_now("r2")
    assert (second["objects_parsed"], second["objects_reused"]) == (2, 1)
    assert second["conversations_written"] == "slice"  # a changed and a removed object: the slice is rewritten
    conv = rows("conversations")
    assert {k[0] for k in conv} == {"support_chat/a.jsonl", "support_chat/c.jsonl", "support_chat/e.jsonl"}
    assert len(conv) == 4 and rows("quarantine") == {}  # a's bad line left with the old version of a
    assert {k[0]: v for k, v in conv.items()} == {"support_chat/a.jsonl": "r2", "support_chat/c.jsonl": "r2",
                                                  "support_chat/e.jsonl": "r1"}  # e was kept, not parsed again
    assert delta.read_table(spark, cfg, "pii_findings").where("pii_type = 'EMAIL'").count() == 0
    assert all(r["records_read"] == r["conversations"] + r["quarantined"] for r in second["by_family"])

    changed = make_config("shared_corpus.yaml", raw_root=str(tmp_path / "raw"), ingest__quarantine_raw_chars=100)
    third = ingest_now("r3", changed)
    assert (third["objects_parsed"], third["conversations_written"]) == (3, "slice")


def test_a_rerun_with_only_new_objects_adds_their_rows_and_keeps_the_rest_as_a_rewrite_would(spark, make_config,
                                                                                               tmp_path):
    """Only new objects: their rows are inserted (one MERGE, the kept rows not rewritten), and the table holds what
    ingesting the whole tree would give. Rows a crashed run left from an object the ledger does not hold (then
    deleted from the raw tree) make the rerun rewrite the slice, so they leave."""
    from delta.tables import DeltaTable

    raw, cfg, ingest_now = _raw_lake(spark, make_config, tmp_path, {
        "a.jsonl": _chat("I feel low", "I hear you.") + "\n{bad json\n",
        "e.jsonl": _chat("My exams scare me", "Exams can feel huge.") + "\n"})

    def content(config):
        return sorted((r["conversation_id"], r["content_hash"], r["source_uri"]) for r in
                      delta.read_table(spark, config, "conversations").collect())

    ingest_now("r1")
    (raw / "c.jsonl").write_text(_chat("I cannot sleep", "That sounds exhausting.") + "\n"
                                 + _chat("Work is too much", "That is a lot to carry.") + "\n")
    before = delta.current_version(spark, cfg.table_path("conversations"))
    second = ingest_now("r2")
    assert (second["objects_parsed"], second["conversations_written"], second["conversations"]) == (1, "added", 4)
    history = DeltaTable.forPath(spark, cfg.table_path("conversations")).history().orderBy("version").collect()
    assert [r["operation"] for r in history if r["version"] > before] == ["MERGE"]
    assert json.loads(history[-1]["userMetadata"])["run_id"] == "r2"
    runs = {r["source_uri"]: r["ingest_run_id"] for r in delta.read_table(spark, cfg, "conversations").collect()}
    assert runs == {"support_chat/a.jsonl": "r1", "support_chat/e.jsonl": "r1", "support_chat/c.jsonl": "r2"}
    assert all(r["records_read"] == r["conversations"] + r["quarantined"] for r in second["by_family"])
    whole = make_config("shared_corpus.yaml", raw_root=str(tmp_path / "raw"), lake_root=str(tmp_path / "whole"),
                        database="t_whole_ingest")
    ingest_now("w1", whole)
    assert content(cfg) == content(whole)
    assert ingest_now("r3")["conversations_changed"] is False  # nothing new: no version, nothing rewritten

    # a crashed run's rows: e's ledger row gone (the crash came before the ledger write), then e deleted
    DeltaTable.forPath(spark, cfg.table_path("ingest_objects")).delete("key = 'support_chat/e.jsonl'")
    (raw / "e.jsonl").unlink()
    fourth = ingest_now("r4")
    assert fourth["conversations_written"] == "slice"
    assert {r[2] for r in content(cfg)} == {"support_chat/a.jsonl", "support_chat/c.jsonl"}
