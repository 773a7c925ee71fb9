"""`chatml_jsonl`: one `{"messages": [...], "metadata": {...}}` object per line (optional topic, quality_score)."""

from __future__ import annotations

from typing import BinaryIO, Iterator

from etl.readers.base import ReaderLimits, Record, as_score, as_text, conversation_record, guarded, iter_json_lines

_RESERVED = ("messages", "metadata", "topic", "quality_score")


def _content_text(content):
    """OpenAI-style content parts (`[{"type": "text", "text": ...}]`) become one string; anything else as is."""
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    return content


def _turns(messages) -> list | object:
    if not isinstance(messages, list):
        return messages  # normalize_messages quarantines it as no_messages
    return [
        {**m, "content": _content_text(m.get("content"))} if isinstance(m, dict) else m
        for m in messages
    ]


def _line_record(locator: str, text: str, obj: dict, limits: ReaderLimits) -> Record:
    meta = obj.get("metadata")
    metadata = dict(meta) if isinstance(meta, dict) else ({"metadata": meta} if meta is not None else {})
    metadata.update({k: v for k, v in obj.items() if k not in _RESERVED})
    topic = as_text(obj.get("topic")) or as_text(metadata.get("topic"))
    score = as_score(obj.get("quality_score"))
    if score is None:
        score = as_score(metadata.get("quality_score"))
    return conversation_record(locator, text, _turns(obj.get("messages")), limits, metadata, topic, score)


def read_chatml_jsonl(stream: BinaryIO, options: dict, limits: ReaderLimits) -> Iterator[Record]:
    """Yield one Record per non-blank line; other top-level keys are kept as metadata."""
    for item in iter_json_lines(stream, limits):
        if isinstance(item, Record):
            yield item
            continue
        locator, text, obj = item
        yield guarded(locator, text, _line_record, locator, text, obj, limits)
