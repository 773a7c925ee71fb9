"""Reference definitions of the contract's text functions, written as their docstrings define them.

`etl.contract.canonical_text` and `etl.leakage.filler_only` are tuned for speed (they run on every turn of every
conversation in several stages); the content hash must not change with that tuning, so tests and
benchmarks/text_hashing_speed.py compare them with these plain versions.
"""

from __future__ import annotations

import html
import re
import unicodedata

from etl.contract import _TAG, _drop_hidden
from etl.leakage import _WORD, TRIVIAL_WORDS

_WS = re.compile(r"\s+")


def canonical_text(text: str) -> str:
    """NFC; comments, style/script elements and tags replaced by a space; entities decoded; NFC again;
    whitespace runs collapsed to one space; trimmed."""
    text = unicodedata.normalize("NFC", text)
    if "<" in text:
        text = _TAG.sub(" ", _drop_hidden(text, " "))
    text = unicodedata.normalize("NFC", html.unescape(text))
    return _WS.sub(" ", text).strip()


def filler_only(text: str) -> bool:
    """Every word (apostrophes dropped, case folded) is in TRIVIAL_WORDS."""
    words = _WORD.findall(text.casefold().replace("'", "").replace("\u2019", ""))
    return all(w in TRIVIAL_WORDS for w in words)
