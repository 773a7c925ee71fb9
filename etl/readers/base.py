"""What every reader shares: the Record it yields, its limits, the quarantine reason classes and small helpers.

Pure Python (no Spark): readers run inside `mapInPandas` workers over one raw object's byte stream.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from etl.contract import InvalidConversation, normalize_messages

# Quarantine reason classes. The message-level ones are the strings contract.normalize_messages raises.
MALFORMED_JSON = "malformed_json"
MALFORMED_ROW = "malformed_row"
INVALID_UTF8 = "invalid_utf8"
RECORD_TOO_LARGE = "record_too_large"
MISSING_COLUMN = "missing_column"
NO_USER_TURN = "no_user_turn"
NO_ASSISTANT_TURN = "no_assistant_turn"
NO_MESSAGES = "no_messages"
BAD_ROLE = "bad_role"
BAD_MESSAGE = "bad_message"
MESSAGE_TOO_LONG = "message_too_long"
TRUNCATED_GZIP = "truncated_gzip"
UNREADABLE = "unreadable"
WRONG_TYPE = "wrong_type"
EMPTY_OBJECT = "empty_object"
REASONS = (
    MALFORMED_JSON, MALFORMED_ROW, INVALID_UTF8, RECORD_TOO_LARGE, MISSING_COLUMN, NO_USER_TURN,
    NO_ASSISTANT_TURN, NO_MESSAGES, BAD_ROLE, BAD_MESSAGE, MESSAGE_TOO_LONG, TRUNCATED_GZIP, UNREADABLE,
    WRONG_TYPE, EMPTY_OBJECT,
)

LOCATOR_OBJECT = "object"
RAW_KEEP_BYTES = 64 * 1024  # raw text kept for a record too large to load (the caller truncates further)
_LINE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ReaderLimits:
    max_record_bytes: int = 8 * 1024 * 1024
    max_message_chars: int = 200000


@dataclass
class Record:
    """One raw record read: a good conversation (error is None) or one quarantine entry."""

    locator: str
    raw_text: str
    messages: list[dict] | None
    metadata: dict[str, str] = field(default_factory=dict)
    topic: str | None = None
    quality_score: float | None = None
    error: str | None = None
    detail: str = ""


class StreamError(Exception):
    """Reading the (decompressed) stream failed mid-record; carries the locator and what was read of it."""

    def __init__(self, cause: BaseException, locator: str, partial: bytes = b""):
        super().__init__(str(cause) or type(cause).__name__)
        self.locator = locator
        self.partial = partial


def error_record(locator: str, reason: str, detail: str = "", raw_text: str = "") -> Record:
    return Record(locator=locator, raw_text=raw_text, messages=None, metadata={}, error=reason, detail=detail)


def conversation_record(
    locator: str,
    raw_text: str,
    turns: list[dict],
    limits: ReaderLimits,
    metadata: dict | None = None,
    topic: str | None = None,
    quality_score: float | None = None,
) -> Record:
    """A good Record when `turns` pass the contract, else the error Record naming the contract's reason."""
    try:
        messages = normalize_messages(turns, limits.max_message_chars)
    except InvalidConversation as exc:
        return error_record(locator, exc.reason, exc.detail, raw_text)
    return Record(
        locator=locator,
        raw_text=raw_text,
        messages=messages,
        metadata=str_metadata(metadata or {}),
        topic=topic or None,
        quality_score=quality_score,
    )


def guarded(locator: str, raw_text: str, build: Callable[..., Record], *args) -> Record:
    """build(*args), or an `unreadable` error Record if it fails unexpectedly: one bad record never ends the object."""
    try:
        return build(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is this record's quarantine reason
        return error_record(locator, UNREADABLE, f"{type(exc).__name__}: {exc}"[:500], raw_text)


def str_metadata(values: dict) -> dict[str, str]:
    """Metadata as map<string,string>: strings kept, None dropped, anything else JSON-encoded."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return out


def as_score(value) -> float | None:
    """A finite float from a number or numeric string, else None (bools are not scores)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(str(value).strip())
    except ValueError:
        return None
    return score if math.isfinite(score) else None


def as_text(value) -> str | None:
    """A stripped non-empty string for a label-like value, else None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def lenient_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def iter_lines(stream: BinaryIO, max_record_bytes: int) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line_no, line bytes without EOL, true length) for each line, reading in bounded chunks.

    A line longer than max_record_bytes is never held whole: only its first RAW_KEEP_BYTES are kept and its
    true length is reported, so the caller can quarantine it and go on at the next line. A read failure
    (e.g. a truncated gzip) is raised as StreamError carrying the partial line.
    """
    line_no = 0
    while True:
        line_no += 1
        buf, total, over, ended = bytearray(), 0, False, False
        try:
            while not ended:
                chunk = stream.readline(_LINE_CHUNK)
                if not chunk:
                    break
                ended = chunk.endswith(b"\n")
                if ended:
                    chunk = chunk[:-1]
                total += len(chunk)
                if not over:
                    buf += chunk
                    if total > max_record_bytes:
                        del buf[RAW_KEEP_BYTES:]
                        over = True
        except Exception as exc:  # EOFError, gzip.BadGzipFile, zlib.error, ... depending on the stream
            raise StreamError(exc, f"line:{line_no}", bytes(buf[:RAW_KEEP_BYTES])) from exc
        if not total and not ended:
            return
        if not over and buf.endswith(b"\r"):
            del buf[-1]
            total -= 1
        yield line_no, bytes(buf), total


def iter_json_lines(stream: BinaryIO, limits: ReaderLimits) -> Iterator[tuple[str, str, dict] | Record]:
    """JSON Lines: yield (locator, text, object) per non-blank line, or the error Record for a bad line."""
    for line_no, data, size in iter_lines(stream, limits.max_record_bytes):
        locator = f"line:{line_no}"
        if size > limits.max_record_bytes:
            detail = f"line has {size} bytes > max_record_bytes {limits.max_record_bytes}"
            yield error_record(locator, RECORD_TOO_LARGE, detail, lenient_text(data))
            continue
        if not data.strip():
            continue  # blank lines are not records
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield error_record(locator, INVALID_UTF8, str(exc), lenient_text(data))
            continue
        if line_no == 1:
            text = text.lstrip("\ufeff")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            yield error_record(locator, MALFORMED_JSON, str(exc)[:300], text)
            continue
        if not isinstance(obj, dict):
            yield error_record(locator, WRONG_TYPE, f"line holds a JSON {type(obj).__name__}, not an object", text)
            continue
        yield locator, text, obj
