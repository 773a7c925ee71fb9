"""Raw-tree writers of the scale generator: each family in the format the shared corpus conf reads it with.

Files are sharded (`<family>/<prefix>-NNNNN.<ext>`) so ingest can read them in parallel, and byte-identical for the
same conversations (gzip without a timestamp, sorted JSON keys where the format allows).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

COUNSEL_HEADER = ["", "questionID", "questionTitle", "questionText", "questionLink", "topic", "therapistInfo",
                  "therapistURL", "answerText", "upvotes", "views", "split"]
LEGACY_HEADER = ["questionID", "questionTitle", "questionText", "questionUrl", "topics", "therapistName",
                 "therapistUrl", "answerText", "upvotes"]
ROWS_PER_SHARD = {"counsel_chat": 2500, "counsel_chat_legacy": 2500, "hh_rlhf_harmless": 2500,
                  "esconv_failed": 250, "support_chat": 2500}
EXTENSIONS = {"counsel_chat": "csv", "counsel_chat_legacy": "csv", "hh_rlhf_harmless": "jsonl.gz",
              "esconv_failed": "json", "support_chat": "jsonl"}


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:80]


def _turns(conv: dict) -> list[dict]:
    """Messages without system turns (formats other than ChatML cannot hold one)."""
    return [m for m in conv["messages"] if m["role"] != "system"]


def _qa_parts(conv: dict) -> tuple[str, str]:
    turns = _turns(conv)
    question = next((m["content"] for m in turns if m["role"] == "user"), "")
    answer = "\n".join(m["content"] for m in turns if m["role"] == "assistant")
    return question, answer


def counsel_row(conv: dict, row_no: int) -> list[str]:
    """A 2020-scrape CSV row (therapist name glued to a tagline, as upstream)."""
    f = conv["fields"]
    question, answer = _qa_parts(conv)
    return [str(row_no), f["qid"], f["title"], question, f"https://counselchat.com/questions/{_slug(f['title'])}",
            f["topic"], f"{f['therapist']}Licensed Counselor", f"https://counselchat.com/therapists/{_slug(f['therapist'])}",
            answer, f["upvotes"], "100", "train"]


def legacy_row(conv: dict) -> list[str]:
    """A legacy-scrape CSV row: the answer as HTML paragraphs."""
    f = conv["fields"]
    question, answer = _qa_parts(conv)
    html_answer = "".join(f"<p>{p}</p>" for p in answer.split("\n") if p.strip()) or answer
    return [f["qid"], f["title"], question, f"https://counselchat.com/questions/{_slug(f['title'])}", f["topic"],
            f["therapist"], f"https://counselchat.com/therapists/{_slug(f['therapist'])}", html_answer, f["upvotes"]]


def _transcript(turns: list[dict]) -> str:
    return "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns)


def hh_line(conv: dict) -> str:
    """An hh-rlhf line: chosen transcript and a rejected one sharing its prefix."""
    turns = _turns(conv)
    prefix = turns[:-1] if turns and turns[-1]["role"] == "assistant" else turns
    rejected = prefix + [{"role": "assistant", "content": conv["fields"].get("rejected") or "I can't help with that."}]
    return json.dumps({"chosen": _transcript(turns), "rejected": _transcript(rejected)}, ensure_ascii=False)


def esconv_session(conv: dict) -> dict:
    """An ESConv session object (speaker/listener dialog with strategy annotations)."""
    dialog = [{"speaker": "speaker" if m["role"] == "user" else "listener",
               "annotation": {} if m["role"] == "user" else {"strategy": "Other"}, "content": m["content"]}
              for m in _turns(conv)]
    return {**{k: v for k, v in conv["fields"].items() if v is not None}, "dialog": dialog}


def chatml_line(conv: dict) -> str:
    topic = conv["fields"].get("topic")
    return json.dumps({"messages": conv["messages"], "topic": topic}, ensure_ascii=False, sort_keys=True)


class _Shard:
    def __init__(self, path: Path, family: str):
        self.path, self.family, self.rows = path, family, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sessions: list[dict] = []
        self.raw = open(path, "wb")  # noqa: SIM115 - a shard stays open across add() calls; close() closes it
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0) if path.name.endswith(".gz") else None
        self.text = io.TextIOWrapper(self.gz or self.raw, encoding="utf-8", newline="")
        self.csv = csv.writer(self.text, lineterminator="\n") if family.startswith("counsel") else None
        if self.csv:
            self.csv.writerow(COUNSEL_HEADER if family == "counsel_chat" else LEGACY_HEADER)

    def add(self, conv: dict) -> str:
        """Write one conversation; returns its locator as the family's reader reports it."""
        self.rows += 1
        if self.family == "counsel_chat":
            self.csv.writerow(counsel_row(conv, self.rows - 1))
        elif self.family == "counsel_chat_legacy":
            self.csv.writerow(legacy_row(conv))
        elif self.family == "esconv_failed":
            self.sessions.append(esconv_session(conv))
            return f"index:{self.rows - 1}"
        else:
            self.text.write((hh_line(conv) if self.family == "hh_rlhf_harmless" else chatml_line(conv)) + "\n")
            return f"line:{self.rows}"
        return f"row:{self.rows}"

    def close(self) -> None:
        if self.sessions:
            self.text.write(json.dumps(self.sessions, ensure_ascii=False, sort_keys=True))
        self.text.close()  # closes the GzipFile, which leaves the file object it was given open
        if not self.raw.closed:
            self.raw.close()


class TreeWriter:
    """Sharded raw tree under `root`; `add(conv)` returns (object key relative to root, locator)."""

    def __init__(self, root: Path, prefix: str):
        self.root, self.prefix = Path(root), prefix
        self.open: dict[str, _Shard] = {}
        self.shard_no: dict[str, int] = {}
        self.files: dict[str, int] = {}

    def add(self, conv: dict) -> tuple[str, str]:
        family = conv["family"]
        shard = self.open.get(family)
        if shard is None or shard.rows >= ROWS_PER_SHARD[family]:
            if shard is not None:
                shard.close()
            number = self.shard_no.get(family, -1) + 1
            self.shard_no[family] = number
            key = f"{family}/{self.prefix}-{number:05d}.{EXTENSIONS[family]}"
            shard = self.open[family] = _Shard(self.root / key, family)
            self.files[key] = 0
        locator = shard.add(conv)
        key = str(shard.path.relative_to(self.root))
        self.files[key] += 1
        return key, locator

    def close(self) -> dict[str, int]:
        """Close every shard; returns {key: conversations written}."""
        for shard in self.open.values():
            shard.close()
        self.open = {}
        return dict(sorted(self.files.items()))
