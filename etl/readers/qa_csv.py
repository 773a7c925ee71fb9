"""`qa_csv`: one question/answer pair per CSV row, columns mapped by the family's options.

Options (all optional but `columns.prompt` and `columns.response`):
  columns: {prompt, title, response, topic, quality, group, author} -> CSV header names; any other key maps a
           column to the metadata key of that name (e.g. `upstream_split: split`)
  metadata_columns: extra columns copied into metadata under their own name (`split` becomes `upstream_split`)
  html: strip HTML from the response (contract.strip_html)
  topic_list_separator: the topic cell is a list; topic = its first element, metadata["topics"] = the list
"""

from __future__ import annotations

import csv
import io
import re
import sys
from typing import BinaryIO, Iterator

from etl.contract import strip_html
from etl.readers.base import (
    INVALID_UTF8,
    LOCATOR_OBJECT,
    MALFORMED_ROW,
    MISSING_COLUMN,
    RECORD_TOO_LARGE,
    ReaderLimits,
    Record,
    as_score,
    as_text,
    conversation_record,
    error_record,
    guarded,
)
from etl.schemas import ROLE_ASSISTANT, ROLE_USER

REQUIRED_COLUMNS = ("prompt", "response")
MAPPED_KEYS = ("prompt", "title", "response", "topic", "quality", "group", "author")
_SURROGATE = re.compile("[\udc80-\udcff]")
_NON_WORD = re.compile(r"[\W_]+")
_RENAMED = {"split": "upstream_split"}
# contract.strip_html leaves tags over 2,000 chars; the legacy scrape inlines base64 images (`<img src="data:...">`)
# hundreds of KB long, which would make a good answer `message_too_long`. Images carry no text: drop them first.
_IMG_TAG = re.compile(r"(?i)<img\b[^>]*>")

# Per-row size is checked after parsing (record_too_large); the csv module's own limit only guards runaway
# quoting, which would otherwise swallow the rest of the file into one field.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _row_text(row: list[str]) -> str:
    """The row re-serialised as CSV (csv.reader does not keep the raw text); bad bytes shown as U+FFFD."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _words(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def user_content(title: str, prompt: str) -> str:
    """The question text, prefixed by its title when the title says something the text does not."""
    title, prompt = title.strip(), prompt.strip()
    if not prompt:
        return title
    if not title or _words(title) in _words(prompt):
        return prompt
    return f"{title}\n\n{prompt}"


def _header_index(header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name.strip().lstrip("\ufeff"), i)
    return index


def _row_record(locator: str, row: list[str], index: dict[str, int], options: dict, limits: ReaderLimits) -> Record:
    columns = options.get("columns", {})

    def cell(key: str) -> str:
        name = columns.get(key)
        return row[index[name]] if name in index else ""

    raw = _row_text(row)
    html = bool(options.get("html", False))
    response = cell("response")
    turns = [
        {"role": ROLE_USER, "content": user_content(cell("title"), cell("prompt"))},
        {"role": ROLE_ASSISTANT, "content": strip_html(_IMG_TAG.sub("", response)) if html else response},
    ]
    topic_cell = cell("topic")
    separator = options.get("topic_list_separator")
    topics = [t.strip() for t in topic_cell.split(separator) if t.strip()] if separator else []
    topic = (topics[0] if topics else None) if separator else as_text(topic_cell)
    metadata = {
        "question_id": as_text(cell("group")),
        "question_title": as_text(cell("title")),
        "author": as_text(cell("author")),
        "topics": topics if separator else None,
    }
    for name in options.get("metadata_columns", []):
        if name in index:  # the upstream split knows nothing of our near-duplicate-aware splits: renamed
            metadata[_RENAMED.get(name, name)] = row[index[name]]
    for key, name in columns.items():
        if key not in MAPPED_KEYS and name in index:
            metadata[key] = row[index[name]]
    return conversation_record(locator, raw, turns, limits, metadata, topic, as_score(cell("quality")))


class _RecordTooLarge(Exception):
    def __init__(self, size: int, head: str):
        super().__init__(f"{size} chars")
        self.size, self.head = size, head


class _BoundedLines:
    """Lines for csv.reader, never holding more than `limit` chars of one record (memory stays bounded).

    A longer physical line is skipped (read on in chunks, not kept) and a record spanning lines (an open quote)
    is cut once it passes `limit`: both raise _RecordTooLarge once, and reading goes on at the next line.
    """

    def __init__(self, text: io.TextIOBase, limit: int):
        self.text, self.limit, self.pending = text, limit, 0

    def __iter__(self) -> "_BoundedLines":
        return self

    def mark(self) -> None:
        """csv.reader finished a record: its lines no longer count."""
        self.pending = 0

    def __next__(self) -> str:
        line = self.text.readline(self.limit + 1)
        if not line:
            raise StopIteration
        size = self.pending + len(line)
        if len(line) > self.limit and line[-1] not in "\r\n":
            while (more := self.text.readline(1 << 16)) and more[-1] not in "\r\n":
                size += len(more)
            size += len(more)
        if size > self.limit:
            self.pending = 0
            raise _RecordTooLarge(size, line[: 64 * 1024])
        self.pending = size
        return line


def read_qa_csv(stream: BinaryIO, options: dict, limits: ReaderLimits) -> Iterator[Record]:
    """Yield one Record per data row (`row:N`, 1-based); a header lacking a mapped column fails every row."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    try:
        lines = _BoundedLines(text, limits.max_record_bytes)
        yield from _read_rows(csv.reader(lines), options, limits, lines)
    finally:
        try:
            text.detach()  # leave the caller's stream open
        except ValueError:
            pass


def _too_large(locator: str, exc: _RecordTooLarge, limits: ReaderLimits) -> Record:
    detail = f"record has {exc.size} chars > max_record_bytes {limits.max_record_bytes}"
    return error_record(locator, RECORD_TOO_LARGE, detail, exc.head.encode("utf-8", "surrogateescape")
                        .decode("utf-8", "replace"))


def _read_rows(reader, options: dict, limits: ReaderLimits, lines: _BoundedLines | None = None) -> Iterator[Record]:
    try:
        header = next(reader, None)
    except _RecordTooLarge as exc:
        yield _too_large(LOCATOR_OBJECT, exc, limits)
        return
    if header is None:
        return
    index = _header_index(header)
    columns = options.get("columns", {})
    missing = [f"{key}={columns.get(key)!r}" for key in REQUIRED_COLUMNS if columns.get(key) not in index]
    present = ", ".join(repr(h) for h in header)[:500]
    row_no = 0
    while True:
        if lines is not None:
            lines.mark()  # the previous record (or error) is done: a new one starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader resumes at the next line
            row_no += 1
            yield error_record(f"row:{row_no}", MALFORMED_ROW, str(exc))
            continue
        except _RecordTooLarge as exc:
            row_no += 1
            yield _too_large(f"row:{row_no}", exc, limits)
            continue
        if not row:
            continue  # a blank line is not a row
        row_no += 1
        locator = f"row:{row_no}"
        size = sum(len(c) for c in row)
        if size > limits.max_record_bytes:
            detail = f"row has {size} chars > max_record_bytes {limits.max_record_bytes}"
            yield error_record(locator, RECORD_TOO_LARGE, detail, _row_text(row)[: 64 * 1024])
        elif missing:
            yield error_record(locator, MISSING_COLUMN, f"mapped column missing: {', '.join(missing)}; "
                               f"header has {present}", _row_text(row))
        elif len(row) != len(header):
            yield error_record(locator, MALFORMED_ROW, f"{len(row)} fields, header has {len(header)}", _row_text(row))
        elif any(_SURROGATE.search(c) for c in row):
            yield error_record(locator, INVALID_UTF8, "row holds bytes that are not UTF-8", _row_text(row))
        else:
            yield guarded(locator, "", _row_record, locator, row, index, options, limits)

