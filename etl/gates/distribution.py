"""distribution gate: split ratios per family within `verify.split_tolerance`, and the family mix per stage.

Ratios are measured over a family's exported train/val/test records (holdout rows aside) and checked only for
families with at least `verify.min_rows_for_ratio_check` of them: a small family's ratio is noise. The family mix
must follow the curriculum routing at the manifest's version: a record exported under a stage its family is not
routed to fails the gate; routed families with no exported record are reported.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.gates.base import SPLIT_HOLDOUT, GateResult, ReleaseView
from etl.schemas import CONVERSATIONS, CURRICULUM, PREFERENCE_PAIRS

GATE = "distribution"


def record_groups(records: DataFrame) -> DataFrame:
    """(family, phase, stage, split, records): the one aggregate every figure of this gate comes from."""
    return records.groupBy("family", "phase", "stage", "split").agg(F.count(F.lit(1)).alias("records"))


def split_counts(groups: list[dict]) -> dict[str, dict[str, int]]:
    """{family: {split: records}} over train/val/test (holdout and family-less records aside)."""
    out: dict[str, dict[str, int]] = {}
    for g in groups:
        if g["family"] is not None and g["split"] != SPLIT_HOLDOUT:
            fam = out.setdefault(g["family"], {})
            fam[g["split"]] = fam.get(g["split"], 0) + g["records"]
    return out


def ratio_problems(counts: dict[str, dict[str, int]], ratios: dict, tolerance: float, min_rows: int) -> tuple[dict, list]:
    """(observed ratios of checked families, problems) from {family: {split: records}} (plain Python)."""
    observed, problems = {}, []
    for family in sorted(counts):
        total = sum(counts[family].values())
        if total < min_rows:
            continue
        shares = {split: round(counts[family].get(split, 0) / total, 4) for split in sorted(ratios)}
        observed[family] = {"rows": total, **shares}
        for split, expected in sorted(ratios.items()):
            if abs(shares[split] - float(expected)) > tolerance:
                problems.append({"family": family, "split": split, "observed": shares[split],
                                 "expected": float(expected), "rows": total})
    return observed, problems


def stage_mix(groups: list[dict]) -> dict:
    """{phase/stage: {family: share of the stage's records}} for the report."""
    per_stage: dict[str, dict[str, int]] = {}
    for g in groups:
        fam = per_stage.setdefault(f"{g['phase']}/{g['stage']}", {})
        fam[str(g["family"])] = fam.get(str(g["family"]), 0) + g["records"]
    return {stage: {f: round(n / sum(fams.values()), 4) for f, n in sorted(fams.items())}
            for stage, fams in sorted(per_stage.items())}


def routing_problems(groups: list[dict], routes: list[dict], families_with_rows: set[str]) -> tuple[list, list]:
    """(misrouted groups, routed-but-empty routings) from the record groups and the curriculum rows."""
    routed = {(r["family"], r["phase"], r["stage"]) for r in routes}
    present = {(g["family"], g["phase"], g["stage"]) for g in groups}
    wrong: dict[tuple, int] = {}
    for g in groups:
        key = (g["family"], g["phase"], g["stage"])
        if key not in routed:
            wrong[key] = wrong.get(key, 0) + g["records"]
    misrouted = [{"problem": "misrouted", "family": f, "phase": p, "stage": s, "records": n}
                 for (f, p, s), n in sorted(wrong.items(), key=lambda kv: tuple(map(str, kv[0])))]
    empty = sorted(f"{r['family']} -> {r['phase']}/{r['stage']}" for r in routes
                   if r["weight"] > 0 and r["family"] in families_with_rows
                   and (r["family"], r["phase"], r["stage"]) not in present)
    return misrouted, empty


def check(view: ReleaseView) -> GateResult:
    """Fail on a split ratio out of tolerance (big families) or a record outside its family's routing."""
    groups = [r.asDict() for r in record_groups(view.records).collect()]
    vconf = view.cfg.verify
    observed, problems = ratio_problems(split_counts(groups), view.cfg.splits.ratios, vconf.split_tolerance,
                                        vconf.min_rows_for_ratio_check)
    routes = [r.asDict() for r in view.table(CURRICULUM).select("family", "phase", "stage", "weight").collect()]
    figures = {"families_checked": len(observed), "ratio_problems": len(problems), "ratios": observed,
               "tolerance": vconf.split_tolerance, "min_rows_for_ratio_check": vconf.min_rows_for_ratio_check,
               "stage_mix": stage_mix(groups), "curriculum": "present" if routes else "absent"}
    examples = [{"problem": "split_ratio", **p} for p in problems]
    misrouted: list = []
    if routes:
        with_rows = {r["family"] for r in view.table(CONVERSATIONS).select("family")
                     .unionByName(view.table(PREFERENCE_PAIRS).select("family")).distinct().collect()}
        misrouted, figures["routed_but_empty"] = routing_problems(groups, routes, with_rows)
        figures["misrouted_records"] = sum(m["records"] for m in misrouted)
    return GateResult(GATE, not problems and not misrouted, figures, (examples + misrouted)[: view.max_examples])
