"""`hh_transcript_jsonl`: Anthropic hh-rlhf lines `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`.

The conversation is the chosen transcript. Both continuations after the shared prefix are kept in metadata so the
preference-pair generator never has to re-read raw objects.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO, Iterator

from etl.contract import clean_content
from etl.readers.base import (
    BAD_MESSAGE,
    NO_MESSAGES,
    ReaderLimits,
    Record,
    conversation_record,
    error_record,
    guarded,
    iter_json_lines,
)
from etl.schemas import ROLE_ASSISTANT, ROLE_USER

_MARKER = re.compile(r"\n\n(Human|Assistant):")
_ROLE_OF = {"Human": ROLE_USER, "Assistant": ROLE_ASSISTANT}


class _BadTranscript(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def parse_transcript(text) -> list[dict]:
    """Split a `\\n\\nHuman:` / `\\n\\nAssistant:` transcript into raw turns (content as written, stripped)."""
    if not isinstance(text, str):
        raise _BadTranscript(BAD_MESSAGE, f"transcript is a {type(text).__name__}, not a string")
    parts = _MARKER.split(text)
    if parts[0].strip():
        raise _BadTranscript(BAD_MESSAGE, f"text before the first turn marker: {parts[0].strip()[:80]!r}")
    turns = [{"role": _ROLE_OF[who], "content": body.strip()} for who, body in zip(parts[1::2], parts[2::2])]
    if not turns:
        raise _BadTranscript(NO_MESSAGES, "no \\n\\nHuman: or \\n\\nAssistant: turn marker")
    return turns


def _cleaned(turns: list[dict]) -> list[dict]:
    """The same cleaning and merging as contract.normalize_messages, without its validation."""
    out: list[dict] = []
    for turn in turns:
        content = clean_content(turn["content"])
        if not content:
            continue
        if out and out[-1]["role"] == turn["role"]:
            out[-1] = {"role": turn["role"], "content": out[-1]["content"] + "\n" + content}
        else:
            out.append({"role": turn["role"], "content": content})
    return out


def shared_prefix_len(a: list[dict], b: list[dict]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def pair_metadata(chosen: list[dict], rejected: list[dict]) -> dict[str, str]:
    """prompt_turns, the two tails after the shared prefix, and whether they form a usable pair.

    pair_shares_prefix is "true" when the prefix is non-empty, ends on a user turn and both tails start with
    an assistant turn: exactly the shape a (prompt, chosen, rejected) preference pair needs.
    """
    n = shared_prefix_len(chosen, rejected)
    chosen_tail, rejected_tail = chosen[n:], rejected[n:]
    usable = (
        n > 0 and chosen[n - 1]["role"] == ROLE_USER
        and bool(chosen_tail) and chosen_tail[0]["role"] == ROLE_ASSISTANT
        and bool(rejected_tail) and rejected_tail[0]["role"] == ROLE_ASSISTANT
    )
    return {
        "prompt_turns": str(n),
        "chosen_messages_tail": json.dumps(chosen_tail, ensure_ascii=False),
        "rejected_messages": json.dumps(rejected_tail, ensure_ascii=False),
        "pair_shares_prefix": "true" if usable else "false",
    }


def _line_record(locator: str, text: str, obj: dict, fields: tuple[str, str], limits: ReaderLimits) -> Record:
    chosen_field, rejected_field = fields
    try:
        chosen_turns = parse_transcript(obj.get(chosen_field))
    except _BadTranscript as exc:
        return error_record(locator, exc.reason, f"{chosen_field}: {exc}", text)
    record = conversation_record(locator, text, chosen_turns, limits)
    if record.error is None:
        try:
            rejected = _cleaned(parse_transcript(obj.get(rejected_field)))
        except _BadTranscript as exc:
            rejected = []  # no usable rejected side: the chosen conversation is still good SFT data
            record.metadata["rejected_error"] = f"{rejected_field}: {exc}"
        record.metadata.update(pair_metadata(record.messages, rejected))
    return record


def read_hh_transcript_jsonl(stream: BinaryIO, options: dict, limits: ReaderLimits) -> Iterator[Record]:
    """Yield one Record per non-blank line: the chosen transcript, with the rejected one in metadata."""
    fields = (options.get("chosen_field", "chosen"), options.get("rejected_field", "rejected"))
    for item in iter_json_lines(stream, limits):
        if isinstance(item, Record):
            yield item
            continue
        locator, text, obj = item
        yield guarded(locator, text, _line_record, locator, text, obj, fields, limits)
