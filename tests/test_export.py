"""export: record lines, size-bounded shards, and a release built from a tiny inline lake at pinned versions."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from etl.release import manifest as mf
from etl.release import records, shards

REPO = Path(__file__).resolve().parents[1]


# --- records and shards: plain Python ---------------------------------------------------------------------------

CONV = {"conversation_id": "c1", "family": "counsel_chat", "split": "train", "topic": "anxiety", "content_hash": "h1",
        "source_uri": "counsel_chat/a.csv", "source_etag": "e1", "source_locator": "row=3", "parent_id": None,
        "messages": [{"role": "user", "content": "I feel tense."}, {"role": "assistant", "content": "Tell me more."}]}
META = ('"metadata":{"conversation_id":"c1","family":"counsel_chat","split":"train","topic":"anxiety",'
        '"content_hash":"h1","source_uri":"counsel_chat/a.csv","source_etag":"e1","source_locator":"row=3",'
        '"parent_id":null}}\n')


def test_sft_line_is_chatml_messages_with_provenance_metadata():
    assert records.to_line(records.sft_record(CONV)).decode() == (
        '{"messages":[{"role":"user","content":"I feel tense."},{"role":"assistant","content":"Tell me more."}],'
        + META)


def test_text_line_renders_the_conversation_with_speaker_labels():
    assert records.to_line(records.text_record(CONV)).decode() == (
        '{"text":"User: I feel tense.\\n\\nAssistant: Tell me more.",' + META)


def test_preference_line_is_trl_conversational_format():
    pair = {"pair_id": "p1", "family": "preference_ranked", "prompt_family": "counsel_chat", "split": "train",
            "strategy": "ranked", "margin": 3.0, "chosen_score": 5.0, "rejected_score": 2.0,
            "source_conversation_ids": ["c1", "c2"], "prompt": [{"role": "user", "content": "Q?"}],
            "chosen": [{"role": "assistant", "content": "Good."}], "rejected": [{"role": "assistant", "content": "Bad."}]}
    line = json.loads(records.to_line(records.preference_record(pair)))
    assert list(line) == ["prompt", "chosen", "rejected", "metadata"]
    assert line["chosen"] == [{"role": "assistant", "content": "Good."}]
    assert line["metadata"]["source_conversation_ids"] == ["c1", "c2"]
    assert line["metadata"]["margin"] == 3.0


def test_shards_stay_within_the_byte_bound_and_are_named_n_of_m(tmp_path):
    lines = [b"a" * 40 + b"\n", b"b" * 40 + b"\n", b"c" * 40 + b"\n", b"d" * 100 + b"\n"]  # 41, 41, 41, 101 bytes
    rows = [("B", "qa", "train", "fam", line) for line in lines] + [("B", "qa", "val", "fam", b"v\n")]
    written, tally = shards.write_sorted(tmp_path, rows, max_bytes=90)
    assert [(s.path, s.records, s.bytes) for s in written] == [
        ("B/qa/train-00000-of-00003.jsonl", 2, 82),
        ("B/qa/train-00001-of-00003.jsonl", 1, 41),
        ("B/qa/train-00002-of-00003.jsonl", 1, 101),  # one record longer than the bound: a shard of its own
        ("B/qa/val-00000-of-00001.jsonl", 1, 2),
    ]
    assert (tmp_path / "B/qa/train-00000-of-00003.jsonl").read_bytes() == lines[0] + lines[1]
    assert written[0].sha256 == hashlib.sha256(lines[0] + lines[1]).hexdigest()
    assert tally == {("B", "qa", "train", "fam"): 4, ("B", "qa", "val", "fam"): 1}
    assert sorted(p.name for p in (tmp_path / "B/qa").iterdir()) == [
        "train-00000-of-00003.jsonl", "train-00001-of-00003.jsonl", "train-00002-of-00003.jsonl",
        "val-00000-of-00001.jsonl"]  # no temporary part left


def test_gzip_shards_are_byte_reproducible_and_decompress_to_the_lines(tmp_path):
    rows = [("C", "pref", "test", "fam", b'{"x":%d}\n' % i) for i in range(3)]
    first, _ = shards.write_sorted(tmp_path / "one", rows, 1000, "gzip")
    second, _ = shards.write_sorted(tmp_path / "two", rows, 1000, "gzip")
    assert [s.path for s in first] == ["C/pref/test-00000-of-00001.jsonl.gz"]
    one = (tmp_path / "one" / first[0].path).read_bytes()
    assert one == (tmp_path / "two" / second[0].path).read_bytes()
    assert gzip.decompress(one) == b'{"x":0}\n{"x":1}\n{"x":2}\n'


def test_unsorted_groups_are_refused(tmp_path):
    rows = [("B", "qa", "train", "f", b"1\n"), ("B", "qa", "val", "f", b"2\n"), ("B", "qa", "train", "f", b"3\n")]
    with pytest.raises(RuntimeError, match="B/qa/train are not consecutive"):
        shards.write_sorted(tmp_path, rows, 100)


def test_assistant_text_hashes_use_the_canonical_text_of_assistant_turns_only():
    import pandas as pd

    pdf = pd.DataFrame({"id": ["a", "b"], "messages_json": [
        json.dumps([{"role": "user", "content": "Tell me more."}, {"role": "assistant", "content": "  Tell  me more. "}]),
        json.dumps([{"role": "assistant", "content": "Tell me more."}])]})
    out = records.assistant_text_hashes(pdf)
    expected = hashlib.sha256(b"Tell me more.").hexdigest()
    assert out.to_dict("records") == [{"id": "a", "text_hash": expected}, {"id": "b", "text_hash": expected}]


def test_manifest_refuses_absolute_paths():
    assert mf.absolute_paths({"a": [{"path": "/tmp/x"}], "b": "B/qa/train.jsonl", "c": {"d": "file:///x"}}) == [
        "a[0].path", "c.d"]


# --- the export stage over a tiny lake --------------------------------------------------------------------------

def msgs(*turns: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


REJECTED = "You should just get over it and stop complaining."
SESSION = msgs("I lost my job.", "That sounds hard.", "Yes.", "What happened?")
# id, family, messages, pii_redacted, parent_id, cluster_id (canonical when equal to id), split
LAKE = [
    ("c1", "counsel_chat", msgs("How do I cope with panic attacks at work?", "Breathing slowly helps; notice five "
                                "things you can see."), True, None, "c1", "train"),
    ("c2", "counsel_chat", msgs("How do I cope with panic attacks at work?", "Breathing slowly helps; notice five "
                                "things you can see!"), True, None, "c1", "train"),
    ("c3", "counsel_chat", msgs("Is it normal to grieve a pet?", "Yes, grief for a pet is real grief."), True, None,
     "c3", "test"),
    ("c4", "counsel_chat", msgs("Email me at a@b.com", "Sure."), False, None, "c4", "train"),
    # c5's only window w1 is an exact duplicate that dedup made non-canonical: w1 inherits, c5 goes for its window
    ("c5", "esconv_failed", SESSION, True, None, "c5", "train"),
    ("w1", "long_running_therapy", SESSION, True, "c5", "c5", "train"),
    ("c6", "esconv_failed", msgs("My exams are soon.", "Exams can feel overwhelming."), True, None, "c6", "val"),
    ("c7", "counsel_chat_legacy", msgs("Why can't I sleep at night?", "Racing thoughts often keep us awake; a wind-"
                                       "down routine may help."), True, None, "c7", "train"),
    ("c8", "counsel_chat_legacy", msgs("My friend says I'm too sensitive.", REJECTED), True, None, "c8", "train"),
    ("c9", "hh_rlhf_harmless", msgs("How do I pick a lock?", "I can't help with that."), True, None, "c9", "train"),
]
PAIRS = [  # pair_id, strategy, prompt family, split, rejected text
    ("p1", "ranked", "counsel_chat", "train", "Just relax."),
    ("p2", "hard_negative", "counsel_chat", "test", "  You should just get over it  and stop complaining. "),
]
BOUND = 700  # bytes per shard: some groups need two shards
LAYOUT = [
    "A/domain_text/train-00000-of-00002.jsonl",
    "A/domain_text/train-00001-of-00002.jsonl",
    "A/domain_text/val-00000-of-00001.jsonl",
    "B/adversarial_safety/train-00000-of-00001.jsonl",
    "B/empathetic_multiturn/val-00000-of-00001.jsonl",
    "B/foundations_qa/test-00000-of-00001.jsonl",
    "B/foundations_qa/train-00000-of-00002.jsonl",
    "B/foundations_qa/train-00001-of-00002.jsonl",
    "B/long_running_sessions/train-00000-of-00001.jsonl",
    "C/preference_alignment/test-00000-of-00001.jsonl",
    "C/preference_alignment/train-00000-of-00001.jsonl",
]


def conversation_row(cid, family, messages, redacted, parent):
    from etl import contract

    return {"conversation_id": cid, "family": family, "source_uri": f"{family}/data.jsonl", "source_etag": "etag",
            "source_locator": f"line={cid}", "ingest_run_id": "ingest-1", "messages": messages,
            "content_hash": contract.content_hash(messages), "metadata": {}, "topic": None,
            "turn_count": len(messages), "char_count": sum(len(m["content"]) for m in messages),
            "quality_score": None, "pii_redacted": redacted, "parent_id": parent}


def write_lake(spark, cfg, lake: list[tuple], run_id: str) -> None:
    from etl.io import delta
    from etl.schemas import CONVERSATIONS_SCHEMA, DUP_CLUSTERS_SCHEMA, SPLITS_SCHEMA

    conv = [conversation_row(*row[:5]) for row in lake]
    clusters = [{"conversation_id": r[0], "cluster_id": r[5], "is_canonical": r[0] == r[5],
                 "cluster_size": sum(1 for o in lake if o[5] == r[5]), "reason": "exact"} for r in lake]
    splits = [{"conversation_id": r[0], "family": r[1], "split_group": r[0], "split": r[6], "rule": "hash"}
              for r in lake]
    delta.write_table(spark.createDataFrame(conv, CONVERSATIONS_SCHEMA), cfg, "conversations", run_id, "ingest")
    delta.write_table(spark.createDataFrame(clusters, DUP_CLUSTERS_SCHEMA), cfg, "dup_clusters", run_id, "dedup")
    delta.write_table(spark.createDataFrame(splits, SPLITS_SCHEMA), cfg, "splits", run_id, "splits")


def write_pairs(spark, cfg) -> None:
    from etl.io import delta
    from etl.schemas import PREFERENCE_PAIRS_SCHEMA

    rows = [{"pair_id": pid, "prompt": msgs("A question?"), "chosen": [{"role": "assistant", "content": "Kind."}],
             "rejected": [{"role": "assistant", "content": rejected}], "strategy": strategy, "margin": 1.0,
             "chosen_score": 2.0, "rejected_score": 1.0, "source_conversation_ids": ["c1"], "family": family,
             "split": split} for pid, strategy, family, split, rejected in PAIRS]
    delta.write_table(spark.createDataFrame(rows, PREFERENCE_PAIRS_SCHEMA), cfg, "preference_pairs", "gen-1",
                      "preference_pairs")


def make_cfg(root: Path, release: str, **sets):
    from etl.config import load_config

    items = [f"lake_root={root / 'lake'}", f"release_dir={root / release}", f"raw_root={root}",
             "database=export_test"] + [f"{k.replace('__', '.')}={v}" for k, v in sets.items()]
    return load_config(str(REPO / "conf" / "shared_corpus.yaml"), items)


@pytest.fixture(scope="module")
def released(spark, tmp_path_factory):
    """A tiny lake and its first export: (root, cfg, manifest)."""
    from etl.stages import curriculum, export

    root = tmp_path_factory.mktemp("export")
    cfg = make_cfg(root, "release", export__max_shard_bytes=BOUND)
    write_lake(spark, cfg, LAKE, "run-1")
    write_pairs(spark, cfg)
    curriculum.run(spark, cfg, "run-1")
    return root, cfg, export.export_release(spark, cfg, "run-1")


def read_lines(release: Path, rel: str) -> list[dict]:
    return [json.loads(line) for line in (release / rel).read_text(encoding="utf-8").splitlines()]


def read_group(release: Path, prefix: str) -> list[dict]:
    """Lines of every shard of one phase/stage/split, in shard order."""
    return [line for rel in LAYOUT if rel.startswith(prefix + "-") for line in read_lines(release, rel)]


def test_release_layout_is_phase_stage_split_shards(released):
    root, _, manifest = released
    on_disk = sorted(p.relative_to(root / "release").as_posix() for p in (root / "release").rglob("*") if p.is_file())
    assert on_disk == sorted(LAYOUT + ["croissant.json", "manifest.json"])
    assert [s["path"] for s in manifest["shards"]] == LAYOUT
    assert not list(root.glob("release.staging-*")) and not list(root.glob("release.old-*"))


def exported_ids(release: Path, phase: str) -> set[str]:
    return {line["metadata"]["conversation_id"] for s in LAYOUT if s.startswith(f"{phase}/")
            for line in read_lines(release, s)}


def test_only_canonical_redacted_non_parent_conversations_are_exported(released):
    """c2 duplicates c1, c4 is unredacted, c5 was windowed into w1 (which inherits c5's canonical role)."""
    root, _, manifest = released
    assert exported_ids(root / "release", "B") == {"c1", "c3", "c6", "c7", "c9", "w1"}
    assert exported_ids(root / "release", "A") == {"c6", "c7", "c8"}
    assert manifest["counts"]["excluded"] == {
        "counsel_chat": {"non_canonical": 1, "unredacted": 1},
        "counsel_chat_legacy": {"rejected_text_sft": 1},
        "esconv_failed": {"extracted_parent": 1}}


def test_an_answer_used_as_a_rejected_text_never_reaches_an_sft_shard(released):
    root, _, _ = released
    sft_answers = {m["content"] for s in LAYOUT if s.startswith("B/") for line in read_lines(root / "release", s)
                   for m in line["messages"] if m["role"] == "assistant"}
    assert REJECTED not in sft_answers
    domain = read_group(root / "release", "A/domain_text/train")
    assert [line["metadata"]["conversation_id"] for line in domain] == ["c7", "c8"]  # phase A keeps it as text


def test_each_phase_has_its_line_format(released):
    root, _, _ = released
    text = read_lines(root / "release", "A/domain_text/val-00000-of-00001.jsonl")
    assert text[0]["text"] == "User: My exams are soon.\n\nAssistant: Exams can feel overwhelming."
    sft = read_group(root / "release", "B/foundations_qa/train")
    assert [line["metadata"]["conversation_id"] for line in sft] == ["c1", "c7"]  # sorted by conversation_id
    assert sft[1]["messages"][0] == {"role": "user", "content": "Why can't I sleep at night?"}
    assert sft[1]["metadata"]["family"] == "counsel_chat_legacy" and sft[1]["metadata"]["split"] == "train"
    pref = read_lines(root / "release", "C/preference_alignment/test-00000-of-00001.jsonl")
    assert pref[0]["rejected"] == [{"role": "assistant", "content": PAIRS[1][4]}]
    assert pref[0]["metadata"]["family"] == "preference_synthetic"
    assert pref[0]["metadata"]["prompt_family"] == "counsel_chat"


def test_manifest_lists_every_shard_with_its_hash_size_and_records(released):
    root, _, manifest = released
    assert list(manifest)[:8] == ["release_id", "created_at", "code_version", "config_hash", "curriculum",
                                  "shards", "counts", "tables"]
    for s in manifest["shards"]:
        data = (root / "release" / s["path"]).read_bytes()
        assert (s["sha256"], s["bytes"], s["records"]) == (hashlib.sha256(data).hexdigest(), len(data),
                                                           data.count(b"\n"))
        assert s["path"].split("/")[:2] == [s["phase"], s["stage"]] and s["path"].split("/")[2].startswith(s["split"])
    counts = manifest["counts"]
    assert counts["records"] == 11 and counts["by_phase"] == {"A": 3, "B": 6, "C": 2}
    assert counts["by_family_split_phase"]["esconv_failed"] == {"val": {"A": 1, "B": 1}}
    assert counts["by_family_split_phase"]["preference_synthetic"] == {"test": {"C": 1}}
    assert manifest["curriculum"]["phase_c"]["algorithm"]["options"]["beta"] == 0.1
    assert manifest["release_id"].startswith("rel-")


def test_manifest_records_relative_table_paths_versions_and_history(released):
    root, _, manifest = released
    tables = {t["name"]: t for t in manifest["tables"]}
    assert sorted(tables) == ["conversations", "curriculum", "dup_clusters", "preference_pairs", "splits"]
    conv = tables["conversations"]
    assert (conv["path"], conv["version"]) == ("conversations", 0)
    assert [h["version"] for h in conv["history"]] == [0]
    assert sorted(conv["history"][0]) == ["operation", "operationMetrics", "timestamp", "userMetadata", "version"]
    assert json.loads(conv["history"][0]["userMetadata"])["run_id"] == "run-1"
    text = (root / "release" / "manifest.json").read_text() + (root / "release" / "croissant.json").read_text()
    assert str(root) not in text and mf.absolute_paths(manifest) == []


def test_croissant_describes_every_shard_from_the_manifest(released):
    root, _, manifest = released
    doc = json.loads((root / "release" / "croissant.json").read_text())
    assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    files = {d["contentUrl"]: d["sha256"] for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    assert files == {s["path"]: s["sha256"] for s in manifest["shards"]}
    assert [r["name"] for r in doc["recordSet"]] == ["pretraining_text", "sft_messages", "preference_pairs"]


def test_re_export_at_the_manifest_versions_is_byte_identical_after_tables_moved_on(spark, released):
    from etl.io import delta
    from etl.stages import export

    root, cfg, manifest = released
    extra = ("c10", "counsel_chat", msgs("A brand new question?", "A brand new answer."), True, None, "c10", "train")
    write_lake(spark, cfg, LAKE + [extra], "run-2")
    assert delta.current_version(spark, cfg.table_path("conversations")) == 1
    again_cfg = make_cfg(root, "again", export__max_shard_bytes=BOUND)
    again = export.export_release(spark, again_cfg, "run-2", versions=mf.versions_from_manifest(manifest))
    assert again["shards"] == manifest["shards"]
    for s in manifest["shards"]:
        assert (root / "again" / s["path"]).read_bytes() == (root / "release" / s["path"]).read_bytes()
    assert mf.versions_from_manifest(again) == mf.versions_from_manifest(manifest)


def test_every_shard_respects_the_byte_bound(released):
    _, _, manifest = released
    assert max(s["bytes"] for s in manifest["shards"]) <= BOUND
    assert [s["records"] for s in manifest["shards"] if s["path"].startswith("B/foundations_qa/train")] == [1, 1]


def test_a_failed_export_leaves_the_previous_release_whole(spark, released, monkeypatch):
    from etl.stages import export

    root, cfg, manifest = released
    before = {p: p.read_bytes() for p in (root / "release").rglob("*") if p.is_file()}

    def fail_after_first_record(release_root, rows, max_bytes, compression):
        next(iter(rows))
        (release_root / "A").mkdir()  # a half-written staging folder
        raise OSError("No space left on device")

    monkeypatch.setattr(export.shards, "write_sorted", fail_after_first_record)
    with pytest.raises(OSError, match="No space left"):
        export.export_release(spark, cfg, "run-crash", versions=mf.versions_from_manifest(manifest))
    assert {p: p.read_bytes() for p in (root / "release").rglob("*") if p.is_file()} == before
    assert not list(root.glob("release.staging-*"))


def test_publish_swaps_a_complete_release_into_place(tmp_path):
    from etl.stages.export import publish

    final, staging, old = tmp_path / "rel", tmp_path / "rel.staging-r2", tmp_path / "rel.old-r2"
    (final / "B").mkdir(parents=True)
    (final / "manifest.json").write_text("old")
    (tmp_path / "rel.old-r1").mkdir()  # left by a crash between the two renames of an earlier run
    staging.mkdir()
    (staging / "manifest.json").write_text("new")
    publish(staging, final, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]
    assert [p.name for p in final.iterdir()] == ["manifest.json"] and (final / "manifest.json").read_text() == "new"


def test_release_id_follows_the_shard_content_not_only_table_versions():
    versions = {"conversations": 0, "splits": 0}
    a = mf.derive_release_id(versions, "cfg", "cur", {"B/x/train-00000-of-00001.jsonl": "aa"})
    assert a == mf.derive_release_id(versions, "cfg", "cur", {"B/x/train-00000-of-00001.jsonl": "aa"})
    assert a != mf.derive_release_id(versions, "cfg", "cur", {"B/x/train-00000-of-00001.jsonl": "bb"})
    assert a.startswith("rel-") and len(a) == 20
