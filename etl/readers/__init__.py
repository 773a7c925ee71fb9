"""Readers per raw *format* (not per family): one raw object's bytes in, one Record per raw record out.

Pure Python, no Spark: ingest calls `read_object` inside a `mapInPandas` worker. Every raw record yields exactly
one Record, good or error, so `records read = good + quarantined` always reconciles, and `read_object` never
raises: what it cannot read becomes an error Record too.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from typing import BinaryIO, Callable, Iterator

from etl.readers.base import (
    BAD_MESSAGE,
    BAD_ROLE,
    EMPTY_OBJECT,
    INVALID_UTF8,
    LOCATOR_OBJECT,
    MALFORMED_JSON,
    MALFORMED_ROW,
    MESSAGE_TOO_LONG,
    MISSING_COLUMN,
    NO_ASSISTANT_TURN,
    NO_MESSAGES,
    NO_USER_TURN,
    REASONS,
    RECORD_TOO_LARGE,
    TRUNCATED_GZIP,
    UNREADABLE,
    WRONG_TYPE,
    ReaderLimits,
    Record,
    StreamError,
    error_record,
    lenient_text,
)
from etl.readers.chatml import read_chatml_jsonl
from etl.readers.esconv import read_esconv_json
from etl.readers.hh_transcript import read_hh_transcript_jsonl
from etl.readers.qa_csv import read_qa_csv

__all__ = [
    "BAD_MESSAGE", "BAD_ROLE", "EMPTY_OBJECT", "INVALID_UTF8", "MALFORMED_JSON", "MALFORMED_ROW",
    "MESSAGE_TOO_LONG", "MISSING_COLUMN", "NO_ASSISTANT_TURN", "NO_MESSAGES", "NO_USER_TURN", "REASONS",
    "RECORD_TOO_LARGE", "TRUNCATED_GZIP", "UNREADABLE", "WRONG_TYPE", "LOCATOR_OBJECT", "READERS", "Reader",
    "Record", "ReaderLimits", "read_object",
]

log = logging.getLogger(__name__)

Reader = Callable[[BinaryIO, dict, ReaderLimits], Iterator[Record]]
READERS: dict[str, Reader] = {
    "qa_csv": read_qa_csv,
    "hh_transcript_jsonl": read_hh_transcript_jsonl,
    "esconv_json": read_esconv_json,
    "chatml_jsonl": read_chatml_jsonl,
}

GZIP_MAGIC = b"\x1f\x8b"
_BUFFER = 1 << 16
# What a damaged gzip member raises while being read (zlib.error subclasses neither OSError nor ValueError).
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class _Prefixed(io.RawIOBase):
    """A raw stream that replays the bytes already read for sniffing, then continues with the source."""

    def __init__(self, head: bytes, source: BinaryIO):
        self._head = head
        # read1 returns what is at hand without waiting to fill the buffer: bytes already received are passed
        # on before a failing read, so the reader can still yield the records they hold.
        self._read = getattr(source, "read1", source.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_head(stream: BinaryIO, size: int) -> bytes:
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


def open_decompressed(stream: BinaryIO) -> tuple[io.BufferedIOBase, bool]:
    """The stream, transparently gunzipped (streaming) when its first bytes are the gzip magic number."""
    head = _read_head(stream, len(GZIP_MAGIC))
    buffered = io.BufferedReader(_Prefixed(head, stream), buffer_size=_BUFFER)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb"), True
    return buffered, False


def _next_locator(last: str | None) -> str:
    """Where a failure after record `last` sits: the next line/row/index, or the object when nothing was read."""
    if last and ":" in last:
        kind, _, number = last.partition(":")
        if number.isdigit():
            return f"{kind}:{int(number) + 1}"
    return LOCATOR_OBJECT


def read_object(fmt: str, stream: BinaryIO, options: dict, limits: ReaderLimits) -> Iterator[Record]:
    """All Records of one raw object in format `fmt`; never raises (failures become error Records)."""
    reader = READERS.get(fmt)
    if reader is None:
        yield error_record(LOCATOR_OBJECT, UNREADABLE, f"unknown format {fmt!r}; known: {sorted(READERS)}")
        return
    last: str | None = None
    is_gzip = False
    try:
        data, is_gzip = open_decompressed(stream)
        if not data.peek(1):
            yield error_record(LOCATOR_OBJECT, EMPTY_OBJECT, "0 bytes" + (" after gunzip" if is_gzip else ""))
            return
        for record in reader(data, options or {}, limits):
            last = record.locator
            yield record
    except StreamError as exc:
        reason = TRUNCATED_GZIP if is_gzip else UNREADABLE
        yield error_record(exc.locator, reason, f"stream ended mid-record: {exc}", lenient_text(exc.partial))
    except _GZIP_ERRORS as exc:
        if not is_gzip:
            yield error_record(_next_locator(last), UNREADABLE, f"{type(exc).__name__}: {exc}"[:500])
        else:
            yield error_record(_next_locator(last), TRUNCATED_GZIP, f"gzip stream damaged: {exc}"[:500])
    except Exception as exc:  # noqa: BLE001 - the contract is: never raise, quarantine instead
        log.warning("reader %s failed after %s: %s", fmt, last, exc)
        yield error_record(_next_locator(last), UNREADABLE, f"{type(exc).__name__}: {exc}"[:500])
