"""Hostile raw input: every reader quarantines with a reason and never crashes, memory stays bounded, and no key
reads or writes outside raw_root / lake / release.

Property tests (hypothesis, derandomised) feed random bytes, random JSON, wrong types, deep nesting, huge fields,
control characters, lone surrogates and mixed encodings through `ingest.parse_object` (the code a Spark worker
runs), so the Arrow boundary is covered too. A 2 GiB single-line object is simulated by a generator-backed stream.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import resource
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.config import load_config
from etl.io import objects
from etl.readers import READERS, REASONS, ReaderLimits, read_object
from etl.schemas import ROLES
from etl.stages import ingest, inventory

for _name, _value in __import__("etl.io.local_s3", fromlist=["x"]).FAKE_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)  # Spark workers inherit the env the JVM starts with

REPO = Path(__file__).resolve().parents[1]
CFG = load_config(str(REPO / "conf" / "shared_corpus.yaml"), check_paths=False)
FAMILY_OF = {"qa_csv": "counsel_chat", "hh_transcript_jsonl": "hh_rlhf_harmless", "esconv_json": "esconv_failed",
             "chatml_jsonl": "support_chat"}
FORMATS = tuple(sorted(READERS))
LIMITS = ReaderLimits(max_record_bytes=4096, max_message_chars=512)  # small, so "huge" is cheap to reach
TWO_GIB = 2 << 30
TRIED: Counter = Counter()  # hostile inputs tried, per kind
HYPO = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def parse_bytes(scratch: Path, fmt: str, data: bytes, kind: str) -> list[dict]:
    """ingest.parse_object over `data` as an object of format `fmt`, checked for the reader contract."""
    TRIED[kind] += 1
    path = scratch / f"object.{fmt}"
    path.write_bytes(data)
    fam = CFG.family(FAMILY_OF[fmt])
    rows = ingest.parse_object(f"{fam.name}/hostile", str(path), "etag", fam.name, fmt, fam.options, LIMITS,
                               2000, True, "")
    assert_contract(rows)
    return rows


def assert_contract(rows: list[dict]) -> None:
    """One stats row last; every other row a quarantine with a known reason or a valid conversation; UTF-8 clean."""
    *records, stats = rows
    assert stats["kind"] == ingest.KIND_STATS and stats["records_read"] == len(records)
    for row in rows:
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")  # what Arrow needs: a lone surrogate here would fail the whole ingest
    for row in records:
        if row["kind"] == ingest.KIND_QUARANTINE:
            assert row["reason"] in REASONS and row["source_locator"]
            continue
        assert row["kind"] == ingest.KIND_CONVERSATION
        messages = json.loads(row["messages_json"])
        assert {m["role"] for m in messages} <= set(ROLES) and all(m["content"] for m in messages)
        assert {"user", "assistant"} <= {m["role"] for m in messages}
        json.loads(row["metadata_json"])


# --- strategies --------------------------------------------------------------------------------------------------
hostile_text = st.text(st.characters(exclude_categories=()), max_size=300) | st.sampled_from(
    ["\x00", "\u2028\u2029", "\ufeff", "\x1b[31m", "\r\n\r", "<script>x</script>&amp;", "\U0001F600" * 50,
     "a" * 600, "\ud800", "x\udc80y", "\\ud800", "Human:", "\n\nHuman: hi\n\nAssistant:"])
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | hostile_text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(hostile_text, inner, max_size=4), max_leaves=20)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | json_value,
                                 "content": hostile_text | json_value})
valid_pair = st.tuples(hostile_text, hostile_text).map(
    lambda qa: [{"role": "user", "content": "q " + qa[0]}, {"role": "assistant", "content": "a " + qa[1]}])
messages = valid_pair | st.lists(message, max_size=6) | json_value  # valid often enough to reach metadata


def dumps(value) -> str:
    """JSON with lone surrogates as escapes (ensure_ascii), like a hostile producer would write them."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


@st.composite
def structured(draw, fmt: str) -> bytes:
    """A document of the right shape for `fmt` whose values are hostile (wrong types, surrogates, controls)."""
    if fmt == "chatml_jsonl":
        lines = [dumps({"messages": draw(messages), "metadata": draw(json_value), "topic": draw(json_value)})
                 for _ in range(draw(st.integers(1, 4)))]
        return "\n".join(lines).encode()
    if fmt == "hh_transcript_jsonl":
        turn = st.tuples(st.sampled_from(["Human", "Assistant", "human", "System"]), hostile_text)
        transcript = st.lists(turn, max_size=5).map(lambda ts: "".join(f"\n\n{w}: t {t}" for w, t in ts))
        lines = [dumps({"chosen": draw(transcript | json_value), "rejected": draw(transcript | json_value)})
                 for _ in range(draw(st.integers(1, 4)))]
        return "\n".join(lines).encode()
    if fmt == "esconv_json":
        turn = st.fixed_dictionaries({"speaker": st.sampled_from(["seeker", "supporter", "usr"]) | json_value,
                                      "content": hostile_text.map("t ".__add__) | json_value,
                                      "annotation": json_value})
        session = st.fixed_dictionaries({"dialog": st.lists(turn, max_size=5) | json_value,
                                         "problem_type": json_value, "survey_score": json_value})
        return dumps(draw(st.lists(session, max_size=4) | json_value)).encode()
    header = list(CFG.family("counsel_chat").options["columns"].values())
    header = draw(st.permutations(header)) if draw(st.booleans()) else header[:draw(st.integers(0, len(header)))]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 4))):
        writer.writerow([draw(hostile_text) for _ in range(draw(st.integers(0, len(header) + 2)))])
    return buf.getvalue().encode("utf-8", "surrogatepass")  # lone surrogates as (invalid) CESU bytes


# --- properties ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@HYPO
@given(data=st.binary(max_size=2048))
def test_random_bytes_never_crash_a_reader(scratch, fmt, data):
    parse_bytes(scratch, fmt, data, "random bytes")


@pytest.mark.parametrize("fmt", FORMATS)
@HYPO
@given(data=st.data())
def test_well_shaped_documents_with_hostile_values_quarantine_or_pass_the_contract(scratch, fmt, data):
    parse_bytes(scratch, fmt, data.draw(structured(fmt)), "hostile values / wrong types / surrogates / controls")


@pytest.mark.parametrize("fmt", FORMATS)
@HYPO
@given(value=json_value)
def test_random_json_never_crashes_a_reader(scratch, fmt, value):
    parse_bytes(scratch, fmt, dumps(value).encode(), "random JSON")


@pytest.mark.parametrize("fmt", FORMATS)
@HYPO
@given(lines=st.lists(st.tuples(st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "utf-8-sig"]),
                                hostile_text), min_size=1, max_size=4))
def test_mixed_encodings_in_one_object_are_quarantined_line_by_line(scratch, fmt, lines):
    parts = []
    for encoding, text in lines:
        doc = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok " + text}]}
        parts.append(json.dumps(doc, ensure_ascii=False).encode(encoding, "surrogatepass" if "utf-8" in encoding
                                                                 else "replace"))
    parse_bytes(scratch, fmt, b"\n".join(parts), "mixed encodings")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth", [100, 5_000, 200_000])
def test_deep_nesting_is_quarantined_not_a_recursion_crash(scratch, fmt, depth):
    nested = "[" * depth + "]" * depth
    doc = {"qa_csv": f"questionText,answerText\n\"{nested}\",\"{nested}\"\n",
           "esconv_json": f"[{{\"dialog\": {nested}}}]", "hh_transcript_jsonl": f"{{\"chosen\": {nested}}}\n",
           "chatml_jsonl": f"{{\"messages\": {nested}}}\n{nested}\n"}[fmt]
    rows = parse_bytes(scratch, fmt, doc.encode(), "deep nesting")
    if fmt != "qa_csv":  # brackets in a CSV cell are just text
        assert all(r["kind"] != ingest.KIND_CONVERSATION for r in rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_fields_are_quarantined_with_their_reason(scratch, fmt):
    big = "x" * (LIMITS.max_message_chars + 1)
    huge = "y" * (LIMITS.max_record_bytes * 3)
    docs = {
        "chatml_jsonl": [json.dumps({"messages": [{"role": "user", "content": big}, {"role": "assistant",
                                                                                       "content": "ok"}]}),
                         json.dumps({"messages": [{"role": "user", "content": huge}]})],
        "hh_transcript_jsonl": [json.dumps({"chosen": f"\n\nHuman: {big}\n\nAssistant: ok", "rejected": ""}),
                                json.dumps({"chosen": huge})],
        "esconv_json": [json.dumps([{"dialog": [{"speaker": "seeker", "content": big},
                                                {"speaker": "supporter", "content": "ok"}]}])],
        "qa_csv": ["questionText,answerText", f"\"{big}\",ok", f"\"{huge}\",ok", f"\"open quote{chr(10) * 3}{huge}"],
    }[fmt]
    rows = parse_bytes(scratch, fmt, "\n".join(docs).encode(), "huge fields")
    reasons = {r["reason"] for r in rows if r["kind"] == ingest.KIND_QUARANTINE}
    assert reasons & {"message_too_long", "record_too_large"}
    assert all(len(r["raw_text"] or "") <= 2000 for r in rows if r["kind"] == ingest.KIND_QUARANTINE)


def test_truncated_and_bomb_gzip_objects_are_quarantined_with_bounded_memory(scratch):
    good = b"\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                               {"role": "assistant", "content": f"a{i}"}]}).encode()
                      for i in range(50))
    packed = gzip.compress(good)
    rows = parse_bytes(scratch, "chatml_jsonl", packed[: len(packed) // 2], "truncated gzip")
    assert rows[-2]["reason"] == "truncated_gzip"
    bomb = gzip.compress(b"a" * (256 << 20), compresslevel=9)  # 256 MiB of one line in ~250 KiB
    tracemalloc.start()
    try:
        rows = parse_bytes(scratch, "chatml_jsonl", bomb, "gzip bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r["reason"] for r in rows[:-1]] == ["record_too_large"] and peak < 64 << 20


# --- a 2 GiB single-line object, never materialised -------------------------------------------------------------------
class EndlessLine(io.RawIOBase):
    """`size` bytes: `head`, then one letter repeated, with no newline; generated on demand, never held."""

    def __init__(self, size: int, head: bytes):
        self.size, self.pos, self.head = size, 0, head
        self.block = memoryview(b"a" * (1 << 20))
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self.size - self.pos)
        if n <= 0:
            return 0
        if self.pos < len(self.head):
            chunk = self.head[self.pos:self.pos + n]
        else:
            chunk = self.block[: min(n, len(self.block))]
        buf[: len(chunk)] = chunk
        self.pos += len(chunk)
        self.served += len(chunk)
        return len(chunk)


HEADS = {"chatml_jsonl": b'{"messages": "', "hh_transcript_jsonl": b'{"chosen": "', "esconv_json": b'[{"dialog": "',
         "qa_csv": b'questionText,answerText\n"q","'}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_2gib_single_line_object_is_quarantined_in_bounded_memory(fmt):
    limits = ReaderLimits()  # the production limits: 8 MiB per record
    stream = EndlessLine(TWO_GIB, HEADS[fmt])
    fam = CFG.family(FAMILY_OF[fmt])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    tracemalloc.start()
    try:
        records = list(read_object(fmt, io.BufferedReader(stream, 1 << 20), fam.options, limits))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    TRIED["2 GiB single line"] += 1
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - rss_before
    assert [r.error for r in records] == ["record_too_large"]
    assert len(records[0].raw_text) <= 64 * 1024
    # line readers stream the whole line through 64 KiB chunks; esconv (one JSON array, parsed whole) stops after
    # reading 16 x max_record_bytes = 128 MiB, which its buffered read holds twice for a moment
    assert peak < TWO_GIB // 4 and rss_growth < TWO_GIB // 4, (peak, rss_growth)
    if fmt != "esconv_json":
        assert stream.served == TWO_GIB and peak < 4 * limits.max_record_bytes


# --- keys: spaces, unicode, ../ --------------------------------------------------------------------------------------
@HYPO
@given(key=st.lists(st.sampled_from(["..", ".", "", "support_chat", "a b", "ünï ✓", "x.jsonl", "..jsonl", "/"])
                    | st.text(max_size=8), min_size=1, max_size=5).map("/".join))
def test_no_key_that_leaves_the_root_is_ever_mapped(key):
    TRIED["object keys"] += 1
    info = objects.ObjectInfo(key, f"s3://b/p/{key}", 10, "e", None)
    (row,) = inventory.inventory_rows([info], CFG)
    if ".." in key.replace("\\", "/").split("/") or key.startswith("/"):
        assert row["status"] != inventory.STATUS_MAPPED


def test_a_symlink_out_of_raw_root_is_listed_but_never_read(tmp_path):
    raw, outside = tmp_path / "raw", tmp_path / "outside.jsonl"
    (raw / "support_chat").mkdir(parents=True)
    outside.write_text('{"messages": [{"role": "user", "content": "secret"}]}\n')
    (raw / "support_chat" / "evil.jsonl").symlink_to(outside)
    (raw / "support_chat" / "with space ünï ✓.jsonl").write_text("{}\n")
    rows = {r["key"]: r for r in inventory.inventory_rows(objects.list_objects(str(raw)), CFG)}
    assert rows["support_chat/evil.jsonl"]["status"] == inventory.STATUS_UNREADABLE
    assert "outside raw_root" in rows["support_chat/evil.jsonl"]["detail"]
    assert rows["support_chat/with space ünï ✓.jsonl"]["status"] == inventory.STATUS_MAPPED
    TRIED["object keys"] += 2


HOSTILE_OBJECTS = {
    "support_chat/with space.jsonl": b'{"messages": [{"role": "user", "content": "hi"}, '
                                     b'{"role": "assistant", "content": "hello"}]}\n',
    "support_chat/\u00fcn\u00ef c\u00f6d\u00e9 \u2713.jsonl": b'{"messages": [{"role": "user", "content": "q"}, '
                                                             b'{"role": "assistant", "content": "a"}]}\n{"x": 1}\n',
    "support_chat/../../../escape.jsonl": b'{"messages": []}\n',
    "support_chat/./a/../b.jsonl": b"\xff\xfe not json\n",
    "support_chat/surrogates.jsonl": b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", '
                                     b'"content": "a"}], "metadata": {"k\\ud800": "v\\udfff"}, "topic": "\\ud83d"}\n',
    "support_chat/latin1.jsonl": b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
    "support_chat/deep.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "support_chat/huge.jsonl": b'{"messages": "' + b"z" * (9 << 20) + b'"}\n{"messages": 5}\n',
}


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def test_hostile_keys_and_objects_from_s3_end_quarantined_and_nothing_leaves_the_lake(spark, make_config, tmp_path):
    from etl.io import delta
    from etl.io.local_s3 import local_s3
    from etl.testing.faulty_proxy import FaultyProxy

    before = _files(tmp_path)
    with local_s3(("s3://hostile-raw/root",)) as endpoint, FaultyProxy(endpoint) as counter:
        client = objects.s3_client(endpoint)
        for key, body in HOSTILE_OBJECTS.items():
            client.put_object(Bucket="hostile-raw", Key=f"root/{key}", Body=body)
        cfg = make_config("sample.yaml", raw_root="s3://hostile-raw/root", s3_endpoint_url=counter.url)
        inv = {r["key"]: r for r in inventory.inventory_rows(objects.list_objects(cfg.raw_root, counter.url), cfg)}
        inventory.run(spark, cfg, "hostile")
        counts = ingest.run(spark, cfg, "hostile")
        gets = counter.requests["get"]
    TRIED["object keys"] += len(HOSTILE_OBJECTS)
    unsafe = [k for k in HOSTILE_OBJECTS if ".." in k.split("/")]
    assert all(inv[k]["status"] == inventory.STATUS_UNREADABLE for k in unsafe)
    read_keys = [k for k in HOSTILE_OBJECTS if k not in unsafe]
    assert gets == len(read_keys)  # the `..` keys were never fetched
    conv = delta.read_table(spark, cfg, "conversations")
    quar = delta.read_table(spark, cfg, "quarantine")
    assert counts["records_read"] == conv.count() + quar.count()  # nothing lost
    assert {r["source_uri"] for r in conv.select("source_uri").distinct().collect()} == {
        "support_chat/with space.jsonl", "support_chat/\u00fcn\u00ef c\u00f6d\u00e9 \u2713.jsonl",
        "support_chat/surrogates.jsonl"}
    reasons = {r["reason"] for r in quar.select("reason").distinct().collect()}
    assert reasons == {"record_too_large", "invalid_utf8", "malformed_json", "no_messages"}
    new_files = _files(tmp_path) - before
    outside = [f for f in new_files if not f.startswith((cfg.lake_root, cfg.release_dir))]
    assert outside == []  # nothing written outside the lake (or release) folder


def test_zz_hostile_inputs_tried(capsys):
    """The count of hostile inputs tried (a figure of the reliability note)."""
    total = sum(TRIED.values())
    with capsys.disabled():
        print(f"\nhostile inputs tried: {total} {json.dumps(dict(TRIED))}")
    assert total >= 1000
