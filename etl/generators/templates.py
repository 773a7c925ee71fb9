"""Load, validate and render the generator templates of conf/templates.yaml (plain Python, no Spark).

A template that cannot be used (no id, duplicate id, a slot nothing can fill, a malformed shape) is skipped and
counted by reason, never a crash: one bad entry must not stop a release.
"""

from __future__ import annotations

import functools
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from etl.config import load_yaml_file

log = logging.getLogger(__name__)

SECTION_EDGE = "edge_case_synthetic"
SECTION_SARCASM = "sarcasm"
SECTION_ROLEPLAY = "roleplay_simulator"
SECTION_DEGRADED = "degraded"
SECTION_SAFETY_CHOSEN = "safety.chosen"
SECTION_SAFETY_REJECTED = "safety.rejected"
CONVERSATION_SECTIONS = (SECTION_EDGE, SECTION_SARCASM, SECTION_ROLEPLAY)

# Slots the generator code fills from the seed row, per section (everything else comes from `slots:`).
SEED_SLOTS = {
    SECTION_EDGE: frozenset({"topic"}),
    SECTION_SARCASM: frozenset({"topic"}),
    SECTION_ROLEPLAY: frozenset({"emotion", "problem", "situation"}),
    SECTION_DEGRADED: frozenset({"topic", "truncated_answer"}),
    SECTION_SAFETY_CHOSEN: frozenset({"topic"}),
    SECTION_SAFETY_REJECTED: frozenset({"topic"}),
}
DEGRADED_KINDS = ("truncated", "generic", "dismissive", "premature_advice")
REJECTED_KINDS = ("unsafe_compliance", "dismissal")
ANY_CATEGORY = "any"

SKIP_MISSING_SLOT = "missing_slot"
SKIP_MISSING_ID = "missing_id"
SKIP_DUPLICATE_ID = "duplicate_id"
SKIP_MALFORMED = "malformed_template"

_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_DEPTH = 5


class MissingSlot(KeyError):
    """A `{slot}` that neither the seed values nor the slot vocabulary can fill."""

    def __init__(self, slot: str):
        super().__init__(slot)
        self.slot = slot


@dataclass(frozen=True)
class Template:
    """One template: `turns` (list of {user, assistant} alternatives) for conversations, `text` otherwise."""

    id: str
    section: str
    category: str = ""
    kind: str = ""
    categories: tuple = ()
    system: tuple = ()
    turns: tuple = ()  # per turn, variants of (user alternatives, assistant alternatives) that belong together
    prefix: tuple = ()  # slots that may open the first user turn (or nothing), for variety
    text: tuple = ()
    intent: str = ""


@dataclass
class TemplateSet:
    """Valid templates by section, the slot vocabulary, safety triggers and the skip counts of validation."""

    sections: dict = field(default_factory=dict)
    slots: dict = field(default_factory=dict)
    triggers: dict = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def get(self, section: str) -> list[Template]:
        """Valid templates of a section (empty when none)."""
        return self.sections.get(section, [])

    def by_id(self, template_id: str) -> Template | None:
        """The template with this id in any section, or None."""
        for items in self.sections.values():
            for t in items:
                if t.id == template_id:
                    return t
        return None


def _alternatives(value) -> tuple:
    """A string or a list of strings -> tuple of non-empty strings (anything else -> empty tuple)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return ()
    return tuple(v for v in value if v.strip())


def _texts_of(t: Template) -> list[str]:
    out = list(t.system) + list(t.text) + [f"{{{name}}}" for name in t.prefix]
    for turn in t.turns:
        for user, assistant in turn:
            out += list(user) + list(assistant)
    return out


def slot_names(text: str) -> set[str]:
    """The `{slot}` names used in a text."""
    return set(_SLOT.findall(text))


def _fillable(name: str, seed_slots: frozenset, slots: dict, seen: frozenset = frozenset()) -> bool:
    """Whether `name` can always be filled in a section whose seed provides `seed_slots`."""
    if name in seed_slots:
        return True
    spec = slots.get(name)
    if spec is None or name in seen:
        return False
    if isinstance(spec, dict):
        values = [v for vs in (spec.get("values") or {}).values() for v in _alternatives(vs)]
        default = _alternatives(spec.get("default"))
        if not default and spec.get("by") not in seed_slots:
            return False
        texts = values + list(default)
    else:
        texts = list(_alternatives(spec))
        if not texts:
            return False
    inner = set().union(*(slot_names(x) for x in texts)) if texts else set()
    return all(_fillable(n, seed_slots, slots, seen | {name}) for n in inner)


def _parse_variant(raw) -> tuple | None:
    if not isinstance(raw, dict):
        return None
    user, assistant = _alternatives(raw.get("user")), _alternatives(raw.get("assistant"))
    return (user, assistant) if user and assistant else None


def _parse_turns(raw) -> tuple | None:
    """Turns as tuples of variants, each variant (user alternatives, assistant alternatives)."""
    if not isinstance(raw, list) or not raw:
        return None
    turns = []
    for turn in raw:
        items = turn.get("variants") if isinstance(turn, dict) and "variants" in turn else [turn]
        variants = tuple(_parse_variant(v) for v in items) if isinstance(items, list) and items else (None,)
        if any(v is None for v in variants):
            return None
        turns.append(variants)
    return tuple(turns)


def _parse_one(raw, section: str) -> Template | str:
    """A Template, or the skip reason."""
    if not isinstance(raw, dict):
        return SKIP_MALFORMED
    tid = raw.get("id")
    if not isinstance(tid, str) or not tid.strip():
        return SKIP_MISSING_ID
    category = raw.get("category", "")
    categories = tuple(category) if isinstance(category, list) else ((category,) if category else ())
    common = {"id": tid.strip(), "section": section, "kind": str(raw.get("kind", "")),
              "category": categories[0] if len(categories) == 1 else "", "categories": categories,
              "intent": str(raw.get("intent", ""))}
    if section in CONVERSATION_SECTIONS:
        turns = _parse_turns(raw.get("turns"))
        system = _alternatives(raw.get("system")) if "system" in raw else ()
        if turns is None or ("system" in raw and not system):
            return SKIP_MALFORMED
        prefix = raw.get("prefix") or []
        if not isinstance(prefix, list) or not all(isinstance(x, str) for x in prefix):
            return SKIP_MALFORMED
        return Template(**common, system=system, turns=turns, prefix=tuple(prefix))
    text = _alternatives(raw.get("text"))
    if not text:
        return SKIP_MALFORMED
    if section == SECTION_DEGRADED and common["kind"] not in DEGRADED_KINDS:
        return SKIP_MALFORMED
    if section == SECTION_SAFETY_REJECTED and common["kind"] not in REJECTED_KINDS:
        return SKIP_MALFORMED
    return Template(**common, text=text)


def _raw_sections(data: dict) -> dict[str, list]:
    safety = data.get("safety") or {}
    return {
        SECTION_EDGE: data.get(SECTION_EDGE) or [],
        SECTION_SARCASM: data.get(SECTION_SARCASM) or [],
        SECTION_ROLEPLAY: data.get(SECTION_ROLEPLAY) or [],
        SECTION_DEGRADED: data.get(SECTION_DEGRADED) or [],
        SECTION_SAFETY_CHOSEN: safety.get("chosen") or [],
        SECTION_SAFETY_REJECTED: safety.get("rejected") or [],
    }


def parse_templates(data: dict) -> TemplateSet:
    """Validate a loaded templates mapping; unusable templates are skipped and counted in `.skipped`."""
    data = data if isinstance(data, dict) else {}
    slots = data.get("slots") if isinstance(data.get("slots"), dict) else {}
    triggers = (data.get("safety") or {}).get("triggers") or {}
    out = TemplateSet(slots=slots, triggers={str(k): tuple(_alternatives(v)) for k, v in triggers.items()})
    seen: set[str] = set()
    for section, items in _raw_sections(data).items():
        kept = []
        for raw in items if isinstance(items, list) else []:
            parsed = _parse_one(raw, section)
            if isinstance(parsed, str):
                out.skipped[parsed] += 1
                continue
            if parsed.id in seen:
                out.skipped[SKIP_DUPLICATE_ID] += 1
                continue
            seen.add(parsed.id)
            names = set().union(*(slot_names(x) for x in _texts_of(parsed)))
            missing = sorted(n for n in names if not _fillable(n, SEED_SLOTS[section], slots))
            if missing:
                log.warning("template %s: slot(s) %s cannot be filled; skipped", parsed.id, ", ".join(missing))
                out.skipped[SKIP_MISSING_SLOT] += 1
                continue
            kept.append(parsed)
        out.sections[section] = kept
    return out


def load_templates(path: str) -> TemplateSet:
    """Read and validate the templates file; a missing or unparsable file is one clear error."""
    data = load_yaml_file(path, f"generators.templates: {path} not found; point it at conf/templates.yaml",
                          f"generators.templates: {path} is not valid YAML", error=ValueError)
    return parse_templates(data)


def _vocab_value(name: str, values: dict, slots: dict, rng: random.Random) -> str:
    spec = slots.get(name)
    if isinstance(spec, dict):
        keyed = (spec.get("values") or {}).get(str(values.get(spec.get("by"), "")).strip().lower())
        options = _alternatives(keyed) or _alternatives(spec.get("default"))
    else:
        options = _alternatives(spec)
    if not options:
        raise MissingSlot(name)
    return rng.choice(options)


def render(text, values: dict, slots: dict, rng: random.Random, depth: int = 0) -> str:
    """Pick one alternative of `text` and fill its slots (recursively); raises MissingSlot."""
    options = _alternatives(text)
    if not options:
        raise MissingSlot("<empty>")
    chosen = options[0] if len(options) == 1 else rng.choice(options)
    if depth > _MAX_DEPTH:
        raise MissingSlot("<too deep>")

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if values.get(name):
            return str(values[name]).strip()  # seed text is literal: braces in it are never slots
        return render(_vocab_value(name, values, slots, rng), values, slots, rng, depth + 1)

    return _SLOT.sub(fill, chosen).strip()


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple) -> tuple:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error:
            log.warning("safety trigger %r is not a valid regex; ignored", p)
    return tuple(out)


def match_category(prompt: list[dict], triggers: dict) -> str:
    """The first trigger category (in file order) whose regex matches the prompt's last user turn, else ''."""
    last_user = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    for category, patterns in triggers.items():
        if any(rx.search(last_user) for rx in _compiled(tuple(patterns))):
            return category
    return ""
