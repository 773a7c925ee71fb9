"""A labelled PII evaluation set planted into real corpus sentences, and the recall / false-positive table.

Sentences come from the raw corpus (counsel_chat questions and answers, ESConv turns) and are kept only when
`find_pii` finds nothing in them. Each item plants one value (a PII value of a known type, or a PII-free
lookalike such as a date, a price or a hotline number) inside a realistic filler at the start, middle or end
of one sentence, and records the exact planted string. Deterministic for a seed.

    python -m etl.pii_eval --raw-root ../shared/data/raw
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from etl.pii import PII_TYPES, PLACEHOLDERS, find_pii, redact_text

logger = logging.getLogger(__name__)

COUNSEL_CHAT_CSV = "counsel_chat/20200325_counsel_chat.csv"
ESCONV_JSON = "esconv_failed/FailedESConv.json"
POSITIONS = ("start", "middle", "end")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")

Value = tuple[str, str, str]  # (kind, planted value, filler template with "{v}")

FIRST = (
    "Sarah John Maria David Jenna Mike Priya Ahmed Wei Olga Sean Chloe Diego Aisha Kwame Hannah Ethan Siobhan "
    "Mateo Yuki Fatima Liam Naomi Tariq Ingrid Marcus Leila Tomás Zoë Rahul Bianca Dmitri Camila Owen Thandiwe"
).split()
LAST = (
    "Smith Nguyen Garcia Okafor Kowalski Patel O'Brien McAllister Hernández Schmidt Rossi Kim Cohen Johansson "
    "Díaz Whitfield Mensah Takahashi Novak Brennan Castillo Lindqvist Abernathy Haddad"
).split()
# Personal practice domains carry a practice word or a credential (janedoetherapy.com, sarahmcintyrelpc.com).
PRACTICE_SUFFIXES = ("therapy", "counseling", "lcsw", "lmft", "lpc", "phd", "psyd", "msw", "ncc", "lmhc")
CREDS = "LCSW LMFT LPC LPCC LMHC LCPC PhD PsyD MA MS MSW MEd NCC LCADC CADC RN LMSW LICSW ATR".split()
STREETS = "Main Oak Maple Pennsylvania Elm Cedar Washington Lake Sunset Park Spring Garden Highland Willow".split()
SUFFIXES = "Street St. Avenue Ave Road Rd Boulevard Blvd Lane Drive Dr Court Way Place Terrace".split()
CITIES = (("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Columbus", "OH"), ("Denver", "CO"),
          ("San Jose", "CA"), ("Albany", "NY"), ("Madison", "WI"))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _slug(text: str) -> str:
    return text.lower().replace("'", "").replace("á", "a").replace("é", "e").replace("í", "i").replace("ë", "e")


# ---------------------------------------------------------------- PII value generators


def _email(rng: random.Random) -> Value:
    first, last = (_slug(p) for p in _name(rng))
    local = rng.choice((f"{first}.{last}", f"{first}{last}{rng.randint(1, 99)}", f"{first[0]}_{last}",
                        f"{first}+therapy", f"{last}.{first}{rng.randint(70, 99)}"))
    domain = rng.choice(("gmail.com", "yahoo.com", "outlook.com", "hotmail.co.uk", "icloud.com", "proton.me",
                         f"{last}counseling.com", "student.ucla.edu"))
    template = rng.choice(("You can reach me at {v}.", "My email is {v}", "email me: {v}",
                           "Feel free to write to {v} if you want to talk more.", "({v})"))
    return "email", f"{local}@{domain}", template


def _phone(rng: random.Random) -> Value:
    a, b, c = f"{rng.randint(2, 9)}{_digits(rng, 2)}", f"{rng.randint(2, 9)}{_digits(rng, 2)}", _digits(rng, 4)
    forms = {
        "us_paren": f"({a}) {b}-{c}", "us_dash": f"{a}-{b}-{c}", "us_dot": f"{a}.{b}.{c}",
        "us_plus1": f"+1 {a} {b} {c}", "us_tollfree": f"1-{rng.choice(('800', '888', '877', '866'))}-{b}-{c}",
        "uk": f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}", "de": f"+49 30 {_digits(rng, rng.randint(6, 8))}",
        "fr": "+33 1 " + " ".join(_digits(rng, 2) for _ in range(4)), "in": f"+91 9{_digits(rng, 4)} {_digits(rng, 5)}",
        "au": f"+61 4{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 3)}",
    }
    kind = rng.choice(sorted(forms))
    template = rng.choice(("Call me at {v}.", "My cell is {v}", "text me on {v} anytime",
                           "You can call my office at {v} to schedule.", "my number is {v}"))
    return f"phone_{kind}", forms[kind], template


def _address(rng: random.Random) -> Value:
    if rng.random() < 0.2:
        box = rng.choice(("PO Box", "P.O. Box", "Post Office Box"))
        city, state = rng.choice(CITIES)
        tail = rng.choice(("", f", {city}, {state} {_digits(rng, 5)}"))
        return "po_box", f"{box} {rng.randint(1, 9999)}{tail}", rng.choice(("Send letters to {v}.", "Mail: {v}"))
    street = rng.choice(STREETS + [f"{rng.randint(2, 99)}th"])
    if rng.random() < 0.2:
        street = f"{street} {rng.choice(('Hill', 'Valley', 'Creek'))}"
    value = f"{rng.randint(1, 9999)} " + rng.choice(("", "", "N. ", "S ", "West ")) + f"{street} "
    value += rng.choice(SUFFIXES) + rng.choice(("", "", " NW", " SE"))
    value += rng.choice(("", "", ", Apt 5", f" Suite {rng.randint(100, 999)}", f", #{rng.randint(1, 40)}"))
    city, state = rng.choice(CITIES)
    value += rng.choice(("", "", f", {city}, {state}", f", {city}, {state} {_digits(rng, 5)}"))
    template = rng.choice(("I live at {v}.", "My office is at {v}", "we moved to {v} last year",
                           "Come to {v} for the group session."))
    return "street", value, template


def _ssn(rng: random.Random) -> Value:
    area, group, serial = rng.randint(1, 665), rng.randint(1, 99), rng.randint(1, 9999)
    sep = rng.choice(("-", " "))
    value = f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
    template = rng.choice(("My SSN is {v}.", "social security number {v}", "they asked for my ID, {v}, twice"))
    return "ssn_dash" if sep == "-" else "ssn_space", value, template


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def _card(rng: random.Random) -> Value:
    kind, prefix, length = rng.choice((("visa", "4", 16), ("mastercard", str(rng.randint(51, 55)), 16),
                                       ("amex", rng.choice(("34", "37")), 15), ("discover", "6011", 16),
                                       ("visa19", "4", 19)))
    number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, length, 4)]
    value = rng.choice((number, " ".join(groups), "-".join(groups)))
    template = rng.choice(("my card number is {v}.", "Charge it to {v}", "I paid with card {v} but it bounced"))
    return f"card_{kind}", value, template


def _ip(rng: random.Random) -> Value:
    groups = [f"{rng.randint(0, 65535):04x}" for _ in range(8)]
    forms = {
        "ipv4": f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "ipv6_full": ":".join(groups),
        "ipv6_compressed": ":".join(g.lstrip("0") or "0" for g in groups[:3]) + "::" + (groups[7].lstrip("0") or "1"),
    }
    kind = rng.choice(sorted(forms))
    template = rng.choice(("My IP address is {v}.", "it logged me in from {v}", "the router shows {v} now"))
    return kind, forms[kind], template


def _url(rng: random.Random) -> Value:
    first, last = (_slug(p) for p in _name(rng))
    cred = rng.choice(CREDS).lower()
    forms = {
        "counselchat": f"https://counselchat.com/therapists/{first}-{last}-{cred}",
        "psychologytoday": f"https://www.psychologytoday.com/us/therapists/{first}-{last}-austin-tx/{_digits(rng, 6)}",
        "facebook": f"https://www.facebook.com/{first}.{last}.{_digits(rng, 3)}",
        "linkedin": f"linkedin.com/in/{first}-{last}-{_digits(rng, 4)}",
        "twitter": f"twitter.com/{first}{last[:3]}",
        "instagram": f"https://instagram.com/{first}_{last}_{rng.choice(('art', 'life', 'official'))}",
        "practice_site": f"www.{first}{last}{rng.choice(PRACTICE_SUFFIXES)}.com",
        "blog": f"https://{first}{last}.wordpress.com/{rng.randint(2015, 2023)}/0{rng.randint(1, 9)}/my-story",
        "youtube": f"https://www.youtube.com/@{first}{last}",
        "tiktok": f"tiktok.com/@{first}.{last}",
    }
    kind = rng.choice(sorted(forms))
    template = rng.choice(("You can find me at {v}.", "See my profile: {v}", "more about me on {v}",
                           "(see {v})"))
    return f"url_{kind}", forms[kind], template


def _name_value(rng: random.Random) -> Value:
    first, last = _name(rng)
    full = f"{first} {last}"
    forms = (
        ("intro_my_name_is", first, "My name is {v}."), ("intro_my_names", full, "My name's {v}"),
        ("intro_im_and", first, "I'm {v} and I wanted to share this."),
        ("intro_i_am", first, "I am {v}, 24, and new here."),
        ("intro_this_is", first, "Hi, this is {v}."), ("intro_call_me", first, "Call me {v}."),
        ("intro_hi_im", full, "Hi, I'm {v}!"),
        ("sig_cred", full, "{v}, " + rng.choice(CREDS)), ("sig_dr", full, "Dr. {v}"),
        ("sig_multi_cred", full, "{v}, " + ", ".join(rng.sample(CREDS, 2))),
        ("sig_dash", full, "-- {v}, " + rng.choice(CREDS)), ("sig_valediction", first, "Warmly, {v}"),
        ("sig_valediction_line", full, rng.choice(("Best regards,", "Take care,", "Sincerely,")) + "\n{v}"),
    )
    return rng.choice(forms)


PII_GENERATORS: dict[str, Callable[[random.Random], Value]] = {
    "EMAIL": _email, "PHONE": _phone, "ADDRESS": _address, "SSN": _ssn, "CARD": _card, "IP": _ip, "URL": _url,
    "NAME": _name_value,
}
SIGNATURE_KINDS_AT_END = ("sig_valediction", "sig_valediction_line", "sig_dash")  # sign-offs close a message

# ---------------------------------------------------------------- PII-free lookalikes

LOOKALIKES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (values, templates)
    "date": (("03/25/2020", "2020-03-25", "March 25, 2020", "25.03.2020", "12/1/19", "Jan 3rd"),
             ("It started on {v}.", "my last session was {v}", "Since {v} things got worse.")),
    "time": (("10:30 am", "14:45", "9:15pm", "10:30:45", "7 o'clock"),
             ("I wake up at {v} every day.", "we meet at {v}", "At {v} I panic.")),
    "price": (("$1,250.00", "$45", "€300", "$19.99/month", "$150 per session"),
              ("Therapy costs {v}.", "it was {v} out of pocket", "I owe {v} and it scares me.")),
    "dosage": (("50 mg", "0.5mg twice daily", "20 mg of Lexapro", "1,000 mg", "2.5 ml", "100mcg"),
               ("My doctor put me on {v}.", "I take {v}", "{v} makes me drowsy.")),
    "year": (("1999", "in 2008", "back in 1987", "2015-2018"),
             ("It happened {v}.", "since {v}", "{v} was the worst year.")),
    "percentage": (("45%", "12.5 percent", "90% of the time", "3 out of 10"),
                   ("I feel anxious {v}.", "about {v}", "Maybe {v} of it is my fault.")),
    "ticket": (("ticket #4512-889", "order 123456789", "case number 2023-0045-17", "order #555-1234",
                "confirmation 88213-4471", "claim no. 774-221-9083"),
               ("I still have {v} open with them.", "they gave me {v}", "Please check {v}.")),
    "version": (("version 2.3.1", "v10.0.19041", "iOS 16.4.1", "version 1.0.0.1", "build 4.12.0.3"),
                ("The app is on {v} now.", "after updating to {v}", "{v} broke my journaling app.")),
    "hotline": (("988", "911", "text HOME to 741741", "call or text 988", "dial 911 or 988", "1-800-273-8255",
                 "1-800-662-4357 (SAMHSA)", "RAINN at 800.656.4673"),
                ("If you are in crisis, {v}.", "please call {v} right now", "You can always reach {v}.")),
    "resource_url": (("https://www.nimh.nih.gov/health", "suicidepreventionlifeline.org", "988lifeline.org",
                      "https://www.samhsa.gov/find-help/national-helpline", "www.nami.org/Home",
                      "https://www.crisistextline.org", "https://www.mayoclinic.org/diseases-conditions/depression",
                      "https://www.psychologytoday.com/us/basics/anxiety", "www.thetrevorproject.org/get-help"),
                     ("More information: {v}.", "have a look at {v}", "See {v} for resources.")),
    "not_a_name": (("I'm sorry", "I'm feeling sad and lonely", "I'm not sure", "I'm Catholic and",
                    "Call me Crazy, but", "This is Important.", "I am So tired", "I'm Bipolar and",
                    "I am Christian, and", "This is Monday.", "I'm Exhausted and"),
                   ("{v} honestly.", "{v}", "{v} I guess.")),
}


# ---------------------------------------------------------------- the labelled set


def _corpus_texts(raw_root: Path) -> Iterator[tuple[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with open(raw_root / COUNSEL_CHAT_CSV, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield "counsel_chat", row.get("questionText") or ""
            yield "counsel_chat", row.get("answerText") or ""
    with open(raw_root / ESCONV_JSON, encoding="utf-8") as f:
        for conversation in json.load(f):
            for turn in conversation.get("dialog", []):
                yield "esconv", turn.get("content") or ""


def _candidate_sentences(raw_root: Path) -> list[tuple[str, str]]:
    """Unique corpus sentences of a plantable size, in file order."""
    seen: dict[str, str] = {}
    for source, text in _corpus_texts(raw_root):
        for sentence in _SENTENCE_SPLIT.split(text):
            sentence = sentence.strip()
            if 30 <= len(sentence) <= 240 and len(sentence.split()) >= 5 and "[" not in sentence:
                seen.setdefault(sentence, source)
    return list(seen.items())


def _clean_sentences(raw_root: Path, rng: random.Random) -> Iterator[tuple[str, str]]:
    pool = _candidate_sentences(raw_root)
    rng.shuffle(pool)
    for sentence, source in pool:
        if not find_pii(sentence):
            yield sentence, source


def _plant(sentence: str, template: str, value: str, position: str, sep: str = " ") -> tuple[str, int]:
    """The sentence with the filled template at `position`, and the offset of the value in the result."""
    filler, offset = template.replace("{v}", value), template.index("{v}")
    if position == "start":
        return f"{filler}{sep}{sentence}", offset
    if position == "end":
        return f"{sentence}{sep}{filler}", len(sentence) + len(sep) + offset
    if filler.startswith("(") and filler.endswith(")"):
        filler, offset = filler[1:-1], offset - 1
    elif template.endswith("."):
        filler = filler[:-1]
    words = sentence.split(" ")
    left, right = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2:])
    return f"{left} ({filler}) {right}", len(left) + 2 + offset


def build_labelled_set(raw_root: str, n_per_type: int = 60, seed: int = 7) -> list[dict]:
    """`n_per_type` planted items per PII type and per lookalike kind; deterministic for a seed."""
    rng = random.Random(seed)
    sentences = _clean_sentences(Path(raw_root), rng)
    items: list[dict] = []

    def add(pii_type: str | None, kind: str, value: str, template: str, position: str) -> None:
        sentence, source = next(sentences, (None, None))
        if sentence is None:
            raise ValueError(f"too few PII-free sentences under {raw_root} for n_per_type={n_per_type}")
        sep = "\n" if kind in SIGNATURE_KINDS_AT_END else " "  # a sign-off starts its own line
        text, start = _plant(sentence, template, value, position, sep)
        assert text[start:start + len(value)] == value, (text, value)
        items.append({"text": text, "type": pii_type, "kind": kind, "value": value, "start": start,
                      "position": position, "source": source})

    for pii_type in PII_TYPES:
        for _ in range(n_per_type):
            kind, value, template = PII_GENERATORS[pii_type](rng)
            position = "end" if kind in SIGNATURE_KINDS_AT_END else rng.choice(POSITIONS)
            add(pii_type, kind, value, template, position)
    for kind, (values, templates) in LOOKALIKES.items():
        for _ in range(n_per_type):
            add(None, kind, rng.choice(values), rng.choice(templates), rng.choice(POSITIONS))
    logger.info("built %d labelled items from %s", len(items), raw_root)
    return items


def evaluate(items: list[dict], max_misses: int = 0) -> dict:
    """Recall per PII type and false positives per lookalike kind; `max_misses` examples of each are kept.

    detected: the planted string is gone from the redacted text and the type's placeholder is in it (recall is
    detected / planted); exact: the redacted text is the input with exactly the planted string replaced.
    false_positives: lookalike items whose redacted text gained any placeholder.
    """
    pii = {t: {"planted": 0, "detected": 0, "exact": 0, "misses": []} for t in PII_TYPES}
    lookalikes: dict[str, dict] = {}
    for item in items:
        redacted, _ = redact_text(item["text"])
        if item["type"] is not None:
            row = pii[item["type"]]
            placeholder = PLACEHOLDERS[item["type"]]
            row["planted"] += 1
            hit = item["value"] not in redacted and placeholder in redacted
            row["detected"] += hit
            start, value = item["start"], item["value"]
            row["exact"] += redacted == item["text"][:start] + placeholder + item["text"][start + len(value):]
            if not hit and len(row["misses"]) < max_misses:
                row["misses"].append({"kind": item["kind"], "text": item["text"], "redacted": redacted})
        else:
            row = lookalikes.setdefault(item["kind"], {"planted": 0, "false_positives": 0, "misses": []})
            row["planted"] += 1
            flagged = any(p in redacted for p in PLACEHOLDERS.values())
            row["false_positives"] += flagged
            if flagged and len(row["misses"]) < max_misses:
                row["misses"].append({"text": item["text"], "redacted": redacted})
    for row in pii.values():
        row["recall"] = round(row["detected"] / row["planted"], 4) if row["planted"] else None
    for row in lookalikes.values():
        row["fp_rate"] = round(row["false_positives"] / row["planted"], 4) if row["planted"] else None
    for row in (*pii.values(), *lookalikes.values()):
        if not max_misses:
            del row["misses"]
    return {"pii": pii, "lookalikes": lookalikes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-root", required=True, help="folder holding counsel_chat/ and esconv_failed/")
    parser.add_argument("--n-per-type", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show-misses", type=int, default=0, help="examples of misses to print per row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    items = build_labelled_set(args.raw_root, args.n_per_type, args.seed)
    print(json.dumps(evaluate(items, args.show_misses), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
