"""The ChatML contract in plain Python: canonical text, content hash, stable ids and message validation.

The content-hash algorithm lives here and only here; ingest, dedup and the verify gate all call it.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

from etl.schemas import ROLE_ASSISTANT, ROLE_SYSTEM, ROLE_USER, ROLES

FIELD_SEP = "\u241f"  # SYMBOL FOR UNIT SEPARATOR, between role and content
RECORD_SEP = "\u241e"  # SYMBOL FOR RECORD SEPARATOR, between messages

_BLOCK_TAG = re.compile(r"(?i)<\s*(br|/p|p|/div|div|/li|li|/h[1-6]|tr)\b[^>]*>")
_TAG = re.compile(r"<[/!]?[A-Za-z][^<>]*>")  # a tag starts with a letter, / or !: "<3" is text
# Removed with their content: HTML comments (MS Word pastes put style sheets in `<!--[if gte mso 9]>...-->`,
# 5 answers of the legacy scrape) and style / script elements. An unterminated `<!--` is left as text.
_HIDDEN_SPANS = (  # (opening, closing) of spans removed with their content
    (re.compile(re.escape("<!--")), re.compile(re.escape("-->"))),
    (re.compile(r"(?i)<style\b"), re.compile(r"(?i)</style\s*>")),
    (re.compile(r"(?i)<script\b"), re.compile(r"(?i)</script\s*>")),
)


def _drop_hidden(text: str, sep: str) -> str:
    """Comments and style/script elements replaced by `sep`, in linear time (no backtracking over many openers)."""
    for opening, closing in _HIDDEN_SPANS:
        parts, pos = [], 0
        while (start := opening.search(text, pos)) is not None:
            end = closing.search(text, start.end())
            if end is None:  # no later span can be closed either: the rest stays text
                break
            parts += [text[pos:start.start()], sep]
            pos = end.end()
        if parts:
            text = "".join(parts) + text[pos:]
    return text


_NEWLINES = re.compile(r"\r\n?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # category Cc except \t and \n


class InvalidConversation(ValueError):
    """A record that cannot become a conversation; `reason` is the quarantine reason class."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def strip_html(text: str) -> str:
    """Remove tags and decode entities, keeping paragraph breaks as newlines (for message display)."""
    if "<" not in text and "&" not in text:
        return text
    text = _drop_hidden(text, "")
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n\n", text)
    return text.strip()


def canonical_text(text: str) -> str:
    """Canonical form of one content string: NFC, HTML tags removed, entities decoded, whitespace collapsed.

    Entities are decoded rather than deleted so that `&#34;x&#34;` and `"x"` agree (the legacy scrape
    stores the same answers HTML-escaped).
    """
    text = unicodedata.normalize("NFC", text)
    tagged = "<" in text
    if tagged:
        text = _TAG.sub(" ", _drop_hidden(text, " "))
    if tagged or "&" in text:  # else nothing changed the text since the first normalisation
        text = unicodedata.normalize("NFC", html.unescape(text))
    # str.split() splits on exactly the characters `\s` matches (str.isspace), and faster than a regex sub
    return " ".join(text.split())


def canonical_messages(messages: list[dict]) -> str:
    """Messages as `role\u241fcontent` joined by `\u241e`, each content in canonical form."""
    return RECORD_SEP.join(f"{m['role']}{FIELD_SEP}{canonical_text(m['content'])}" for m in messages)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(messages: list[dict]) -> str:
    """SHA-256 hex of the canonical messages: the one content hash of the contract."""
    return sha256_hex(canonical_messages(messages))


def text_hash(text: str) -> str:
    """SHA-256 hex of one canonical text (prompt or answer level hashing, embedding cache key)."""
    return sha256_hex(canonical_text(text))


def conversation_id(family: str, source_key: str, locator: str) -> str:
    """Stable id from family + source key + record locator (never random)."""
    return sha256_hex(f"{family}\x00{source_key}\x00{locator}")[:32]


def clean_content(text: str) -> str:
    """Content as stored: surrogates replaced, NUL and other C0 controls (but \\n and \\t) removed, trimmed."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", _NEWLINES.sub("\n", text))
    return unicodedata.normalize("NFC", text).strip()


def normalize_messages(messages: list[dict], max_chars: int = 200000) -> list[dict]:
    """Validate and normalise turns: known roles, non-empty content, consecutive same-role turns merged.

    Raises InvalidConversation with the quarantine reason class.
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidConversation("no_messages", "messages is empty or not a list")
    merged: list[dict] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InvalidConversation("bad_message", f"message {i} is not an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise InvalidConversation("bad_role", f"message {i} has role {str(role)[:40]!r}")
        if not isinstance(content, str):
            raise InvalidConversation("bad_message", f"message {i} content is not a string")
        content = clean_content(content)
        if not content:
            continue  # an empty turn carries nothing; the turn around it decides validity
        if len(content) > max_chars:
            raise InvalidConversation("message_too_long", f"message {i} has {len(content)} chars > {max_chars}")
        if merged and merged[-1]["role"] == role:
            merged[-1] = {"role": role, "content": merged[-1]["content"] + "\n" + content}
        else:
            merged.append({"role": role, "content": content})
    roles = {m["role"] for m in merged}
    if ROLE_USER not in roles:
        raise InvalidConversation("no_user_turn", "no non-empty user turn")
    if ROLE_ASSISTANT not in roles:
        raise InvalidConversation("no_assistant_turn", "no non-empty assistant turn")
    if any(m["role"] == ROLE_SYSTEM for m in merged[1:]):
        raise InvalidConversation("bad_role", "system message after the first turn")
    return merged


def first_user_text(messages: list[dict]) -> str:
    for m in messages:
        if m["role"] == ROLE_USER:
            return m["content"]
    return ""


def assistant_texts(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == ROLE_ASSISTANT]
