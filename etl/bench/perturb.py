"""Near-duplicate perturbations of real text, deterministic for a `random.Random`; shared by the labelled dedup
benchmark (benchmarks/dedup_eval.py) and the scale generator (etl/bench/scale.py).

Each kind says which side of a (prompt, answer) conversation it changes, as copies of the same conversation meet
them in the wild: a re-tokenised or HTML export changes every turn, a cut-off scrape or a reordered answer changes
the answer, a re-posted question changes the prompt.
"""

from __future__ import annotations

import html
import random
import re

RETOKENISED = "retokenised_lower"
HTML_WRAPPED = "html_wrapped"
TRUNCATED = "truncated"
TYPO = "typo"
SENTENCE_SHUFFLED = "sentence_shuffled"
ROLE_SWAPPED_CONTEXT = "role_swapped_context"
DUPLICATE_KINDS = (RETOKENISED, HTML_WRAPPED, TRUNCATED, TYPO, SENTENCE_SHUFFLED, ROLE_SWAPPED_CONTEXT)
# which turns a kind edits: both sides, the answer only, or the prompt only
SIDES = {RETOKENISED: "both", HTML_WRAPPED: "both", TRUNCATED: "answer", TYPO: "both",
         SENTENCE_SHUFFLED: "answer", ROLE_SWAPPED_CONTEXT: "prompt"}

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[.!?])(?=[A-Z])|\n+")
_PTB_PUNCT = re.compile(r"([.,!?;:()\"\[\]])")
_PTB_CLITIC = re.compile(r"(?i)(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_GREETINGS = ("Hi, ", "Hello. ", "Hi everyone, ", "Hey, ", "Question: ", "")
_SIGN_OFFS = (" Thanks.", " Thank you in advance.", " Any advice?", " Please help.", "")
_SYSTEM_PROMPTS = ("You are a supportive counselor.", "You are a licensed therapist answering a forum question.",
                   "Answer as an empathetic mental health professional.")


def sentences(text: str) -> list[str]:
    """Sentences (and paragraphs) of a text, without empty pieces; a glued 'end.Next' is split too."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def retokenise_lower(text: str, rng: random.Random | None = None) -> str:
    """PTB-style tokens separated by spaces ("do n't", "end ."), lower-cased, line breaks flattened."""
    text = _PTB_CLITIC.sub(r"\1 \2", text.replace("\u2019", "'"))
    text = _PTB_PUNCT.sub(r" \1 ", text)
    return " ".join(text.lower().split())


def html_wrap(text: str, rng: random.Random) -> str:
    """Paragraphs in <p>, some sentences in <strong>/<em>, entities for quotes and ampersands, stray <br/>."""
    parts = []
    for para in (p for p in text.split("\n") if p.strip()):
        out = []
        for sentence in sentences(para):
            escaped = html.escape(sentence, quote=True).replace("&#x27;", "&#39;")
            tag = rng.choice(("", "", "", "strong", "em"))
            out.append(f"<{tag}>{escaped}</{tag}>" if tag else escaped)
        joiner = rng.choice((" ", "&nbsp; ", " <br/>"))
        parts.append("<p>" + joiner.join(out) + "</p>")
    return "\n".join(parts) if rng.random() < 0.5 else "".join(parts)


def truncate(text: str, rng: random.Random, keep_min: float = 0.8, keep_max: float = 0.95) -> str:
    """The first 80-95 % of the words (at least `keep_min` of them), cut at a word boundary."""
    words = text.split(" ")
    keep = max(1, round(len(words) * rng.uniform(keep_min, keep_max)))
    keep = max(keep, -(-len(words) * int(keep_min * 100) // 100))  # ceil: never below keep_min of the words
    return " ".join(words[:keep])


def typo(text: str, rng: random.Random, rate_min: float = 0.02, rate_max: float = 0.03) -> str:
    """2-3 % of the letters edited: substituted, deleted, doubled or swapped with the next character."""
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    if not letters:
        return text
    n_edits = max(1, round(len(letters) * rng.uniform(rate_min, rate_max)))
    for i in sorted(rng.sample(letters, min(n_edits, len(letters))), reverse=True):
        op = rng.randrange(4)
        if op == 0:
            chars[i] = rng.choice(_LETTERS)
        elif op == 1:
            del chars[i]
        elif op == 2:
            chars.insert(i, chars[i])
        elif i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def sentence_shuffle(text: str, rng: random.Random) -> str:
    """The same sentences in another order (unchanged when there is only one sentence)."""
    parts = sentences(text)
    if len(parts) < 2:
        return text
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


def edit_prompt(text: str, rng: random.Random) -> str:
    """A lightly edited re-post of a question: greeting and sign-off changed, one word dropped or doubled."""
    words = text.split(" ")
    if len(words) > 8:
        i = rng.randrange(1, len(words) - 1)
        words = words[:i] + words[i + 1:] if rng.random() < 0.5 else words[:i] + [words[i]] + words[i:]
    return rng.choice(_GREETINGS) + " ".join(words) + rng.choice(_SIGN_OFFS)


_TEXT_FN = {RETOKENISED: retokenise_lower, HTML_WRAPPED: html_wrap, TRUNCATED: truncate, TYPO: typo,
            SENTENCE_SHUFFLED: sentence_shuffle, ROLE_SWAPPED_CONTEXT: edit_prompt}


def perturb_conversation(messages: list[dict], kind: str, rng: random.Random) -> list[dict]:
    """A near-duplicate copy of a conversation: `kind` applied to the turns its side names.

    role_swapped_context also puts the copy under a system turn: the same answer in another context.
    """
    if kind not in _TEXT_FN:
        raise ValueError(f"unknown perturbation kind {kind!r}; use one of {', '.join(DUPLICATE_KINDS)}")
    side, fn = SIDES[kind], _TEXT_FN[kind]
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), -1)
    out = []
    for i, m in enumerate(messages):
        edit = (side == "both" and m["role"] != "system") or (side == "answer" and m["role"] == "assistant") or (
            side == "prompt" and i == first_user)
        content = fn(m["content"], rng) if edit else m["content"]
        out.append({"role": m["role"], "content": content if content.strip() else m["content"]})
    if kind == ROLE_SWAPPED_CONTEXT and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": rng.choice(_SYSTEM_PROMPTS)})
    return out
