"""Canonical text and HTML stripping: what the content hash and the stored messages see."""

from __future__ import annotations

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
