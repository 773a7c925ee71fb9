"""Canonical text and HTML stripping: what the content hash and the stored messages see."""

from __future__ import annotations

import re
import sys
import time

from etl.contract import canonical_text, strip_html

WORD_PASTE = ('<!--[if gte mso 9]>\n<xml>Normal 0 false EN-US</xml><![endif]--><!--\n/* Style Definitions */\n'
              'table.MsoNormalTable {mso-style-name:"Table Normal";}\n--><p>You are noticing that <b>sleep</b> is hard.</p>'
              '<STYLE type="text/css">p {margin: 0}</style >')


def test_word_comments_and_style_blocks_are_dropped_with_their_content():
    assert strip_html(WORD_PASTE) == "You are noticing that sleep is hard."
    assert canonical_text(WORD_PASTE) == "You are noticing that sleep is hard."
    assert canonical_text(WORD_PASTE) == canonical_text("<p>You are noticing that sleep is hard.</p>")


def test_text_that_only_looks_like_markup_is_kept():
    assert strip_html("I <3 you, 2 < 3 and <!-- this never closes") == "I <3 you, 2 < 3 and <!-- this never closes"
    assert canonical_text("a <script> without an end") == "a without an end"


def test_many_unterminated_openers_stay_linear():
    start = time.perf_counter()
    canonical_text("<!--" * 250_000)
    strip_html("<style>" * 100_000 + "</")
    assert time.perf_counter() - start < 2.0


def _tricky_texts(n: int, seed: int = 5) -> list[str]:
    """Random mixes of every whitespace character, markup, entities and combining marks (seeded)."""
    import random

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF and re.match(r"\s", chr(c))]
    pieces = [*spaces, "a", "e", "Z", "\u0301", "\u0327", "\u00e9", "<b>", "</p>", "<br/>", "<!-- x -->", "<3",
              "&amp;", "&nbsp;", "&#769;", "&#x301;", "&lt;i&gt;", "&", "<", ">", "I'm", "don\u2019t", "hi", "\u200b",
              "\ufeff", "<style>p{}</style>", "\u1100\u1161", "\u212b", " ", "  ", "\t\n", "\ud800", "\udfff",
              "&#xd800;", "&#x85;"]
    rng = random.Random(seed)
    return [*spaces, *["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(n)]]


def test_canonical_text_equals_its_definition_on_whitespace_markup_entities_and_combining_marks():
    """The fast canonical_text (str.split, one NFC pass when nothing changed) gives the definition's output."""
    from etl.testing import reference

    # the fast path splits on str.isspace, the definition on `\s`: the two must name the same characters
    assert all(bool(re.match(r"\s", chr(c))) == chr(c).isspace() for c in range(sys.maxunicode + 1))
    texts = _tricky_texts(10_000)
    assert len(texts) > 10_020  # every Unicode whitespace character alone, then the mixes
    got = [canonical_text(t) for t in texts]
    assert got == [reference.canonical_text(t) for t in texts]
    assert canonical_text("e&#769; \u00a0x\u2003<b>y</b>") == "\u00e9 x y"  # decoded mark composed; NBSP collapsed


def test_filler_only_stops_early_but_agrees_with_its_definition():
    from etl.leakage import filler_only
    from etl.testing import reference

    texts = [canonical_text(t) for t in _tricky_texts(5_000)] + [
        "hi there", "Hi, I'm here to listen. What brings you here today?", "thanks so much!!", "",
        "hello there, my dog died", "ok bye \u2019", "ok byee"]
    assert [filler_only(t) for t in texts] == [reference.filler_only(t) for t in texts]
    assert filler_only("hello there") and not filler_only("hello there, my dog died")
