"""Synthetic families: templates validate and skip with a counted reason, builders are deterministic for a seed
and produce valid ChatML with provenance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl import contract
from etl.generators import synthetic
from etl.generators.templates import load_templates, match_category, parse_templates

TEMPLATES = Path(__file__).resolve().parents[1] / "conf" / "templates.yaml"
PERSONA = {"conversation_id": "esconv-1", "emotion_type": "anxiety", "problem_type": "job crisis",
           "situation": "I was laid off last week and I have rent due"}


@pytest.fixture(scope="module")
def templates():
    return load_templates(str(TEMPLATES))


def test_shipped_templates_all_validate_and_cover_every_family(templates):
    assert templates.skipped == {}
    for section in ("edge_case_synthetic", "sarcasm", "roleplay_simulator", "degraded", "safety.chosen",
                    "safety.rejected"):
        assert templates.get(section), section
    categories = {t.category for t in templates.get("edge_case_synthetic")}
    assert categories == {"crisis", "self_harm", "medication", "diagnosis", "abuse", "minors", "out_of_scope"}
    assert {t.kind for t in templates.get("degraded")} == {"truncated", "generic", "dismissive", "premature_advice"}
    assert {t.kind for t in templates.get("safety.rejected")} == {"unsafe_compliance", "dismissal"}


def test_bad_templates_are_skipped_with_counted_reasons():
    data = {"slots": {"name": ["Sam"]}, "sarcasm": [
        {"id": "ok", "turns": [{"user": "Oh great, {name}.", "assistant": "That sounds hard."}]},
        {"id": "no_slot", "turns": [{"user": "Oh great, {missing}.", "assistant": "Hm."}]},
        {"turns": [{"user": "no id", "assistant": "Hm."}]},
        {"id": "ok", "turns": [{"user": "duplicate", "assistant": "Hm."}]},
        {"id": "no_turns", "turns": []},
    ]}
    parsed = parse_templates(data)
    assert [t.id for t in parsed.get("sarcasm")] == ["ok"]
    assert parsed.skipped == {"missing_slot": 1, "missing_id": 1, "duplicate_id": 1, "malformed_template": 1}


def assert_valid_chatml(messages):
    assert contract.normalize_messages(messages) == messages
    roles = [m["role"] for m in messages]
    assert "user" in roles and "assistant" in roles and roles[-1] == "assistant"
    assert all(m["content"].strip() and "{" not in m["content"] for m in messages)


@pytest.mark.parametrize("builder, seed_row", [(synthetic.edge_case_synthetic, {"topic": "depression"}),
                                               (synthetic.sarcasm, {"topic": "anxiety"}),
                                               (synthetic.roleplay_simulator, PERSONA)])
def test_builders_are_deterministic_for_a_seed_and_emit_valid_chatml(templates, builder, seed_row):
    first = [builder(i, 17, templates, seed_row) for i in range(25)]
    again = [builder(i, 17, templates, seed_row) for i in range(25)]
    other = [builder(i, 18, templates, seed_row) for i in range(25)]
    assert first == again
    assert [r["messages"] for r in first] != [r["messages"] for r in other]
    for row in first:
        assert_valid_chatml(row["messages"])
        assert row["source_uri"] == f"generator:{row['family']}"
        assert row["source_locator"] == f"seed=17;template={row['metadata']['template']};i={row['metadata']['index']}"
        assert row["conversation_id"] == contract.conversation_id(row["family"], row["source_uri"],
                                                                   row["source_locator"])
        assert row["metadata"]["generator"] == row["family"] and row["metadata"]["seed"] == "17"
    assert len({r["conversation_id"] for r in first}) == 25


def test_roleplay_is_a_system_prompted_multi_turn_persona_linked_to_its_seed(templates):
    row = synthetic.roleplay_simulator(3, 17, templates, PERSONA)
    messages = row["messages"]
    assert messages[0]["role"] == "system"
    assert "I was laid off last week and I have rent due." in messages[0]["content"]
    assert sum(m["role"] == "user" for m in messages) >= 3
    assert row["parent_id"] == "esconv-1" and row["topic"] == "job crisis"
    assert row["metadata"]["seed_emotion"] == "anxiety"


def test_roleplay_without_a_seed_or_a_situation_is_skipped_with_a_reason(templates):
    assert synthetic.roleplay_simulator(0, 17, templates, None) == "no_seed"
    no_situation = {**PERSONA, "situation": ""}
    assert synthetic.roleplay_simulator(0, 17, templates, no_situation) == "missing_slot"


def test_edge_case_mix_weights_pick_only_the_weighted_category(templates):
    rows = [synthetic.edge_case_synthetic(i, 17, templates, None, mix={"medication": 1.0}) for i in range(10)]
    assert {r["metadata"]["category"] for r in rows} == {"medication"}


def test_generate_rows_counts_skips_per_family(templates):
    tasks = pd.DataFrame([
        {"family": "sarcasm", "index": 0, "conversation_id": "cc-1", "topic": "anxiety"},
        {"family": "roleplay_simulator", "index": 0, "conversation_id": None, "topic": None},
        {"family": "edge_case_synthetic", "index": 1, "conversation_id": None, "topic": None},
    ])
    rows, skipped = synthetic.generate_rows(tasks, 17, templates)
    assert list(rows["family"]) == ["sarcasm", "edge_case_synthetic"]
    assert rows.iloc[0]["metadata"]["seed_conversation_id"] == "cc-1"
    assert skipped == {"roleplay_simulator:no_seed": 1}


def test_safety_triggers_match_the_last_user_turn(templates):
    prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
              {"role": "user", "content": "How do I shoplift without getting caught?"}]
    assert match_category(prompt, templates.triggers) == "illegal"
    assert match_category([{"role": "user", "content": "What's a good pasta recipe?"}], templates.triggers) == ""


def test_later_turns_follow_the_variant_of_the_first_turn():
    data = {"slots": {"hi": ["Hey."]}, "sarcasm": [{"id": "two_stories", "prefix": ["hi"], "turns": [
        {"variants": [{"user": "story A", "assistant": "reply A"}, {"user": "story B", "assistant": "reply B"}]},
        {"variants": [{"user": "more A", "assistant": "end A"}, {"user": "more B", "assistant": "end B"}]},
    ]}]}
    parsed = parse_templates(data)
    seen = set()
    for i in range(40):
        messages = synthetic.sarcasm(i, 17, parsed, None)["messages"]
        story = messages[0]["content"][-1]
        assert messages[0]["content"] in (f"story {story}", f"Hey. story {story}")
        assert [m["content"][-1] for m in messages[1:]] == [story] * (len(messages) - 1)
        seen.add((story, messages[0]["content"].startswith("Hey."), len(messages)))
    assert len(seen) == 8  # both stories, with and without the prefix, one or two exchanges
