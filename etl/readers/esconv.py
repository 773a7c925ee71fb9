"""`esconv_json`: one JSON array of ESConv-style sessions (`dialog` of speaker turns, `survey_score`, annotations).

Consecutive turns by the same speaker are merged (contract.normalize_messages); the supporter strategies of merged
turns are joined with STRATEGY_JOIN so `metadata["strategies"]` still has one entry per assistant message.
"""

from __future__ import annotations

import json
from statistics import mean
from typing import BinaryIO, Iterator

from etl.contract import clean_content
from etl.readers.base import (
    INVALID_UTF8,
    LOCATOR_OBJECT,
    MALFORMED_JSON,
    RAW_KEEP_BYTES,
    RECORD_TOO_LARGE,
    WRONG_TYPE,
    ReaderLimits,
    Record,
    as_score,
    conversation_record,
    error_record,
    guarded,
    lenient_text,
)
from etl.schemas import ROLE_ASSISTANT, ROLE_USER

OBJECT_SIZE_FACTOR = 16  # the whole array is parsed at once: allowed up to this many max_record_bytes
STRATEGY_JOIN = "|"
DEFAULT_ROLES = {
    "speaker": ROLE_USER, "seeker": ROLE_USER, "usr": ROLE_USER,
    "listener": ROLE_ASSISTANT, "supporter": ROLE_ASSISTANT, "sys": ROLE_ASSISTANT,
}
_SESSION_KEYS = ("emotion_type", "problem_type", "situation", "experience_type")
_SCORE_RANGE = (1.0, 5.0)


def flatten(prefix: str, value, out: dict) -> dict:
    """Nested dicts as dotted keys: {"seeker": {"empathy": "1"}} -> {"survey.seeker.empathy": "1"}."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}", inner, out)
    else:
        out[prefix] = value
    return out


def seeker_quality(survey) -> float | None:
    """Mean of the seeker's empathy and relevance ratings (1-5) where present, else None."""
    seeker = survey.get("seeker") if isinstance(survey, dict) else None
    if not isinstance(seeker, dict):
        return None
    scores = [as_score(seeker.get(k)) for k in ("empathy", "relevance")]
    scores = [s for s in scores if s is not None and _SCORE_RANGE[0] <= s <= _SCORE_RANGE[1]]
    return mean(scores) if scores else None


def _role(speaker, roles: dict):
    """The ChatML role of a speaker label; an unknown label is returned as is, for the contract to reject."""
    return roles.get(str(speaker).strip().lower(), speaker)


def _annotations(dialog: list, roles: dict) -> tuple[list[str], list]:
    """Strategies per merged assistant message and the seeker feedback values, in dialog order.

    Mirrors normalize_messages: turns with empty content are skipped, consecutive same-role turns merged.
    """
    strategies: list[list[str]] = []
    feedback: list = []
    last_role = None
    for turn in dialog:
        role = _role(turn.get("speaker"), roles)
        content = turn.get("content")
        if not isinstance(content, str) or not clean_content(content):
            continue
        note = turn.get("annotation") if isinstance(turn.get("annotation"), dict) else {}
        if role == ROLE_ASSISTANT:
            if last_role != ROLE_ASSISTANT:
                strategies.append([])
            if note.get("strategy") is not None:
                strategies[-1].append(str(note["strategy"]))
        elif note.get("feedback") is not None:
            feedback.append(note["feedback"])
        last_role = role
    return [STRATEGY_JOIN.join(s) for s in strategies], feedback


def _session_record(locator: str, session: dict, roles: dict, limits: ReaderLimits) -> Record:
    raw = json.dumps(session, ensure_ascii=False)
    dialog = session.get("dialog")
    turns = dialog
    if isinstance(dialog, list):
        turns = [{"role": _role(t.get("speaker"), roles), "content": t.get("content")} if isinstance(t, dict) else t
                 for t in dialog]
    metadata = {k: session.get(k) for k in _SESSION_KEYS}
    metadata.update({k: v for k, v in session.items() if k not in ("dialog", "survey_score") and k not in metadata})
    survey = session.get("survey_score")
    if isinstance(survey, dict):
        metadata.update(flatten("survey", survey, {}))
    if isinstance(dialog, list) and all(isinstance(t, dict) for t in dialog):
        strategies, feedback = _annotations(dialog, roles)
        metadata["strategies"] = strategies
        metadata["feedback"] = feedback
    topic = session.get("problem_type")
    topic = topic.strip() if isinstance(topic, str) else None
    return conversation_record(locator, raw, turns, limits, metadata, topic, seeker_quality(survey))


def read_esconv_json(stream: BinaryIO, options: dict, limits: ReaderLimits) -> Iterator[Record]:
    """Yield one Record per array element (`index:N`, 0-based), or one object-level error Record."""
    max_bytes = limits.max_record_bytes * OBJECT_SIZE_FACTOR
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield error_record(LOCATOR_OBJECT, RECORD_TOO_LARGE, f"object exceeds {max_bytes} bytes",
                           lenient_text(data[:RAW_KEEP_BYTES]))
        return
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        yield error_record(LOCATOR_OBJECT, INVALID_UTF8, str(exc), lenient_text(data[:RAW_KEEP_BYTES]))
        return
    try:
        sessions = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield error_record(LOCATOR_OBJECT, MALFORMED_JSON, str(exc)[:300], text[:RAW_KEEP_BYTES])
        return
    if not isinstance(sessions, list):
        yield error_record(LOCATOR_OBJECT, WRONG_TYPE, f"top level is a JSON {type(sessions).__name__}, "
                           "not an array of sessions", text[:RAW_KEEP_BYTES])
        return
    roles = {**DEFAULT_ROLES, **{str(k).lower(): v for k, v in (options.get("roles") or {}).items()}}
    for i, session in enumerate(sessions):
        locator = f"index:{i}"
        if not isinstance(session, dict):
            yield error_record(locator, WRONG_TYPE, f"element is a JSON {type(session).__name__}, not an object",
                               json.dumps(session, ensure_ascii=False)[:RAW_KEEP_BYTES])
        else:
            yield guarded(locator, "", _session_record, locator, session, roles, limits)
