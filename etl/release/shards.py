"""Size-bounded JSON-lines shards: `<root>/<phase>/<stage>/<split>-NNNNN-of-MMMMM.jsonl[.gz]` (plain Python).

Records arrive already sorted by (phase, stage, split, stable key); each (phase, stage, split) group is cut into
shards whose uncompressed size stays within `max_bytes` (a single longer record gets a shard of its own). The
shard count of a group is known only at its end, so shards are written under temporary names and renamed.
Gzip output uses mtime=0, no file name and a fixed level, so the same records give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

COMPRESSION_NONE, COMPRESSION_GZIP = "none", "gzip"
EXTENSIONS = {COMPRESSION_NONE: ".jsonl", COMPRESSION_GZIP: ".jsonl.gz"}
GZIP_LEVEL = 6
INDEX_DIGITS = 5


@dataclass(frozen=True)
class Shard:
    """One written shard; `path` is relative to the release root, with `/` separators."""

    path: str
    sha256: str
    bytes: int
    records: int
    phase: str
    stage: str
    split: str

    def to_dict(self) -> dict:
        return asdict(self)


def shard_name(split: str, index: int, total: int, compression: str = COMPRESSION_NONE) -> str:
    """`train-00000-of-00003.jsonl` (index counts from 0)."""
    return f"{split}-{index:0{INDEX_DIGITS}d}-of-{total:0{INDEX_DIGITS}d}{EXTENSIONS[compression]}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Part:
    """An open temporary shard file (optionally gzip) counting uncompressed bytes and records."""

    def __init__(self, path: Path, compression: str):
        self.path = path
        self.raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close(), after the gzip trailer
        self.out: BinaryIO = (gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0,
                                            compresslevel=GZIP_LEVEL)
                              if compression == COMPRESSION_GZIP else self.raw)
        self.bytes = 0
        self.records = 0

    def write(self, line: bytes) -> None:
        self.out.write(line)
        self.bytes += len(line)
        self.records += 1

    def close(self) -> None:
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()


def write_group(root: Path, phase: str, stage: str, split: str, lines: Iterable[bytes],
                max_bytes: int, compression: str = COMPRESSION_NONE) -> list[Shard]:
    """Write one (phase, stage, split) group as size-bounded shards; returns them in index order."""
    if compression not in EXTENSIONS:
        raise ValueError(f"export.compression: {compression!r} is not one of {', '.join(EXTENSIONS)}")
    folder = root / phase / stage
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[_Part] = []
    current: _Part | None = None
    try:
        for line in lines:
            if current is None or (current.records and current.bytes + len(line) > max_bytes):
                if current is not None:
                    current.close()
                current = _Part(folder / f".{split}-{len(parts):0{INDEX_DIGITS}d}.part", compression)
                parts.append(current)
            if len(line) > max_bytes:
                log.warning("%s/%s/%s: one record of %d bytes exceeds export.max_shard_bytes=%d; it gets its own shard",
                            phase, stage, split, len(line), max_bytes)
            current.write(line)
    finally:
        if current is not None:
            current.close()
    shards = []
    for i, part in enumerate(parts):
        final = folder / shard_name(split, i, len(parts), compression)
        os.replace(part.path, final)
        shards.append(Shard(path=final.relative_to(root).as_posix(), sha256=sha256_file(final),
                            bytes=final.stat().st_size, records=part.records, phase=phase, stage=stage, split=split))
    return shards


def _group_lines(first: tuple, rest: Iterator[tuple], tally: Counter, pending: list) -> Iterator[bytes]:
    """Lines of the group `first` belongs to; stops at the first row of the next group and leaves it in pending."""
    key = first[:3]
    row = first
    while True:
        tally[(*key, row[3])] += 1
        yield row[4]
        row = next(rest, None)
        if row is None:
            return
        if row[:3] != key:
            pending.append(row)
            return


def write_sorted(root: Path, rows: Iterable[tuple[str, str, str, str, bytes]], max_bytes: int,
                 compression: str = COMPRESSION_NONE) -> tuple[list[Shard], Counter]:
    """Write rows `(phase, stage, split, family, line)` sorted by group; returns shards and a tally.

    The tally counts records per (phase, stage, split, family). Rows of one group must be consecutive.
    """
    it = iter(rows)
    shards: list[Shard] = []
    tally: Counter = Counter()
    done: set[tuple] = set()
    pending: list[tuple] = []
    row = next(it, None)
    while row is not None:
        key = tuple(row[:3])
        if key in done:
            raise RuntimeError(f"export: records of {'/'.join(key)} are not consecutive; the input must be sorted")
        done.add(key)
        shards += write_group(root, *key, _group_lines(row, it, tally, pending), max_bytes, compression)
        row = pending.pop() if pending else None
    return shards, tally
