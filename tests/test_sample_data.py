"""The sample raw tree: deterministic, readable by the readers, and its ground truth matches what is in the files."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from etl.contract import canonical_text
from etl.readers import ReaderLimits, Record, read_object
from etl.sample_data import write_sample

# The sample uses the real corpus's routing (conf/sample.yaml extends conf/shared_corpus.yaml).
REPO = Path(__file__).resolve().parents[1]
FAMILIES = yaml.safe_load((REPO / "conf" / "shared_corpus.yaml").read_text())["families"]
FILES = {  # file -> family
    "counsel_chat/sample_counsel_chat.csv": "counsel_chat",
    "counsel_chat_legacy/sample_legacy.csv": "counsel_chat_legacy",
    "hh_rlhf_harmless/sample.jsonl.gz": "hh_rlhf_harmless",
    "esconv_failed/sample_sessions.json": "esconv_failed",
    "support_chat/sample_chat.jsonl": "support_chat",
}
PLANTED_ERRORS = {  # what the generator is meant to plant, written out by hand
    "counsel_chat/sample_counsel_chat.csv": {"no_assistant_turn": 1},
    "counsel_chat_legacy/sample_legacy.csv": {"no_assistant_turn": 1, "malformed_row": 1, "invalid_utf8": 1},
    "hh_rlhf_harmless/sample.jsonl.gz": {"malformed_json": 1, "invalid_utf8": 1, "no_assistant_turn": 1},
    "esconv_failed/sample_sessions.json": {"wrong_type": 1, "no_assistant_turn": 1},
    "support_chat/sample_chat.jsonl": {"malformed_json": 1, "invalid_utf8": 1, "no_assistant_turn": 1, "bad_role": 1},
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict, dict[str, dict[str, Record]]]:
    """The default sample, its ground truth, and every Record read back: file -> locator -> Record."""
    root = tmp_path_factory.mktemp("sample")
    truth = write_sample(str(root))
    records = {}
    for key, family in FILES.items():
        conf = FAMILIES[family]
        with open(root / key, "rb") as stream:
            records[key] = {r.locator: r for r in read_object(conf["format"], stream, conf.get("options", {}),
                                                               ReaderLimits())}
    return root, truth, records


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_byte_identical_trees_and_another_seed_does_not(tmp_path):
    write_sample(str(tmp_path / "a"), seed=7)
    write_sample(str(tmp_path / "b"), seed=7)
    write_sample(str(tmp_path / "c"), seed=8)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert sorted(a) == sorted(c) and a != c


def test_tree_mimics_the_real_corpus_layout_with_a_license_per_folder(sample):
    root, _, _ = sample
    assert sorted(tree_bytes(root)) == sorted([*FILES, *(f"{Path(k).parent}/LICENSE" for k in FILES)])
    header = (root / "counsel_chat/sample_counsel_chat.csv").read_text().splitlines()[0]
    real = (REPO / ".." / "shared/data/raw/counsel_chat/20200325_counsel_chat.csv").open().readline().strip()
    assert header == real


def test_every_planted_error_and_only_those_come_back_from_the_readers(sample):
    _, truth, records = sample
    for key in FILES:
        got = Counter(r.error for r in records[key].values() if r.error)
        assert got == PLANTED_ERRORS[key], key
        assert truth["files"][key]["errors"] == PLANTED_ERRORS[key]
        assert len(records[key]) == truth["files"][key]["records"]
    planted = sorted((m["file"], m["locator"], m["reason"]) for m in truth["malformed"])
    found = sorted((key, loc, r.error) for key in FILES for loc, r in records[key].items() if r.error)
    assert found == planted
    assert len(planted) == 13


def test_sizes_are_about_sixty_questions_with_two_or_three_answers(sample):
    _, _, records = sample
    qa = [r for key in list(FILES)[:2] for r in records[key].values() if r.error is None]
    per_question = Counter(r.messages[0]["content"] for r in qa)  # legacy near-copies repeat their question
    assert 58 <= len(per_question) <= 64
    assert 2.0 <= len(qa) / len(per_question) <= 3.0


def test_exact_duplicates_are_identical_conversations(sample):
    _, truth, records = sample
    kinds = [d["kind"] for d in truth["exact_duplicates"]]
    assert kinds == ["same_row_twice", "same_line_twice"]
    for dup in truth["exact_duplicates"]:
        a, b = (records[key][loc] for key, loc in dup["members"])
        assert a.messages == b.messages and a.locator != b.locator


def test_near_duplicates_differ_in_bytes_but_not_much_in_words(sample):
    _, truth, records = sample
    assert Counter(d["kind"] for d in truth["near_duplicates"]) == {
        "legacy_html_whitespace_edit": 3, "truncated_copy": 1, "lowercase_retokenised": 1}
    for dup in truth["near_duplicates"]:
        (key_a, loc_a), (key_b, loc_b) = dup["members"]
        a, b = records[key_a][loc_a], records[key_b][loc_b]
        answer_a, answer_b = (canonical_text(r.messages[-1]["content"]).lower().split() for r in (a, b))
        assert answer_a != answer_b
        overlap = len(set(answer_a) & set(answer_b)) / len(set(answer_a) | set(answer_b))
        assert overlap > 0.6, dup
        if dup["kind"] == "legacy_html_whitespace_edit":
            assert "<p>" in b.raw_text and "&nbsp;" in b.raw_text and a.messages[0] == b.messages[0]


def test_reused_answer_sits_under_another_question(sample):
    _, truth, records = sample
    [related] = truth["related"]
    a, b = (records[key][loc] for key, loc in related["members"])
    assert a.messages[1] == b.messages[1] and a.messages[0] != b.messages[0]


def test_every_planted_pii_value_is_in_its_record(sample):
    _, truth, records = sample
    assert Counter(p["kind"] for p in truth["pii"]) == {"email": 2, "phone": 3, "name": 3, "address": 2,
                                                         "signature": 1}
    for pii in truth["pii"]:
        record = records[pii["file"]][pii["locator"]]
        assert record.error is None
        assert any(pii["value"] in m["content"] for m in record.messages), pii


def test_long_sessions_have_their_turn_counts_after_merging(sample):
    _, truth, records = sample
    turns = sorted(s["turns"] for s in truth["long_sessions"])
    assert turns == [26, 32, 64]
    for session in truth["long_sessions"]:
        assert len(records[session["file"]][session["locator"]].messages) == session["turns"]


def test_hh_pairs_share_their_prompt_prefix(sample):
    _, _, records = sample
    good = [r for r in records["hh_rlhf_harmless/sample.jsonl.gz"].values() if r.error is None]
    assert {r.metadata["pair_shares_prefix"] for r in good} == {"true"}
    assert {r.metadata["prompt_turns"] for r in good} == {"1", "3"}


def test_scale_multiplies_records(tmp_path):
    small, large = write_sample(str(tmp_path / "s"), scale=1), write_sample(str(tmp_path / "l"), scale=3)
    for key in FILES:
        ratio = large["files"][key]["records"] / small["files"][key]["records"]
        assert 2.4 < ratio < 3.2, key


def test_module_cli_writes_the_tree(tmp_path):
    done = subprocess.run([sys.executable, "-m", "etl.sample_data", "--out", str(tmp_path), "--seed", "3"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    assert '"records"' in done.stdout
    assert tree_bytes(tmp_path) == tree_bytes_of_fresh(tmp_path.parent / "fresh", seed=3)


def tree_bytes_of_fresh(root: Path, seed: int) -> dict[str, bytes]:
    write_sample(str(root), seed=seed)
    return tree_bytes(root)
