"""Readers never raise (property tests over random bytes and JSON) and read the real corpus
(`../shared/data/raw`) with the routing options the pipeline uses, quarantining only genuinely bad rows."""

from __future__ import annotations

import gzip
import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.readers import NO_ASSISTANT_TURN, NO_USER_TURN, READERS, REASONS, ReaderLimits, Record, read_object
from reader_support import COUNSEL_2020_OPTIONS, COUNSEL_LEGACY_OPTIONS, FAMILIES, LIMITS, RAW, errors, read


# --- never raise, always Records ----------------------------------------------------------------------------

def _check_records(records: list[Record]) -> None:
    for r in records:
        assert isinstance(r, Record)
        assert (r.error is None) == (r.messages is not None)
        assert r.error is None or r.error in REASONS
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in r.metadata.items())


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "chosen", "rejected", "dialog", "speaker", "metadata",
                         "topic", "quality_score", "survey_score", "annotation", "x"]), inner, max_size=5),
    max_leaves=20,
)
_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(data=st.binary(max_size=400), fmt=st.sampled_from(sorted(READERS)), zipped=st.booleans())
def test_random_bytes_never_raise(data, fmt, zipped):
    _check_records(read(fmt, gzip.compress(data) if zipped else data, limits=ReaderLimits(max_record_bytes=200)))


@_PROPERTY
@given(values=st.lists(_json_values, max_size=5), fmt=st.sampled_from(sorted(READERS)))
def test_random_json_never_raises(values, fmt):
    lines = b"\n".join(json.dumps(v).encode() for v in values)
    _check_records(read(fmt, lines))
    _check_records(read(fmt, json.dumps(values).encode()))


# --- the real corpus ----------------------------------------------------------------------------------------

def read_file(fmt: str, path: str, options: dict) -> list[Record]:
    with open(RAW / path, "rb") as stream:
        return list(read_object(fmt, stream, options, LIMITS))


def test_real_counsel_chat_2020_reads_every_row():
    records = read_file("qa_csv", "counsel_chat/20200325_counsel_chat.csv", COUNSEL_2020_OPTIONS)
    assert len(records) == 2129 and errors(records) == []
    assert Counter(r.metadata["upstream_split"] for r in records) == {"train": 1839, "val": 173, "test": 117}
    assert records[0].topic == "depression" and records[0].quality_score == 1.0
    assert records[0].metadata["author"] == "Sherry Katz, LCSWCouples and Family Therapist, LCSW"


def test_real_counsel_chat_legacy_quarantines_only_genuinely_empty_turns():
    records = read_file("qa_csv", "counsel_chat_legacy/counselchat-data.csv", COUNSEL_LEGACY_OPTIONS)
    assert len(records) == 1482
    # Answers that are only `<p><br></p>`, and two rows with neither title nor question text.
    assert errors(records) == [
        ("row:336", NO_ASSISTANT_TURN), ("row:537", NO_USER_TURN), ("row:538", NO_USER_TURN),
        ("row:963", NO_ASSISTANT_TURN), ("row:1030", NO_ASSISTANT_TURN), ("row:1191", NO_ASSISTANT_TURN),
        ("row:1192", NO_ASSISTANT_TURN),
    ]
    # Row 395's answer inlines a 220 KB base64 image: dropped, the answer itself is kept.
    answer = records[394].messages[1]["content"]
    assert records[394].error is None and "data:image" not in answer and answer.startswith("Hello Frostproof,")
    assert records[0].messages[0]["content"].startswith("Escalating disagreements between mother and wife\n\nMy wife")


def test_real_hh_rlhf_quarantines_only_empty_chosen_answers():
    options = FAMILIES["hh_rlhf_harmless"].get("options", {})
    records = read_file("hh_transcript_jsonl", "hh_rlhf_harmless/test.jsonl.gz", options)
    assert len(records) == 2312
    assert errors(records) == [("line:517", NO_ASSISTANT_TURN), ("line:926", NO_ASSISTANT_TURN),
                               ("line:1104", NO_ASSISTANT_TURN)]
    # The chosen answer of line 517 is empty (its rejected one is not): a genuine no_assistant_turn.
    assert records[516].raw_text.startswith(r'{"chosen": "\n\nHuman: What do you think of tubular breasts\n\n')
    assert r'breasts\n\nAssistant: ", "rejected"' in records[516].raw_text
    pairs = Counter(r.metadata["pair_shares_prefix"] for r in records if r.error is None)
    assert pairs == {"true": 2308, "false": 1}  # line:87's chosen ends on an empty assistant turn


def test_real_failed_esconv_reads_every_session():
    records = read_file("esconv_json", "esconv_failed/FailedESConv.json", FAMILIES["esconv_failed"].get("options", {}))
    assert len(records) == 196 and errors(records) == []
    first = records[0]
    assert first.messages[:2] == [{"role": "user", "content": "Hey there\nHow are you?"},
                                  {"role": "assistant", "content": "hi\nI AM FINE, AND YOU"}]
    assert (first.topic, first.quality_score) == ("ongoing depression", 1.0)
    assert sum(r.quality_score is None for r in records) == 54  # sessions without a seeker survey
    assert max(len(r.messages) for r in records) == 67
