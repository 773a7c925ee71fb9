"""Conversation builders for the synthetic families: edge_case_synthetic, sarcasm, roleplay_simulator.

Each conversation is a pure function of (seed, family, index, seed row): the template is picked with a
random.Random derived from (seed, family, index) and filled with one derived from (seed, template id, index),
never the global random state, so a Spark task retry or a rerun rebuilds exactly the same rows.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pandas as pd

from etl import contract
from etl.generators.templates import (
    SECTION_EDGE,
    SECTION_ROLEPLAY,
    SECTION_SARCASM,
    SKIP_MISSING_SLOT,
    MissingSlot,
    Template,
    TemplateSet,
    render,
)
from etl.schemas import ROLE_ASSISTANT, ROLE_SYSTEM, ROLE_USER

FAMILIES = (SECTION_EDGE, SECTION_SARCASM, SECTION_ROLEPLAY)
SOURCE_PREFIX = "generator:"
SKIP_NO_TEMPLATE = "no_template"
SKIP_NO_SEED = "no_seed"
SKIP_INVALID = "invalid_conversation"

# Columns of a generated row (the stage adds run id, PII redaction and the content hash).
ROW_COLUMNS = ("conversation_id", "family", "source_uri", "source_locator", "messages", "metadata", "topic",
               "parent_id")


def derive_seed(*parts) -> int:
    """A 64-bit integer from stable parts (sha256), for random.Random: the same parts, the same stream."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def rng_for(*parts) -> random.Random:
    """A private random.Random seeded from stable parts (never the global random state)."""
    return random.Random(derive_seed(*parts))


def pick_template(templates: list[Template], family: str, seed: int, index: int, mix: dict | None) -> Template | None:
    """Weighted by category (`mix`: category -> weight; absent or empty mix = uniform over templates)."""
    if not templates:
        return None
    mix = mix or {}
    weights = [float(mix.get(t.category, 0.0)) if mix else 1.0 for t in templates]
    if sum(weights) <= 0:
        weights = [1.0] * len(templates)
    return rng_for(seed, family, "template", index).choices(templates, weights=weights, k=1)[0]


def _sentence(text: str) -> str:
    text = " ".join(str(text or "").split())
    return text if not text or text[-1] in ".!?\"'" else text + "."


def seed_values(family: str, seed_row: dict | None) -> dict:
    """Slot values the seed row provides: counsel_chat topic, or the esconv persona."""
    row = seed_row or {}
    if family == SECTION_ROLEPLAY:
        return {"emotion": str(row.get("emotion_type") or "").strip().lower(),
                "problem": str(row.get("problem_type") or "").strip().lower(),
                "situation": _sentence(row.get("situation") or "")}
    return {"topic": str(row.get("topic") or "").strip().lower()}


def build_messages(template: Template, values: dict, slots: dict, seed: int, index: int, all_turns: bool) -> list[dict]:
    """Render a template into ChatML turns; `all_turns` False keeps a random non-empty prefix of exchanges."""
    rng = rng_for(seed, template.id, index)
    messages = []
    if template.system:
        messages.append({"role": ROLE_SYSTEM, "content": render(template.system, values, slots, rng)})
    n = len(template.turns) if all_turns else rng.randint(1, len(template.turns))
    first = rng.randrange(len(template.turns[0]))
    opener = rng.choice((None,) + template.prefix)
    for k, variants in enumerate(template.turns[:n]):
        # a turn with as many variants as the first one continues the same variant (the same storyline)
        user, assistant = variants[first] if len(variants) == len(template.turns[0]) else rng.choice(variants)
        text = render(user, values, slots, rng)
        if k == 0 and opener:
            text = render(f"{{{opener}}}", values, slots, rng) + " " + text
        messages.append({"role": ROLE_USER, "content": text})
        messages.append({"role": ROLE_ASSISTANT, "content": render(assistant, values, slots, rng)})
    return messages


def generate_one(family: str, index: int, seed: int, templates: TemplateSet, seed_row: dict | None,
                 mix: dict | None = None) -> dict | str:
    """One generated conversation row (ROW_COLUMNS), or the reason it was skipped."""
    if family == SECTION_ROLEPLAY and not seed_row:
        return SKIP_NO_SEED
    template = pick_template(templates.get(family), family, seed, index, mix)
    if template is None:
        return SKIP_NO_TEMPLATE
    values = seed_values(family, seed_row)
    try:
        messages = build_messages(template, values, templates.slots, seed, index, family == SECTION_ROLEPLAY)
        messages = contract.normalize_messages(messages)
    except MissingSlot:
        return SKIP_MISSING_SLOT
    except contract.InvalidConversation:
        return SKIP_INVALID
    source_uri = f"{SOURCE_PREFIX}{family}"
    locator = f"seed={seed};template={template.id};i={index}"
    seed_id = (seed_row or {}).get("conversation_id")
    metadata = {"generator": family, "seed": str(seed), "template": template.id, "index": str(index),
                "category": template.category or family}
    if template.intent:
        metadata["intent"] = template.intent
    if seed_id:
        metadata["seed_conversation_id"] = str(seed_id)
    for key in ("emotion", "problem", "topic"):
        if values.get(key):
            metadata[f"seed_{key}"] = values[key]
    topic = values.get("problem") if family == SECTION_ROLEPLAY else (template.category or values.get("topic") or None)
    return {
        "conversation_id": contract.conversation_id(family, source_uri, locator),
        "family": family,
        "source_uri": source_uri,
        "source_locator": locator,
        "messages": messages,
        "metadata": metadata,
        "topic": topic,
        # a persona built from a real session's situation text must share that session's split
        "parent_id": str(seed_id) if family == SECTION_ROLEPLAY and seed_id else None,
    }


def edge_case_synthetic(index: int, seed: int, templates: TemplateSet, seed_row: dict | None = None,
                        mix: dict | None = None) -> dict | str:
    """A crisis / self-harm / medication / diagnosis / abuse / minors / out-of-scope conversation with a safe reply."""
    return generate_one(SECTION_EDGE, index, seed, templates, seed_row, mix)


def sarcasm(index: int, seed: int, templates: TemplateSet, seed_row: dict | None = None,
            mix: dict | None = None) -> dict | str:
    """A user turn whose literal meaning differs from its intent, answered by reading the intent."""
    return generate_one(SECTION_SARCASM, index, seed, templates, seed_row, mix)


def roleplay_simulator(index: int, seed: int, templates: TemplateSet, seed_row: dict | None = None,
                       mix: dict | None = None) -> dict | str:
    """A system-prompted seeker persona (esconv emotion / problem / situation) played over several turns."""
    return generate_one(SECTION_ROLEPLAY, index, seed, templates, seed_row, mix)


BUILDERS = {SECTION_EDGE: edge_case_synthetic, SECTION_SARCASM: sarcasm, SECTION_ROLEPLAY: roleplay_simulator}


def generate_rows(tasks: pd.DataFrame, seed: int, templates: TemplateSet, mix: dict | None = None
                  ) -> tuple[pd.DataFrame, Counter]:
    """Tasks (family, index, optional seed columns) -> generated rows and skip counts keyed `family:reason`.

    Seed columns: conversation_id, topic, emotion_type, problem_type, situation (null where the task has no seed).
    """
    rows, skipped = [], Counter()
    seed_cols = [c for c in ("conversation_id", "topic", "emotion_type", "problem_type", "situation") if c in tasks]
    for task in tasks.to_dict("records"):
        seed_row = {c: task[c] for c in seed_cols if isinstance(task.get(c), str) and task[c]}
        family = task["family"]
        builder = BUILDERS.get(family)
        out = builder(int(task["index"]), seed, templates, seed_row or None, (mix or {}).get(family)) if builder \
            else SKIP_NO_TEMPLATE
        if isinstance(out, str):
            skipped[f"{family}:{out}"] += 1
        else:
            rows.append(out)
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS)), skipped
