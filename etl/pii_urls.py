"""Is a URL personal? The URL rule of `etl.pii`: a URL is PII only when it points at one person.

Personal: a profile path (/therapists/<slug>, /users/<handle>, /@x, /~x), a user page on a social host
(facebook.com/<user>, linkedin.com/in/<x>), a personal blog subdomain (jane.wordpress.com), a private-practice
host (janedoetherapy.com, markmorrislcsw.com), a path segment that is a person's slug (jane-doe,
sherry-katz-lcsw) or an IP host. Every other URL, and any URL on a known resource/directory host or a
.gov/.edu/.mil/.int domain (profile paths aside), is kept. The word lists live in `etl.pii_patterns`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from etl import pii_patterns as P
from etl.pii_patterns import count_digits, is_ip

__all__ = ["is_personal_url", "strip_url_tail"]


def strip_url_tail(url: str) -> str:
    while url and url[-1] in P.URL_TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break  # a balanced parenthesis belongs to the URL (wikipedia-style paths)
        url = url[:-1]
    return url


def _base_domain(host: str) -> str:
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in ("co", "com", "org", "net", "ac", "gov"):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def is_personal_url(url: str) -> bool:
    """True when a URL points at one person (see the module docstring for the rule)."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    host = host.removeprefix("www.")
    if is_ip(host.strip("[]")):
        return True
    segments = [unquote(s).lower() for s in parts.path.split("/") if s]
    if _has_profile_path(segments):
        return True
    base = _base_domain(host)
    if base in P.SOCIAL_HOSTS:
        return _is_social_profile(host, base, segments)
    if host in P.RESOURCE_HOSTS or base in P.RESOURCE_HOSTS or host.endswith(P.PUBLIC_SECTOR_SUFFIXES):
        return False
    if base in P.BLOG_HOSTS:
        return host != base and host.split(".")[0] not in ("blog", "en", "m")
    label = base.split(".")[0]
    if any(word in label for word in P.PRACTICE_WORDS):
        return True
    if len(label) >= 7 and label.endswith(P.CREDENTIAL_HOST_SUFFIXES):
        return True
    return any(_is_person_slug(s) for s in segments)


def _has_profile_path(segments: list[str]) -> bool:
    for i, seg in enumerate(segments):
        if seg[0] in "@~" and len(seg) > 2:
            return True
        if seg in P.PERSONAL_PAGE_SEGMENTS:
            return True
        nxt = segments[i + 1] if i + 1 < len(segments) else ""
        if seg in P.HANDLE_SEGMENTS and len(nxt) >= 2:
            return True
        if seg in P.DIRECTORY_SEGMENTS and nxt and (_is_person_slug(nxt, loose=True) or count_digits(nxt) >= 4):
            return True
    return False


def _is_person_slug(segment: str, loose: bool = False) -> bool:
    """jane-doe, sherry-katz-lcsw; `loose` (after a directory segment): any 2+ word slug free of common words."""
    tokens = [t for t in P.SLUG_SPLIT.split(segment.removesuffix(".html")) if t]
    if not 2 <= len(tokens) <= 7 or not tokens[0].isalpha():
        return False
    if tokens[-1] in P.CREDENTIAL_SLUGS or (len(tokens) > 2 and tokens[2] in P.CREDENTIAL_SLUGS):
        return True
    if loose:
        return all(t.isalpha() and t not in P.STOP_WORDS and t not in P.NOT_NAMES for t in tokens[:2])
    return tokens[0] in P.FIRST_NAMES and tokens[1].isalpha() and tokens[1] not in P.STOP_WORDS


def _is_social_profile(host: str, base: str, segments: list[str]) -> bool:
    if host != base and host.split(".")[0] not in ("m", "mobile", "en", "web", "help", "about"):
        return True  # jane.tumblr.com
    if not segments or segments[0] in P.SOCIAL_RESERVED:
        return False
    first = segments[0]
    if base == "linkedin.com":
        return first in ("in", "pub") and len(segments) > 1
    if base == "youtube.com":
        return first in ("c", "user", "channel") and len(segments) > 1
    if base == "reddit.com":
        return first in ("u", "user") and len(segments) > 1
    return not first.endswith(".php")
