"""Ground truth between the two counsel_chat scrapes: same answer (positives) and other therapists (hard negatives).

The legacy scrape repeats most answers of the 2020 scrape with HTML and whitespace differences. A legacy row and a
2020 row are the same answer when their question titles agree (normalised) and they name the same therapist. The
2020 `therapistInfo` glues the name to a tagline ("Sherry Katz, LCSWCouples and Family Therapist, LCSW",
"Lee KingI use an integrative approach..."), so the name is what comes before the first comma and two names agree
when one normalised name starts with the other ("lee kingi use an ..." starts with "lee king").

A (title, therapist) group is kept as positives only when each scrape holds exactly one answer text for it: a
therapist who answered two same-titled questions differently cannot be paired without looking at the answers,
which is what the method under test does, so such groups are excluded and counted instead.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass

from etl.contract import canonical_text

_NON_WORD = re.compile(r"[\W_]+")


def norm_key(text: str | None) -> str:
    """Lower-cased words separated by single spaces (punctuation and markup characters dropped)."""
    return " ".join(_NON_WORD.sub(" ", canonical_text(text or "").lower()).split())


def therapist_key(name: str | None) -> str:
    """The normalised therapist name: the part before the first comma (may still carry a glued tagline)."""
    return norm_key((name or "").split(",")[0])


def same_therapist(a: str, b: str) -> bool:
    """Two therapist keys name the same person: equal, or one starts with the other (glued tagline)."""
    if not a or not b:
        return False
    return a.startswith(b) or b.startswith(a)


@dataclass(frozen=True)
class QaRow:
    """One therapist answer: id (conversation id), scrape family, question title, therapist, answer text."""

    id: str
    family: str
    title: str
    therapist: str
    answer: str


def _group_by_title(rows: list[QaRow]) -> dict[str, list[QaRow]]:
    groups: dict[str, list[QaRow]] = defaultdict(list)
    for row in rows:
        key = norm_key(row.title)
        if key:
            groups[key].append(row)
    return groups


def positive_pairs(new_rows: list[QaRow], legacy_rows: list[QaRow]) -> tuple[list[tuple[str, str]], dict]:
    """(new id, legacy id) pairs of the same answer in both scrapes, and counts of what was matched or excluded."""
    new_by_title = _group_by_title(new_rows)
    pairs: list[tuple[str, str]] = []
    stats = {"legacy_rows": len(legacy_rows), "legacy_matched": 0, "legacy_unmatched_title": 0,
             "legacy_unmatched_therapist": 0, "legacy_ambiguous": 0}
    for title, legacy_group in sorted(_group_by_title(legacy_rows).items()):
        candidates = new_by_title.get(title, [])
        for row in legacy_group:
            key = therapist_key(row.therapist)
            matches = [c for c in candidates if same_therapist(key, therapist_key(c.therapist))]
            if not candidates:
                stats["legacy_unmatched_title"] += 1
                continue
            if not matches:
                stats["legacy_unmatched_therapist"] += 1
                continue
            same_side = [r for r in legacy_group if same_therapist(key, therapist_key(r.therapist))]
            new_texts = {norm_key(m.answer) for m in matches}
            legacy_texts = {norm_key(r.answer) for r in same_side}
            if len(new_texts) > 1 or len(legacy_texts) > 1:
                stats["legacy_ambiguous"] += 1
                continue
            stats["legacy_matched"] += 1
            pairs.extend((m.id, row.id) for m in matches)
    return sorted(set(pairs)), stats


def hard_negative_pairs(rows: list[QaRow]) -> list[tuple[str, str, str]]:
    """(id a, id b, scope) for answers to the same question title by different therapists, a < b.

    scope is the two families joined by '|' in sorted order (e.g. 'counsel_chat|counsel_chat_legacy').
    """
    out = []
    for _, group in sorted(_group_by_title(rows).items()):
        for x, y in itertools.combinations(sorted(group, key=lambda r: r.id), 2):
            if same_therapist(therapist_key(x.therapist), therapist_key(y.therapist)):
                continue
            out.append((x.id, y.id, "|".join(sorted((x.family, y.family)))))
    return out
