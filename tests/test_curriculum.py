"""curriculum: validation of conf/curriculum.yaml (pure) and the `curriculum` table it produces."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from etl.config import ConfigError, load_config
from etl.stages import curriculum as cur

REPO = Path(__file__).resolve().parents[1]
SFT_STAGES = ["foundations_qa", "empathetic_multiturn", "long_running_sessions", "edge_cases", "sarcasm",
              "roleplay_simulator", "adversarial_safety"]
SMALL = {
    "phases": {
        "A": {"stages": [{"name": "text"}]},
        "B": {"stages": [{"name": "qa", "depends_on": ["text"]}, {"name": "multi", "depends_on": ["qa"]}]},
        "C": {"algorithm": {"name": "dpo", "options": {"beta": 0.2, "loss_type": "ipo"}},
              "stages": [{"name": "pref", "depends_on": ["multi"]}]},
    },
    "routing": {"qa_fam": {"text": 1.0, "qa": 0.5}, "chat_fam": {"multi": 2}, "preference_ranked": {"pref": 1.0}},
}
SMALL_FAMILIES = ["qa_fam", "chat_fam", "preference_ranked"]


def small(**changes) -> dict:
    doc = copy.deepcopy(SMALL)
    for path, value in changes.items():
        node = doc
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


def shared_families() -> list[str]:
    return [f.name for f in load_config(str(REPO / "conf" / "shared_corpus.yaml"), check_paths=False).families]


def test_shipped_curriculum_routes_every_shared_corpus_family_in_seven_ordered_sft_stages():
    doc = yaml.safe_load((REPO / "conf" / "curriculum.yaml").read_text())
    c = cur.validate_curriculum(doc, shared_families())
    assert [s.name for s in c.stages if s.phase == "B"] == SFT_STAGES
    assert [s.order for s in c.stages if s.phase == "B"] == [1, 2, 3, 4, 5, 6, 7]
    assert {r["family"] for r in c.rows()} == {
        "counsel_chat", "counsel_chat_legacy", "hh_rlhf_harmless", "esconv_failed", "support_chat",
        "long_running_therapy", "edge_case_synthetic", "sarcasm", "roleplay_simulator", "preference_ranked",
        "preference_native", "preference_synthetic"}
    assert c.stage("preference_alignment").depends_on == ("adversarial_safety",)
    assert c.algorithm["name"] == "dpo" and c.algorithm["options"]["beta"] == 0.1


def test_rows_record_phase_stage_order_weight_and_dependencies():
    rows = cur.validate_curriculum(small(), SMALL_FAMILIES).rows()
    assert rows == [
        {"family": "qa_fam", "phase": "A", "stage": "text", "stage_order": 1, "weight": 1.0, "depends_on": []},
        {"family": "qa_fam", "phase": "B", "stage": "qa", "stage_order": 1, "weight": 0.5, "depends_on": ["text"]},
        {"family": "chat_fam", "phase": "B", "stage": "multi", "stage_order": 2, "weight": 2.0, "depends_on": ["qa"]},
        {"family": "preference_ranked", "phase": "C", "stage": "pref", "stage_order": 1, "weight": 1.0,
         "depends_on": ["multi"]},
    ]


def test_manifest_view_carries_phase_c_algorithm_options():
    view = cur.validate_curriculum(small(), SMALL_FAMILIES).to_manifest()
    assert view["phase_c"]["algorithm"] == {"name": "dpo", "options": {"beta": 0.2, "loss_type": "ipo"}}
    assert [s["name"] for s in view["phases"]["B"]["stages"]] == ["qa", "multi"]


@pytest.mark.parametrize("doc, families, expected", [
    (small(routing__chat_fam=None), SMALL_FAMILIES, "family chat_fam: is routed nowhere"),
    (small(routing__chat_fam={"nosuch": 1.0}), SMALL_FAMILIES, "routing.chat_fam: stage 'nosuch' does not exist"),
    (small(), SMALL_FAMILIES + ["sarcasm"], "family sarcasm: is routed nowhere"),
    (small(), ["qa_fam", "preference_ranked"], "routing.chat_fam: no family of that name"),
    (small(routing__chat_fam={"qa": 1.0, "multi": 1.0}), SMALL_FAMILIES, "both in phase B"),
    (small(routing__chat_fam={"pref": 1.0}), SMALL_FAMILIES, "family chat_fam belongs in phase A or B"),
    (small(routing__preference_ranked={"qa": 1.0}), SMALL_FAMILIES, "family preference_ranked belongs in phase C"),
    (small(routing__chat_fam={"multi": 0}), SMALL_FAMILIES, "weight must be a number > 0"),
])
def test_bad_routing_is_a_one_line_config_error_naming_family_and_stage(doc, families, expected):
    with pytest.raises(ConfigError) as err:
        cur.validate_curriculum(doc, families, source="curriculum.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("changes, expected", [
    ({"phases__B__stages": [{"name": "qa", "depends_on": ["multi"]}, {"name": "multi"}]},
     "stage qa: depends_on 'multi', which does not come before it"),
    ({"phases__B__stages": [{"name": "qa", "depends_on": ["ghost"]}, {"name": "multi"}]},
     "stage qa: depends_on 'ghost', a stage that does not exist"),
    ({"phases__B__stages": [{"name": "text"}, {"name": "multi"}]}, "stage text: declared twice"),
    ({"phases__B__stages": [{"name": "Bad Name"}]}, "must match [a-z][a-z0-9_]*"),
    ({"phases__D": {"stages": [{"name": "x"}]}}, "phases.D: unknown phase"),
    ({"phases__C__algorithm": {"name": "magic"}}, "phases.C.algorithm: needs `name:`"),
    ({"phases__C__algorithm": {"name": "dpo", "options": {"beta": -1}}}, "options.beta: must be a number > 0"),
    ({"phases__C": None}, "preference families are configured but phase C is missing"),
])
def test_bad_phase_or_stage_definition_is_a_config_error(changes, expected):
    with pytest.raises(ConfigError, match=None) as err:
        cur.validate_curriculum(small(**changes), SMALL_FAMILIES)
    assert expected in str(err.value)


def test_missing_curriculum_file_names_the_key(make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path), export__curriculum=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="export.curriculum: .*nope.yaml not found"):
        cur.load_curriculum(cfg)


def test_run_writes_resolved_routing_and_a_rerun_adds_no_version(spark, make_config, tmp_path):
    from etl.io import delta

    cfg = make_config("shared_corpus.yaml", raw_root=str(tmp_path))
    first = cur.run(spark, cfg, "run-1")
    version = delta.current_version(spark, cfg.table_path("curriculum"))
    rows = delta.read_table(spark, cfg, "curriculum").where("family = 'esconv_failed'").orderBy("phase").collect()
    assert [(r["phase"], r["stage"], r["stage_order"], r["weight"], list(r["depends_on"])) for r in rows] == [
        ("A", "domain_text", 1, 1.0, []), ("B", "empathetic_multiturn", 2, 0.3, ["foundations_qa"])]
    second = cur.run(spark, cfg, "run-2")
    assert (first["rows"], first["changed"], second["changed"]) == (14, True, False)
    assert delta.current_version(spark, cfg.table_path("curriculum")) == version
