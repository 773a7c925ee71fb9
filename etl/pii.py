"""Find and redact PII in conversation text with typed placeholders ("[EMAIL]", "[NAME]", ...).

Pure Python (no Spark) for pandas UDFs. Each type has a cheap pre-check (an "@", enough digits, a cue word)
before its regex runs; every regex is compiled once in `etl.pii_patterns`. Rules worth knowing:
- Placeholders are one fixed token per type, never numbered, so equal inputs redact equally across the corpus.
- Overlaps resolve leftmost-longest, ties by type priority (EMAIL before URL before CARD ...).
- URL is PII only when it points at a person: a profile path (/therapists/<slug>, /users/<handle>, /@x, /~x),
  a user page on a social host (facebook.com/<user>, linkedin.com/in/<x>), a personal blog subdomain
  (jane.wordpress.com), a private-practice host (janedoetherapy.com, markmorrislcsw.com), a path segment
  that is a person's slug (jane-doe, sherry-katz-lcsw) or an IP host. Every other URL, and any URL on a
  known resource/directory host or a .gov/.edu/.mil/.int domain (profile paths aside), is kept: hotlines
  and resources matter in this domain. Kept URLs also shield their characters from the other detectors.
- CARD needs 13-19 digits, a Luhn check and a card-network first digit (2-6). Hotline short codes (988, 911,
  741741) never reach a phone pattern; toll-free numbers (1-800-273-8255) are phones and are redacted.
- `redact_text` output is a fixpoint: `find_pii` finds nothing in it (the verify gate relies on that).
- NAME is only found from cues: self-introductions, titles (Dr./Mrs.), credentials after a name and sign-offs.
  Only the name is replaced; "my name is", "Dr." and the credentials stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator

from etl import pii_patterns as P
from etl.pii_patterns import count_digits, is_card_number, is_ipv6, luhn_ok
from etl.pii_urls import is_personal_url, strip_url_tail

__all__ = ["PII_TYPES", "PLACEHOLDERS", "find_pii", "is_personal_url", "luhn_ok", "redact_messages", "redact_text"]

PII_TYPES = ("EMAIL", "PHONE", "ADDRESS", "SSN", "CARD", "IP", "URL", "NAME")
EMAIL, PHONE, ADDRESS, SSN, CARD, IP, URL, NAME = PII_TYPES
PLACEHOLDERS = {t: f"[{t}]" for t in PII_TYPES}

Span = tuple[int, int, str]
_KEPT = None  # candidate type of a kept (non-PII) URL: blocks other detectors inside it, never redacted
_PRIORITY = {EMAIL: 0, URL: 1, _KEPT: 1, CARD: 2, SSN: 3, PHONE: 4, IP: 5, ADDRESS: 6, NAME: 7}
_MAX_PASSES = 3
_WS_TOKEN = re.compile(r"\S+")


# ---------------------------------------------------------------- contact details and numbers


def _emails(text: str) -> Iterator[Span]:
    if "@" in text:
        for m in P.EMAIL.finditer(text):
            yield m.start(), m.end(), EMAIL


def _is_reference_number(text: str, start: int) -> bool:
    return P.REFERENCE_CUE.search(text, max(0, start - 30), start) is not None


# Public crisis and support lines are resources, not personal data: a therapy assistant must keep them.
PUBLIC_HOTLINES = frozenset({
    "8002738255",  # 988 Suicide & Crisis Lifeline (former number)
    "8006624357",  # SAMHSA National Helpline
    "8007997233",  # National Domestic Violence Hotline
    "8006564673",  # RAINN National Sexual Assault Hotline
    "8664887386",  # The Trevor Project
    "8775658860",  # Trans Lifeline
    "8004224453",  # Childhelp National Child Abuse Hotline
    "8009312237",  # NEDA helpline
    "8009506264",  # NAMI HelpLine
    "8009857600",  # Disaster Distress Helpline
    "8002221222",  # Poison Control
    "8008435678",  # NCMEC CyberTipline
})


def is_public_hotline(number: str) -> bool:
    digits = re.sub(r"\D", "", number)
    return len(digits) >= 10 and digits[-10:] in PUBLIC_HOTLINES


def _phones(text: str, n_digits: int) -> Iterator[Span]:
    if n_digits < 7:
        return
    for m in P.PHONE_US.finditer(text):
        if not _is_reference_number(text, m.start()) and not is_public_hotline(m.group()):
            yield m.start(), m.end(), PHONE
    if "+" in text:
        for m in P.PHONE_INTL.finditer(text):
            span = _trim_intl_phone(text, m.start(), m.end())
            if span:
                yield span[0], span[1], PHONE
    for m in P.PHONE_CUED.finditer(text):
        if not _is_reference_number(text, m.start("num")) and not is_public_hotline(m.group("num")):
            yield m.start("num"), m.end("num"), PHONE


def _trim_intl_phone(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop trailing groups a greedy match took from the following numbers, keeping E.164's 8-15 digits and
    never cutting a hyphenated number in two ("+1 803 621 7166 424-677-7797")."""
    while count_digits(text[start:end]) > 15 or P.NUMBER_GOES_ON.match(text, end):
        cut = text.rfind(" ", start, end)
        if cut <= start:
            return None
        end = cut
    return (start, end) if count_digits(text[start:end]) >= 8 else None


def _ssns(text: str, n_digits: int) -> Iterator[Span]:
    if n_digits < 9:
        return
    for m in P.SSN.finditer(text):
        yield m.start(), m.end(), SSN
    for m in P.SSN_CUED.finditer(text):
        yield m.start("num"), m.end("num"), SSN


def _scan(pattern: re.Pattern, text: str, to_span: Callable[[re.Match], tuple[int, int] | None]) -> Iterator:
    """Validated spans of a pattern. After a rejected match the scan resumes one character later, so a rejected
    run ("1626 6011 0363 2066 1935") cannot hide a valid match overlapping it, as `finditer` would."""
    m = pattern.search(text)
    while m:
        span = to_span(m)
        if span:
            yield span
        m = pattern.search(text, span[1] if span else m.start() + 1)


def _card_span(m: re.Match) -> tuple[int, int] | None:
    if is_card_number(m.group()):
        return m.span()
    cut = max(m.group().rfind(" "), m.group().rfind("-"))  # a greedy last group may belong to the next number
    return (m.start(), m.start() + cut) if cut > 0 and is_card_number(m.group()[:cut]) else None


def _cards(text: str, n_digits: int) -> Iterator[Span]:
    if n_digits >= 13:
        for start, end in _scan(P.CARD, text, _card_span):
            yield start, end, CARD


def _ips(text: str, n_digits: int) -> Iterator[Span]:
    if n_digits >= 4 and text.count(".") >= 3:
        for m in P.IPV4.finditer(text):
            if P.VERSION_CUE.search(text, max(0, m.start() - 20), m.start()) is None:
                yield m.start(), m.end(), IP
    if n_digits and ("::" in text or text.count(":") >= 7):
        for start, end in _scan(P.IPV6_CANDIDATE, text, lambda m: m.span() if is_ipv6(m.group()) else None):
            yield start, end, IP


def _addresses(text: str, n_digits: int) -> Iterator[Span]:
    if not n_digits:
        return
    matches = list(P.STREET_ADDRESS.finditer(text))
    if "box" in text or "Box" in text or "BOX" in text:
        matches.extend(P.PO_BOX.finditer(text))
    for m in matches:
        end = m.end()
        if text[end - 1] == "." and P.SENTENCE_BREAK.match(text, end):
            end -= 1  # "I live at 12 Oak St. Then ...": the dot closes the sentence too, so leave it in the text
        yield m.start(), end, ADDRESS


# ---------------------------------------------------------------- URLs


def _urls(text: str) -> Iterator[Span]:
    if "." not in text or not P.URL_GATE.search(text):
        return
    for m in P.URL.finditer(text):
        url = strip_url_tail(m.group())
        if url:
            yield m.start(), m.start() + len(url), URL if is_personal_url(url) else _KEPT


# ---------------------------------------------------------------- names


def _is_stop(token: str, strict: bool) -> bool:
    low = token.lower().rstrip(".")
    return low in P.STOP_WORDS or (strict and low in P.NOT_NAMES)


def _is_initial(token: str) -> bool:
    return len(token.rstrip(".")) == 1


def _keep_name(text: str, start: int, end: int, strict: bool, trim_leading: bool) -> tuple[int, int] | None:
    """The span of the real name inside a matched run of capitalised words, or None when none is left."""
    tokens = [(m.start(), m.end(), m.group()) for m in _WS_TOKEN.finditer(text, start, end)]
    i = 0
    if trim_leading:
        while i < len(tokens) and (_is_stop(tokens[i][2], strict) or _is_initial(tokens[i][2])):
            i += 1
    if i == len(tokens) or _is_stop(tokens[i][2], strict) or _is_initial(tokens[i][2]):
        return None
    j = i + 1
    while j < len(tokens) and not _is_stop(tokens[j][2], strict):
        j += 1
    while j - 1 > i and _is_initial(tokens[j - 1][2]):
        j -= 1
    return tokens[i][0], tokens[j - 1][1]


def _looks_adjective(token: str) -> bool:
    low = token.lower()
    return low not in P.FIRST_NAMES and len(low) > 5 and low.endswith(P.ADJECTIVE_SUFFIXES)


def _self_intro(text: str, m: re.Match) -> tuple[int, int] | None:
    strong = m.group("cue").lower().startswith(P.STRONG_CUE_PREFIXES)
    start, end = m.span("name")
    first = P.NAME_TOKEN.match(text, start)
    if not first:  # lower case first token: "my name is sarah" is a name only if it is a known first name
        word = text[start:_WS_TOKEN.match(text, start).end()].rstrip(".,!?;:")
        return (start, start + len(word)) if strong and word.lower() in P.FIRST_NAMES else None
    if _is_stop(first.group(), not strong) or (not strong and _looks_adjective(first.group())):
        return None
    span = _keep_name(text, start, end, strict=not strong, trim_leading=False)
    if span is None or strong:
        return span
    # weak cue ("I'm X", "this is X"): the name must close the clause, else X is a word in a sentence
    for tok_end in reversed([t.end() for t in _WS_TOKEN.finditer(text, start, span[1])]):
        if P.AFTER_WEAK_CUE.match(text, tok_end):
            return start, tok_end
    return None


def _titled_name(text: str, m: re.Match) -> tuple[int, int] | None:
    return _keep_name(text, *m.span("name"), strict=False, trim_leading=False)


def _signature_name(text: str, m: re.Match) -> tuple[int, int] | None:
    span = _keep_name(text, *m.span("name"), strict=True, trim_leading=True)
    if span and m.group("cred") in P.STATE_LIKE_CREDENTIALS:
        one_token = " " not in text[span[0]:span[1]]
        if one_token or P.ZIP_AHEAD.match(text, m.end()):
            return None  # "Boston, MA" / "Silver Spring, MD 20910" are places
    return span


def _valediction_name(text: str, m: re.Match) -> tuple[int, int] | None:
    return _keep_name(text, *m.span("name"), strict=True, trim_leading=False)


def _signoff_name(text: str, m: re.Match) -> tuple[int, int] | None:
    span = _keep_name(text, *m.span("name"), strict=True, trim_leading=False)
    # a lone word after a dash is too often a list item or an aside; "~Mark" is a signature habit
    alone_ok = m.group("dash") == "~" or P.TEXT_END.match(text, m.end()) is not None
    return span if span and (alone_ok or " " in text[span[0]:span[1]]) else None


def _names(text: str) -> Iterator[Span]:
    lower = text.lower()
    rules = (  # (cheap gate, pattern, match -> name span or None)
        (any(cue in lower for cue in P.INTRO_GATES), P.SELF_INTRO, _self_intro),
        (any(title in text for title in P.TITLE_GATES), P.TITLED_NAME, _titled_name),
        (P.CRED_GATE.search(text), P.SIGNATURE_CRED, _signature_name),
        (P.VALEDICTION_GATE.search(lower), P.VALEDICTION_NAME, _valediction_name),
        (any(dash in text for dash in P.DASH_GATES), P.DASH_SIGNOFF, _signoff_name),
    )
    for gate_open, pattern, to_span in rules:
        if gate_open:
            for m in pattern.finditer(text):
                span = to_span(text, m)
                if span:
                    yield span[0], span[1], NAME


# ---------------------------------------------------------------- public API


def find_pii(text: str, types: Collection[str] | None = None) -> list[Span]:
    """Non-overlapping (start, end, pii_type) spans sorted by start; `types` limits the types reported."""
    if not text:
        return []
    n_digits = count_digits(text)
    candidates: list[tuple[int, int, str | None]] = []
    candidates.extend(_emails(text))
    candidates.extend(_urls(text))
    for detect in (_cards, _ssns, _phones, _ips, _addresses):
        candidates.extend(detect(text, n_digits))
    if types is None or NAME in types:
        candidates.extend(_names(text))
    if types is not None:
        candidates = [c for c in candidates if c[2] is _KEPT or c[2] in types]
    candidates.sort(key=lambda c: (c[0], c[0] - c[1], _PRIORITY[c[2]]))
    spans: list[Span] = []
    last_end = -1
    for start, end, pii_type in candidates:
        if start >= last_end:
            last_end = end
            if pii_type is not _KEPT:
                spans.append((start, end, pii_type))
    return spans


def redact_text(text: str, types: Collection[str] | None = None) -> tuple[str, dict[str, int]]:
    """Text with each PII span replaced by its type's placeholder, and counts per type found (absent = 0).

    Repeats (rarely more than once) until `find_pii` finds nothing, since a candidate that lost an overlap can
    hide a neighbour; the verify gate runs `find_pii` over exported text, so redacted text must come out clean.
    """
    counts: dict[str, int] = {}
    for _ in range(_MAX_PASSES):
        spans = find_pii(text, types)
        if not spans:
            break
        parts, pos = [], 0
        for start, end, pii_type in spans:
            parts += [text[pos:start], PLACEHOLDERS[pii_type]]
            counts[pii_type] = counts.get(pii_type, 0) + 1
            pos = end
        text = "".join(parts) + text[pos:]
    return text, counts


def redact_messages(messages: list[dict], types: Collection[str] | None = None) -> tuple[list[dict], dict[str, int]]:
    """New message dicts with redacted content (other keys copied) and the counts summed over the messages."""
    redacted: list[dict] = []
    totals: dict[str, int] = {}
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            content, counts = redact_text(content, types)
            for pii_type, n in counts.items():
                totals[pii_type] = totals.get(pii_type, 0) + n
        redacted.append({**message, "content": content})
    return redacted, totals
