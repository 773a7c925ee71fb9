"""Readers, one behaviour per test on tiny inline bytes with hand-written expectations (property tests and the
real corpus: test_readers_robustness.py; helpers: reader_support.py)."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from etl.readers import (
    BAD_ROLE,
    EMPTY_OBJECT,
    INVALID_UTF8,
    MALFORMED_JSON,
    MALFORMED_ROW,
    MESSAGE_TOO_LONG,
    MISSING_COLUMN,
    NO_ASSISTANT_TURN,
    NO_USER_TURN,
    READERS,
    RECORD_TOO_LARGE,
    TRUNCATED_GZIP,
    UNREADABLE,
    WRONG_TYPE,
    ReaderLimits,
    read_object,
)
from reader_support import COUNSEL_LEGACY_OPTIONS, LIMITS, QA_OPTIONS, chat, errors, good_locators, jsonl, read


# --- chatml_jsonl -------------------------------------------------------------------------------------------

def test_chatml_reads_messages_metadata_topic_and_score_skipping_blank_lines():
    line1 = {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "I can't sleep."},
            {"role": "user", "content": " It's 3am again. "},
            {"role": "assistant", "content": "That sounds exhausting."},
        ],
        "metadata": {"source": "support", "turn_ids": [1, 2]},
        "topic": "sleep",
        "quality_score": "4.5",
        "id": 7,
    }
    records = read("chatml_jsonl", jsonl(line1) + b"\n   \n" + jsonl(chat("hi", "hello")))
    assert [r.locator for r in records] == ["line:1", "line:4"]
    first = records[0]
    assert first.error is None
    assert first.messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "I can't sleep.\nIt's 3am again."},
        {"role": "assistant", "content": "That sounds exhausting."},
    ]
    assert first.metadata == {"source": "support", "turn_ids": "[1, 2]", "id": "7"}
    assert first.topic == "sleep"
    assert first.quality_score == 4.5
    assert records[1].messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_chatml_bad_lines_each_become_one_error_and_neighbours_survive():
    data = jsonl(
        chat("a", "b"),
        b'{"messages": [{"role": "user", "content": "unterminated"',
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
        [1, 2],
        {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "assistant", "content": "only me"}]},
        {"messages": []},
        chat("c", "d"),
    )
    records = read("chatml_jsonl", data)
    assert errors(records) == [
        ("line:2", MALFORMED_JSON), ("line:3", INVALID_UTF8), ("line:4", WRONG_TYPE), ("line:5", BAD_ROLE),
        ("line:6", NO_USER_TURN), ("line:7", "no_messages"),
    ]
    assert good_locators(records) == ["line:1", "line:8"]
    assert records[2].raw_text == '{"messages": [{"role": "user", "content": "caf\ufffd"}]}'


def test_line_longer_than_limit_is_quarantined_without_keeping_it_whole():
    huge = json.dumps(chat("x" * 300_000, "y")).encode()
    data = jsonl(chat("a", "b"), huge, chat("c", "d"))
    records = read("chatml_jsonl", data, limits=ReaderLimits(max_record_bytes=1000))
    assert errors(records) == [("line:2", RECORD_TOO_LARGE)]
    assert good_locators(records) == ["line:1", "line:3"]
    assert len(records[1].raw_text) == 64 * 1024
    assert f"{len(huge)} bytes" in records[1].detail


def test_message_over_max_chars_is_message_too_long():
    records = read("chatml_jsonl", jsonl(chat("a" * 50, "b")), limits=ReaderLimits(max_message_chars=10))
    assert errors(records) == [("line:1", MESSAGE_TOO_LONG)]


# --- gzip and object-level failures ---------------------------------------------------------------------------

def test_gzip_is_detected_by_magic_bytes_not_by_name():
    plain = jsonl(chat("a", "b"), chat("c", "d"))
    unzipped, zipped = read("chatml_jsonl", plain), read("chatml_jsonl", gzip.compress(plain))
    assert [(r.locator, r.messages) for r in zipped] == [(r.locator, r.messages) for r in unzipped]
    assert len(zipped) == 2 and not errors(zipped)


def test_truncated_gzip_keeps_records_read_so_far_then_one_error():
    lines = [chat(f"question {i} " + "pad " * 200, f"answer {i}") for i in range(200)]
    data = gzip.compress(jsonl(*lines))
    records = read("chatml_jsonl", data[: len(data) // 2])
    assert [r.error for r in records[:-1]] == [None] * (len(records) - 1)
    assert len(records) > 10
    assert records[-1].error == TRUNCATED_GZIP
    assert records[-1].locator == f"line:{len(records)}"


def test_gzip_cut_inside_its_header_is_one_object_level_error():
    assert errors(read("chatml_jsonl", gzip.compress(jsonl(chat("a", "b")))[:6])) == [("object", TRUNCATED_GZIP)]


@pytest.mark.parametrize("fmt", sorted(READERS))
@pytest.mark.parametrize("data", [b"", gzip.compress(b"")], ids=["plain", "gzip"])
def test_empty_object_is_one_empty_object_record(fmt, data):
    assert errors(read(fmt, data)) == [("object", EMPTY_OBJECT)]


def test_unknown_format_and_failing_stream_become_unreadable_not_exceptions():
    assert errors(list(read_object("parquet", io.BytesIO(b"x"), {}, LIMITS))) == [("object", UNREADABLE)]

    class Failing(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("peer went away")
            data = jsonl(chat("a", "b"))
            buffer[: len(data)] = data
            return len(data)

    records = list(read_object("chatml_jsonl", io.BufferedReader(Failing()), {}, LIMITS))
    assert errors(records) == [("line:2", UNREADABLE)]
    assert "peer went away" in records[-1].detail


# --- hh_transcript_jsonl --------------------------------------------------------------------------------------

def test_hh_transcript_keeps_chosen_messages_and_both_continuations():
    prefix = "\n\nHuman: I feel alone.\n\nAssistant: I'm sorry. What happened?\n\nHuman: My friends left."
    line = {"chosen": prefix + "\n\nAssistant: That hurts. Want to talk about it?",
            "rejected": prefix + "\n\nAssistant: Get new friends.\n\nHuman: ok"}
    [record] = read("hh_transcript_jsonl", jsonl(line))
    assert record.error is None
    assert record.messages == [
        {"role": "user", "content": "I feel alone."},
        {"role": "assistant", "content": "I'm sorry. What happened?"},
        {"role": "user", "content": "My friends left."},
        {"role": "assistant", "content": "That hurts. Want to talk about it?"},
    ]
    assert record.metadata == {
        "prompt_turns": "3",
        "chosen_messages_tail": '[{"role": "assistant", "content": "That hurts. Want to talk about it?"}]',
        "rejected_messages": '[{"role": "assistant", "content": "Get new friends."}, '
                             '{"role": "user", "content": "ok"}]',
        "pair_shares_prefix": "true",
    }


def test_hh_field_names_come_from_options():
    line = {"good": "\n\nHuman: hi\n\nAssistant: hello", "bad": "\n\nHuman: hi\n\nAssistant: go away"}
    [record] = read("hh_transcript_jsonl", jsonl(line), {"chosen_field": "good", "rejected_field": "bad"})
    assert record.messages[1] == {"role": "assistant", "content": "hello"}
    assert json.loads(record.metadata["rejected_messages"]) == [{"role": "assistant", "content": "go away"}]


def test_hh_transcript_without_assistant_turn_is_quarantined_and_neighbours_survive():
    ok = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    empty_answer = {"chosen": "\n\nHuman: steal a puppy?\n\nAssistant: ", "rejected": "\n\nHuman: x\n\nAssistant: y"}
    no_marker = {"chosen": "just text", "rejected": ""}
    records = read("hh_transcript_jsonl", jsonl(ok, empty_answer, b"{not json", no_marker, ok))
    assert errors(records) == [
        ("line:2", NO_ASSISTANT_TURN), ("line:3", MALFORMED_JSON), ("line:4", "bad_message"),
    ]
    assert good_locators(records) == ["line:1", "line:5"]


def test_hh_chosen_ending_on_empty_assistant_is_kept_but_not_a_pair():
    line = {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: ",
            "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d"}
    [record] = read("hh_transcript_jsonl", jsonl(line))
    assert record.error is None and len(record.messages) == 3
    assert (record.metadata["prompt_turns"], record.metadata["pair_shares_prefix"]) == ("3", "false")


# --- qa_csv -------------------------------------------------------------------------------------------------

QA_HEADER = (",questionID,questionTitle,questionText,questionLink,topic,therapistInfo,therapistURL,answerText,upvotes,"
             "views,split\n")


def test_qa_csv_maps_columns_strips_html_and_prefixes_informative_titles():
    data = (
        QA_HEADER
        + '0,11,Why am I always tired?,"I sleep 9 hours.\nStill tired.",https://q/11,sleep,"Ann Lee, LMFT",https://t/ann,'
        + '"<p>Tiredness can have <b>many</b> causes.</p><p>See a doctor &amp; track sleep.</p>",3,120,train\n'
        + '1,12,Can I stop worrying?,I worry all day. Can I stop worrying?,https://q/12,anxiety,Bo,https://t/bo,Yes.,x,5,test\n'
    ).encode()
    first, second = read("qa_csv", data)
    assert first.locator == "row:1" and first.error is None
    assert first.messages == [
        {"role": "user", "content": "Why am I always tired?\n\nI sleep 9 hours.\nStill tired."},
        {"role": "assistant", "content": "Tiredness can have many causes.\n\nSee a doctor & track sleep."},
    ]
    assert first.metadata == {"question_id": "11", "question_title": "Why am I always tired?",
                              "author": "Ann Lee, LMFT", "views": "120", "upstream_split": "train",
                              "questionLink": "https://q/11"}
    assert (first.topic, first.quality_score) == ("sleep", 3.0)
    assert second.messages[0] == {"role": "user", "content": "I worry all day. Can I stop worrying?"}
    assert (second.locator, second.quality_score) == ("row:2", None)


def test_qa_csv_topic_list_takes_first_topic_and_empty_prompt_falls_back_to_title():
    data = (
        "questionID,questionTitle,questionText,questionUrl,topics,therapistName,therapistUrl,answerText,upvotes\n"
        "a1,How do I grieve?,,https://q,\"Grief and Loss,Depression\",Cy,https://t,<p>Slowly.</p>,0\n"
    ).encode()
    [record] = read("qa_csv", data, COUNSEL_LEGACY_OPTIONS)
    assert record.messages == [{"role": "user", "content": "How do I grieve?"},
                               {"role": "assistant", "content": "Slowly."}]
    assert record.topic == "Grief and Loss"
    assert record.metadata["topics"] == '["Grief and Loss", "Depression"]'
    assert record.quality_score == 0.0


def test_qa_csv_header_missing_mapped_column_quarantines_every_row():
    data = b"questionID,questionTitle,answerText\n1,t,a\n2,u,b\n"
    records = read("qa_csv", data)
    assert errors(records) == [("row:1", MISSING_COLUMN), ("row:2", MISSING_COLUMN)]
    assert "prompt='questionText'" in records[0].detail and "'answerText'" in records[0].detail


def test_qa_csv_bad_rows_each_become_one_error_and_neighbours_survive():
    good = '0,1,Title,Text?,l,anxiety,T,u,Answer.,1,2,train\n'
    data = (
        QA_HEADER + good
        + '1,2,Title,Text?,l,anxiety,T,u,,1,2,train\n'  # empty answer
        + '2,3,Title,Text?,l,anxiety\n'  # too few fields
    ).encode() + b'3,4,Title,Caf\xe9?,l,anxiety,T,u,Answer.,1,2,train\n' + (good.replace("0,1", "4,5")).encode()
    records = read("qa_csv", data)
    assert errors(records) == [("row:2", NO_ASSISTANT_TURN), ("row:3", MALFORMED_ROW), ("row:4", INVALID_UTF8)]
    assert good_locators(records) == ["row:1", "row:5"]
    assert "Caf\ufffd" in records[3].raw_text


def test_qa_csv_leaves_the_callers_stream_open():
    stream = io.BytesIO((QA_HEADER + '0,1,T,Q?,l,x,T,u,A.,1,2,train\n').encode())
    assert len(list(read_object("qa_csv", stream, QA_OPTIONS, LIMITS))) == 1
    assert not stream.closed


# --- esconv_json --------------------------------------------------------------------------------------------

SESSION = {
    "experience_type": "Current Experience",
    "emotion_type": "anxiety",
    "problem_type": "job crisis",
    "situation": "I may lose my job.",
    "survey_score": {"seeker": {"empathy": "4", "relevance": "5", "initial_emotion_intensity": "4"}, "supporter": {}},
    "dialog": [
        {"speaker": "seeker", "annotation": {}, "content": "Hi\n"},
        {"speaker": "seeker", "annotation": {}, "content": "I'm scared about work."},
        {"speaker": "supporter", "annotation": {"strategy": "Question"}, "content": "What happened?"},
        {"speaker": "supporter", "annotation": {"strategy": "Reflection of feelings"}, "content": "You sound worried."},
        {"speaker": "seeker", "annotation": {"feedback": "5"}, "content": "Layoffs."},
        {"speaker": "supporter", "annotation": {"strategy": "Providing Suggestions"}, "content": "Update your CV."},
    ],
}


def test_esconv_merges_same_speaker_turns_and_flattens_annotations():
    [record] = read("esconv_json", json.dumps([SESSION]).encode())
    assert record.locator == "index:0" and record.error is None
    assert record.messages == [
        {"role": "user", "content": "Hi\nI'm scared about work."},
        {"role": "assistant", "content": "What happened?\nYou sound worried."},
        {"role": "user", "content": "Layoffs."},
        {"role": "assistant", "content": "Update your CV."},
    ]
    assert record.metadata == {
        "emotion_type": "anxiety", "problem_type": "job crisis", "situation": "I may lose my job.",
        "experience_type": "Current Experience", "survey.seeker.empathy": "4", "survey.seeker.relevance": "5",
        "survey.seeker.initial_emotion_intensity": "4",
        "strategies": '["Question|Reflection of feelings", "Providing Suggestions"]', "feedback": '["5"]',
    }
    assert (record.topic, record.quality_score) == ("job crisis", 4.5)


def test_esconv_role_mapping_can_be_overridden():
    session = {"dialog": [{"speaker": "client", "content": "hi"}, {"speaker": "coach", "content": "hello"}]}
    [record] = read("esconv_json", json.dumps([session]).encode(), {"roles": {"client": "user", "coach": "assistant"}})
    assert [m["role"] for m in record.messages] == ["user", "assistant"]
    assert record.quality_score is None


def test_esconv_bad_elements_each_become_one_error_and_neighbours_survive():
    seeker_only = {**SESSION, "dialog": SESSION["dialog"][:2]}
    records = read("esconv_json", json.dumps([SESSION, "not a session", seeker_only, SESSION]).encode())
    assert errors(records) == [("index:1", WRONG_TYPE), ("index:2", NO_ASSISTANT_TURN)]
    assert good_locators(records) == ["index:0", "index:3"]


@pytest.mark.parametrize("data, reason", [
    (b'{"dialog": []}', WRONG_TYPE),
    (b'[{"dialog": [', MALFORMED_JSON),
    (b'[{"situation": "caf\xe9"}]', INVALID_UTF8),
    (json.dumps([SESSION] * 40).encode(), RECORD_TOO_LARGE),
])
def test_esconv_object_level_failures_are_one_object_record(data, reason):
    assert errors(read("esconv_json", data, limits=ReaderLimits(max_record_bytes=1000))) == [("object", reason)]
