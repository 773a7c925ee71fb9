"""curriculum: conf/curriculum.yaml -> `curriculum` (family -> phase, stage, order, weight, dependencies).

Validation is a pure function over the parsed YAML and the configured family names, so a bad routing fails
with one line naming the family or stage before any Spark work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from etl.config import Config, ConfigError, load_yaml_file
from etl.io import delta
from etl.schemas import CURRICULUM, CURRICULUM_SCHEMA

log = logging.getLogger(__name__)

PHASE_PRETRAIN, PHASE_SFT, PHASE_PREFERENCE = "A", "B", "C"
PHASES = (PHASE_PRETRAIN, PHASE_SFT, PHASE_PREFERENCE)
PHASE_FORMATS = {PHASE_PRETRAIN: "text", PHASE_SFT: "messages", PHASE_PREFERENCE: "preference"}
ALGORITHMS = ("dpo", "ipo", "kto", "orpo", "cpo", "simpo")

# Preference pairs take their curriculum family from the strategy that built them (DESIGN §5).
STRATEGY_FAMILY = {
    "ranked": "preference_ranked",
    "native": "preference_native",
    "hard_negative": "preference_synthetic",
    "degraded": "preference_synthetic",
    "safety": "preference_synthetic",
}
PAIR_FAMILIES = frozenset(STRATEGY_FAMILY.values())
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Stage:
    """One training stage: its phase, order within the phase, prerequisites and family weights."""

    name: str
    phase: str
    order: int
    description: str = ""
    depends_on: tuple[str, ...] = ()
    families: dict = field(default_factory=dict)  # family -> weight


@dataclass(frozen=True)
class Curriculum:
    """The validated curriculum: phases, stages in phase order, phase C algorithm, source digest."""

    phases: dict  # phase -> {"name", "description", "format"}
    stages: tuple[Stage, ...]
    algorithm: dict
    sha256: str = ""

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def rows(self) -> list[dict]:
        """Rows of the `curriculum` table, one per (family, stage), in phase/stage/family order."""
        return [{"family": fam, "phase": s.phase, "stage": s.name, "stage_order": s.order,
                 "weight": float(w), "depends_on": list(s.depends_on)}
                for s in self.stages for fam, w in sorted(s.families.items())]

    def to_manifest(self) -> dict:
        """JSON-ready description: phases with their ordered stages, and the phase C algorithm options."""
        phases = {}
        for phase, meta in self.phases.items():
            phases[phase] = {**meta, "stages": [
                {"name": s.name, "order": s.order, "description": s.description,
                 "depends_on": list(s.depends_on), "families": dict(sorted(s.families.items()))}
                for s in self.stages if s.phase == phase]}
        return {"phases": phases, "phase_c": {"algorithm": self.algorithm}, "source_sha256": self.sha256}


def _err(source: str, where: str, what: str) -> ConfigError:
    return ConfigError(f"{source} {where}: {what}")


def _parse_stage(raw: object, phase: str, order: int, source: str) -> Stage:
    where = f"phases.{phase}.stages[{order - 1}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _err(source, where, "each stage needs a `name:` (lowercase letters, digits, _)")
    name = raw["name"]
    if not _STAGE_NAME.match(name):
        raise _err(source, where, f"stage name {name!r} must match [a-z][a-z0-9_]* (it is a release folder name)")
    unknown = set(raw) - {"name", "description", "depends_on"}
    if unknown:
        raise _err(source, f"{where} ({name})", f"unknown keys {sorted(unknown)}; use name, description, depends_on")
    deps = raw.get("depends_on") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise _err(source, f"stage {name}", "depends_on must be a list of stage names")
    return Stage(name=name, phase=phase, order=order, description=str(raw.get("description") or ""),
                 depends_on=tuple(deps))


def _parse_algorithm(raw: object, source: str) -> dict:
    if not isinstance(raw, dict) or raw.get("name") not in ALGORITHMS:
        raise _err(source, "phases.C.algorithm", f"needs `name:` one of {', '.join(ALGORITHMS)}")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise _err(source, "phases.C.algorithm.options", "must be a mapping of trainer options")
    beta = options.get("beta")
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta <= 0):
        raise _err(source, "phases.C.algorithm.options.beta", f"must be a number > 0, got {beta!r}")
    return json.loads(json.dumps(raw))  # plain JSON types only, so the manifest can carry it


def _parse_phases(doc: dict, source: str) -> tuple[dict, list[Stage], dict]:
    phases_raw = doc.get("phases")
    if not isinstance(phases_raw, dict) or not phases_raw:
        raise _err(source, "phases", f"needs a mapping of phases ({', '.join(PHASES)}) to their stages")
    phases, stages, algorithm = {}, [], {}
    for phase, body in phases_raw.items():
        if phase not in PHASES:
            raise _err(source, f"phases.{phase}", f"unknown phase; use {', '.join(PHASES)}")
        if not isinstance(body, dict) or not isinstance(body.get("stages"), list) or not body["stages"]:
            raise _err(source, f"phases.{phase}", "needs a non-empty `stages:` list")
        phases[phase] = {"name": str(body.get("name") or phase), "description": str(body.get("description") or ""),
                         "format": PHASE_FORMATS[phase]}
        stages += [_parse_stage(raw, phase, i + 1, source) for i, raw in enumerate(body["stages"])]
        if phase == PHASE_PREFERENCE:
            algorithm = _parse_algorithm(body.get("algorithm"), source)
        elif "algorithm" in body:
            raise _err(source, f"phases.{phase}.algorithm", "only phase C takes an algorithm")
    seen: set[str] = set()
    for s in stages:
        if s.name in seen:
            raise _err(source, f"stage {s.name}", "declared twice; stage names are unique across phases")
        seen.add(s.name)
    ordered = sorted(phases, key=PHASES.index)
    return {p: phases[p] for p in ordered}, sorted(stages, key=lambda s: (PHASES.index(s.phase), s.order)), algorithm


def _check_dependencies(stages: list[Stage], source: str) -> None:
    rank = {s.name: i for i, s in enumerate(stages)}
    for s in stages:
        for dep in s.depends_on:
            if dep not in rank:
                raise _err(source, f"stage {s.name}", f"depends_on {dep!r}, a stage that does not exist")
            if rank[dep] >= rank[s.name]:
                raise _err(source, f"stage {s.name}", f"depends_on {dep!r}, which does not come before it "
                                                      "(phases run A, B, C; stages in list order)")


def _route(routing: object, stages: list[Stage], families: list[str], source: str) -> dict[str, dict]:
    """family -> {stage: weight}, checked against the stages and the configured families."""
    if not isinstance(routing, dict):
        raise _err(source, "routing", "needs a mapping of family -> {stage: weight}")
    by_name = {s.name: s for s in stages}
    out: dict[str, dict] = {s.name: {} for s in stages}
    for fam, targets in routing.items():
        if fam not in families:
            raise _err(source, f"routing.{fam}", "no family of that name in the conf families; remove or rename it")
        if not isinstance(targets, dict) or not targets:
            raise _err(source, f"routing.{fam}", "needs a mapping {stage: weight} with at least one stage")
        used_phases: dict[str, str] = {}
        for stage_name, weight in targets.items():
            stage = by_name.get(stage_name)
            if stage is None:
                raise _err(source, f"routing.{fam}", f"stage {stage_name!r} does not exist; "
                                                     f"stages are {', '.join(by_name)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise _err(source, f"routing.{fam}.{stage_name}", f"weight must be a number > 0, got {weight!r}")
            if stage.phase in used_phases:
                raise _err(source, f"routing.{fam}", f"routed to {used_phases[stage.phase]} and {stage_name}, both in "
                                                     f"phase {stage.phase}; use one stage per phase")
            is_pair = fam in PAIR_FAMILIES
            if is_pair != (stage.phase == PHASE_PREFERENCE):
                need = "phase C" if is_pair else "phase A or B"
                raise _err(source, f"routing.{fam}", f"stage {stage_name} is in phase {stage.phase}; "
                                                     f"family {fam} belongs in {need}")
            used_phases[stage.phase] = stage_name
            out[stage_name][fam] = float(weight)
    for fam in families:
        if fam not in routing:
            raise _err(source, f"family {fam}", "is routed nowhere; add it under `routing:` with at least one stage")
    return out


def validate_curriculum(doc: dict, families: Iterable[str], source: str = "curriculum") -> Curriculum:
    """Parse and check a curriculum document; raises ConfigError naming the family or stage at fault."""
    if not isinstance(doc, dict):
        raise _err(source, "top level", "must be a mapping with `phases:` and `routing:`")
    unknown = set(doc) - {"phases", "routing"}
    if unknown:
        raise _err(source, "top level", f"unknown keys {sorted(unknown)}; use phases and routing")
    families = list(families)
    phases, stages, algorithm = _parse_phases(doc, source)
    if PHASE_PREFERENCE not in phases and any(f in PAIR_FAMILIES for f in families):
        raise _err(source, "phases.C", "preference families are configured but phase C is missing")
    _check_dependencies(stages, source)
    routed = _route(doc.get("routing"), stages, families, source)
    stages = [Stage(s.name, s.phase, s.order, s.description, s.depends_on, routed[s.name]) for s in stages]
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return Curriculum(phases=phases, stages=tuple(stages), algorithm=algorithm, sha256=digest)


def resolve_path(path: str) -> str:
    """The curriculum file: as given, else relative to the working dir, else relative to the repository."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    repo = Path(__file__).resolve().parents[2]
    return str(repo / path) if (repo / path).exists() else path


def load_curriculum(cfg: Config) -> Curriculum:
    """Read cfg.export.curriculum and validate it against the configured families."""
    path = resolve_path(cfg.export.curriculum)
    doc = load_yaml_file(path, f"export.curriculum: {cfg.export.curriculum} not found; point it at conf/curriculum.yaml",
                         f"export.curriculum: {path} is not valid YAML")
    return validate_curriculum(doc, [f.name for f in cfg.families], source=os.path.basename(path))


def curriculum_frame(spark: SparkSession, cur: Curriculum) -> DataFrame:
    """The resolved routing as a `curriculum` table DataFrame."""
    return spark.createDataFrame(cur.rows(), CURRICULUM_SCHEMA)


def run(spark: SparkSession, cfg: Config, run_id: str) -> dict:
    """Validate conf/curriculum.yaml and write the resolved routing (a no-op when unchanged)."""
    cur = load_curriculum(cfg)
    result = delta.write_table(curriculum_frame(spark, cur), cfg, CURRICULUM, run_id, "curriculum")
    for s in cur.stages:
        log.info("curriculum %s/%s (order %d, after %s): %s", s.phase, s.name, s.order,
                 ",".join(s.depends_on) or "-", ", ".join(f"{f}={w:g}" for f, w in sorted(s.families.items())))
    return {"rows": result.rows, "stages": len(cur.stages), "changed": result.changed,
            "phases": ",".join(cur.phases)}
