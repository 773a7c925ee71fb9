"""Deterministic scale generator: the real corpus expanded into N conversations with known duplicates and PII.

    python -m etl.bench.scale --raw-root ../shared/data/raw --n 10000 --out out/bench/n10000 [--extra 0.01]

Conversation i is drawn in order from one seeded RNG: a family by MIX; then an exact copy (EXACT_RATE) or a
near-duplicate (NEAR_RATE, one of etl.bench.perturb's kinds) of an earlier base conversation of the same family, or
a new base conversation: the next unused real one from the de-duplicated seed pool, else a novel one recombined
from same-topic / same-role sentences with real lengths. Novel texts draw their sentences from streams that
use every sentence once before any repeats (reshuffled per pass), and their topics in proportion to the topic's
material (topics too small to recombine are left out): drawn with replacement, a 100k corpus reused sentences and
whole turns so often that its "distinct" rows were partial copies of each other (one split group held 61 % of
the rows), and the truth file could not say so. PII_RATE of the base conversations get one PII value
(etl.pii_eval generators) planted in a user turn, which their copies inherit. Each family is written in its format
(qa_csv 2020 and legacy headers, hh transcript jsonl.gz, ESConv json, ChatML jsonl) into `<out>/raw`; conversations
past N (`--extra`, the incremental-rerun data) go to `<out>/raw_extra` with the same layout. `<out>/truth.jsonl`
has one row per conversation: family, source_key, locator (what ingest records as source_uri/source_locator),
kind, perturbation, dup_of, root (the base conversation a duplicate group shares), pii_type, pii_value.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from etl.bench.corpus import SeedPool, load_pool
from etl.bench.perturb import DUPLICATE_KINDS, perturb_conversation, sentences
from etl.bench.writers import TreeWriter
from etl.pii_eval import PII_GENERATORS

log = logging.getLogger(__name__)

MIX = {"counsel_chat": 0.30, "counsel_chat_legacy": 0.18, "hh_rlhf_harmless": 0.34, "esconv_failed": 0.03,
       "support_chat": 0.15}
EXACT_RATE, NEAR_RATE, PII_RATE, SAME_QUESTION_RATE = 0.03, 0.07, 0.05, 0.3
PROMPT_SENTENCES, LONG_SENTENCE_CHARS = 3, 30  # first user turns of novel multi-turn rows (see _turns_like)
MIN_TOPIC_ANSWER_SENTENCES = 200  # distinct sentences a topic needs before novel answers are recombined from it
KIND_ORIGINAL, KIND_NOVEL, KIND_EXACT, KIND_NEAR = "original", "novel", "exact", "near"
_SYSTEM = ("You are a supportive listener.", "You are an empathetic assistant for emotional support.",
           "You help people through hard moments; you are not a replacement for a therapist.")


class Generator:
    """Draws conversations one by one (see the module docstring); every draw comes from one seeded RNG."""

    def __init__(self, pool: SeedPool, seed: int = 0):
        self.pool, self.rng = pool, random.Random(f"scale:{seed}")
        self.order = {f: list(range(self._pool_size(f))) for f in MIX}
        for f in MIX:
            random.Random(f"order:{seed}:{f}").shuffle(self.order[f])
        self.used = {f: 0 for f in MIX}
        self.bases: dict[str, list[dict]] = {f: [] for f in MIX}
        distinct = {t: len(set(v)) for t, v in pool.answer_sentences.items()}
        self.topics = [t for t in sorted(distinct) if distinct[t] >= MIN_TOPIC_ANSWER_SENTENCES] or sorted(distinct)
        self.topic_weights = [distinct[t] for t in self.topics]
        self.families, self.weights = list(MIX), list(MIX.values())
        self.streams: dict[str, SentenceStream] = {}

    def _stream(self, name: str) -> "SentenceStream":
        """The sentence stream of one pool: `q` (questions of every topic: the real questions repeat across answers,
        so one topic holds as few as 8 distinct question sentences), `a:<topic>`, or a turn pool (`hh_user`...);
        a trailing `+` keeps sentences of LONG_SENTENCE_CHARS or more."""
        if name not in self.streams:
            if name.endswith("+"):
                pool = [s for s in self._stream(name[:-1]).items if len(s) >= LONG_SENTENCE_CHARS]
            elif name == "q":
                pool = [q for topic in sorted(self.pool.question_sentences) for q in self.pool.question_sentences[topic]]
            elif name.startswith("a:"):
                pool = self.pool.answer_sentences[name[2:]]
            else:
                pool = [s for turn in self.pool.turns[name] for s in sentences(turn)]
            self.streams[name] = SentenceStream(pool, self.rng)
        return self.streams[name]

    def _topic(self) -> str:
        return self.rng.choices(self.topics, self.topic_weights)[0]

    def _pool_size(self, family: str) -> int:
        if family == "counsel_chat":
            return len(self.pool.qa) * 2 // 3
        if family == "counsel_chat_legacy":  # the last third of the qa pool: no conversation is seeded twice
            return len(self.pool.qa) - len(self.pool.qa) * 2 // 3
        return {"hh_rlhf_harmless": len(self.pool.hh), "esconv_failed": len(self.pool.esconv)}.get(family, 0)

    def draw(self, index: int) -> dict:
        """Conversation `index` (call in order 0, 1, 2, ...): messages, family fields and ground truth."""
        rng = self.rng
        family = rng.choices(self.families, self.weights)[0]
        r = rng.random()
        bases = self.bases[family]
        if bases and r < EXACT_RATE + NEAR_RATE:
            source = bases[rng.randrange(len(bases))]
            conv = {**source, "index": index, "dup_of": source["index"], "root": source["root"]}
            if r < EXACT_RATE:
                return {**conv, "kind": KIND_EXACT, "perturbation": None}
            kind = rng.choice(DUPLICATE_KINDS)
            return {**conv, "kind": KIND_NEAR, "perturbation": kind,
                    "messages": perturb_conversation(source["messages"], kind, rng)}
        conv = self._base(family, index)
        if rng.random() < PII_RATE:
            self._plant_pii(conv)
        bases.append(conv)
        return conv

    def _base(self, family: str, index: int) -> dict:
        k = self.used[family]
        self.used[family] += 1
        conv = {"family": family, "index": index, "root": index, "dup_of": None, "perturbation": None,
                "pii_type": None, "pii_value": None, "related_to": None}
        if k < len(self.order[family]):
            return {**conv, "kind": KIND_ORIGINAL, **self._original(family, self.order[family][k])}
        return {**conv, "kind": KIND_NOVEL, **self._novel(family, index)}

    def _original(self, family: str, i: int) -> dict:
        pool = self.pool
        if family in ("counsel_chat", "counsel_chat_legacy"):
            row = pool.qa[i if family == "counsel_chat" else len(pool.qa) * 2 // 3 + i]
            return {"messages": [{"role": "user", "content": row["question"]},
                                 {"role": "assistant", "content": row["answer"]}],
                    "fields": {k: row[k] for k in ("title", "topic", "therapist", "upvotes")} | {"qid": f"q{i}"}}
        if family == "hh_rlhf_harmless":
            row = pool.hh[i]
            return {"messages": [dict(m) for m in row["messages"]], "fields": {"rejected": row["rejected"]}}
        session = pool.esconv[i]
        roles = ["user" if t.get("speaker") in ("speaker", "seeker", "usr") else "assistant"
                 for t in session["dialog"]]
        return {"messages": [{"role": r, "content": str(t.get("content", ""))} for r, t in zip(roles, session["dialog"])],
                "fields": {k: session.get(k) for k in ("emotion_type", "problem_type", "situation",
                                                        "experience_type", "survey_score")}}

    def _sentences_to(self, stream: str, target: int, min_sentences: int = 1) -> str:
        """Sentences of a stream joined until `target` characters and `min_sentences`."""
        source, out, size = self._stream(stream), [], 0
        while size < target or len(out) < min_sentences:
            out.append(source.take())
            size += len(out[-1]) + 1
        return " ".join(out)

    def _turn_like(self, stream: str, shape_text: str, min_sentences: int = 1) -> str:
        """A new turn with as many sentences as `shape_text` (a real turn of that role), from the role's stream."""
        source = self._stream(stream)
        return " ".join(source.take() for _ in range(max(min_sentences, len(sentences(shape_text)))))

    def _turns_like(self, family: str, shape: list[dict], answer_sentences: int = 1) -> list[dict]:
        """A new conversation shaped like `shape` (roles, turn lengths). The first user turn (the dedup prompt) is
        PROMPT_SENTENCES long sentences: each pool sentence recurs in many prompts at 100k, and two prompts that
        share one of two sentences (the other a short "Why?") are near-identical, which chained 19k hh rows into
        one split group; sharing one of three long ones is not. Assistant turns have `answer_sentences` at least."""
        first_user = next((i for i, m in enumerate(shape) if m["role"] == "user"), -1)
        out = []
        for i, m in enumerate(shape):
            if i == first_user:
                content = self._turn_like(f"{family}_user+", m["content"], PROMPT_SENTENCES)
            else:
                content = self._turn_like(f"{family}_{m['role']}", m["content"],
                                          answer_sentences if m["role"] == "assistant" else 1)
            out.append({"role": m["role"], "content": content})
        return out

    def _novel(self, family: str, index: int) -> dict:
        rng, pool = self.rng, self.pool
        if family in ("counsel_chat", "counsel_chat_legacy"):
            topic = self._topic()
            related = [b for b in self.bases[family][-200:] if b["fields"].get("topic") == topic]
            answer = self._sentences_to(f"a:{topic}", rng.choice(pool.answer_lengths))
            fields = {"topic": topic, "therapist": pool.therapists[rng.randrange(len(pool.therapists))],
                      "upvotes": str(rng.randrange(5)), "qid": f"g{index}"}
            if related and rng.random() < SAME_QUESTION_RATE:  # another therapist answers an earlier question
                src = related[rng.randrange(len(related))]
                return {"messages": [dict(src["messages"][0]), {"role": "assistant", "content": answer}],
                        "fields": {**fields, "title": src["fields"]["title"], "qid": src["fields"]["qid"]},
                        "related_to": src["index"]}
            question = self._sentences_to("q", rng.choice(pool.question_lengths), 2)
            title = " ".join(question.split()[:rng.randint(4, 10)]).rstrip(".,;:") + "?"
            return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                    "fields": {**fields, "title": title}}
        if family == "hh_rlhf_harmless":
            shape = pool.hh[rng.randrange(len(pool.hh))]
            return {"messages": self._turns_like("hh", shape["messages"], answer_sentences=2),
                    "fields": {"rejected": self._turn_like("hh_assistant", shape["rejected"])}}
        if family == "esconv_failed":
            shape = pool.esconv[rng.randrange(len(pool.esconv))]
            roles = ["user" if t.get("speaker") in ("speaker", "seeker", "usr") else "assistant" for t in shape["dialog"]]
            # supporter turns of two sentences at least: one-sentence turns came whole from the stream, so at 100k
            # a real supporter line recurred as the entire turn in up to 14 sessions, and the splits stage's shared-
            # answer key chained 2,487 sessions (4,567 rows with windows and copies) into one split group
            messages = self._turns_like("es", [{"role": r, "content": str(t.get("content", ""))}
                                               for r, t in zip(roles, shape["dialog"])], answer_sentences=2)
            fields = {k: shape.get(k) for k in ("emotion_type", "problem_type", "situation", "experience_type",
                                                "survey_score")}
            return {"messages": messages, "fields": fields}
        topic = self._topic()  # support_chat: short multi-turn ChatML sessions
        messages = [{"role": "system", "content": rng.choice(_SYSTEM)}]
        for turn in range(rng.randint(1, 4)):
            # the first user turn is the prompt: PROMPT_SENTENCES long ones (see _turns_like); later turns two
            n_sentences, chat_stream = (2, "es_user") if turn else (PROMPT_SENTENCES, "es_user+")
            user = (self._sentences_to(chat_stream, rng.randint(40, 120), n_sentences) if rng.random() < 0.5
                    else self._sentences_to("q", rng.randint(40, 300), n_sentences))
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": self._sentences_to(f"a:{topic}", rng.randint(80, 900))})
        return {"messages": messages, "fields": {"topic": topic}}

    def _plant_pii(self, conv: dict) -> None:
        users = [i for i, m in enumerate(conv["messages"]) if m["role"] == "user"]
        pii_type = sorted(PII_GENERATORS)[self.rng.randrange(len(PII_GENERATORS))]
        _, value, template = PII_GENERATORS[pii_type](self.rng)
        i = users[self.rng.randrange(len(users))]
        messages = [dict(m) for m in conv["messages"]]
        messages[i]["content"] = f"{messages[i]['content'].rstrip()} {template.replace('{v}', value)}"
        conv.update(messages=messages, pii_type=pii_type, pii_value=value)


class SentenceStream:
    """The sentences of a pool in a shuffled order, each used once per pass before any repeats (then reshuffled):
    two novel texts share a sentence only after the pool is used up, and then by chance, not by a hot pick."""

    def __init__(self, pool: list[str], rng: random.Random):
        self.items = list(dict.fromkeys(pool))  # distinct, in first-seen order: deterministic
        if not self.items:
            raise ValueError("a sentence stream needs at least one sentence")
        self.rng, self.pos = rng, len(self.items)

    def take(self) -> str:
        if self.pos >= len(self.items):
            self.rng.shuffle(self.items)
            self.pos = 0
        self.pos += 1
        return self.items[self.pos - 1]


def generate(raw_root: str, n: int, out: str, seed: int = 0, extra: float = 0.0, pool: SeedPool | None = None) -> dict:
    """Write N conversations under `<out>/raw` (+ ceil-less `extra * n` under `<out>/raw_extra`) and the truth file."""
    pool = pool or load_pool(raw_root)
    gen = Generator(pool, seed)
    n_extra = int(n * extra)
    out_dir = Path(out)
    writers = {"raw": TreeWriter(out_dir / "raw", "part"), "raw_extra": TreeWriter(out_dir / "raw_extra", "extra")}
    truth_path = out_dir / "truth.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with open(truth_path, "w", encoding="utf-8") as truth:
        for index in range(n + n_extra):
            conv = gen.draw(index)
            tree = "raw" if index < n else "raw_extra"
            key, locator = writers[tree].add(conv)
            row = {"index": index, "family": conv["family"], "tree": tree, "source_key": key, "locator": locator,
                   "kind": conv["kind"], "perturbation": conv["perturbation"], "dup_of": conv["dup_of"],
                   "root": conv["root"], "related_to": conv.get("related_to"), "pii_type": conv["pii_type"],
                   "pii_value": conv["pii_value"]}
            truth.write(json.dumps(row, sort_keys=True) + "\n")
            label = f"{tree}:{conv['kind']}"
            counts[label] = counts.get(label, 0) + 1
    files = {name: w.close() for name, w in writers.items()}
    summary = {"n": n, "extra": n_extra, "seed": seed, "counts": dict(sorted(counts.items())), "files": files,
               "truth": str(truth_path), "mix": MIX, "rates": {"exact": EXACT_RATE, "near": NEAR_RATE,
                                                               "pii": PII_RATE, "same_question": SAME_QUESTION_RATE}}
    (out_dir / "generator.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("scale corpus: %d conversations (+%d extra) in %s: %s", n, n_extra, out, summary["counts"])
    return summary


def read_truth(path: str) -> list[dict]:
    """The rows of a truth.jsonl written by `generate`."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", default="../shared/data/raw")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", type=float, default=0.0, help="fraction of n written to raw_extra (rerun data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(generate(args.raw_root, args.n, args.out, args.seed, args.extra), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
