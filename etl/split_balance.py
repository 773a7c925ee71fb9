"""Balanced split assignment of whole groups (plain Python, no Spark): ratios per family within a row or two.

Pure hashing of split groups gives the configured ratios only on average: a family whose rows sit in a few
large groups (one counsel_chat question has 94 answers) misses 5 % val by several points. So groups that the
previous release and the holdout rule leave free are placed here, deterministically:
  1. targets per family over its counted rows (rows the export keeps): val = round(n * r_val),
     test = round(n * r_test), train = the rest; rows already placed (published, inherited) count first;
  2. multi-row groups, largest first (ties: hash position u, then group key), go to the split with the most
     relative room left for the group's families, among the splits where the group fits: within every family's
     remaining target and at most `max_group_share` of that target (so one question cannot fill an eval split);
     ties go to the split the group's hash position u gives (the `hash` method's answer);
  3. single-row groups then fill each family's remaining val and test quotas in order of u (the rest is train),
     which Spark does with a window rank: see `singleton_quotas`.
The result depends only on the input rows, so a rerun gives the same splits; release-to-release stability of
published rows comes from the previous-release rule, which runs before this.
"""

from __future__ import annotations

SPLIT_NAMES = ("train", "val", "test")


def family_targets(totals: dict[str, int], ratios: dict) -> dict[str, dict[str, int]]:
    """{family: {split: rows}}: val and test rounded from the ratios, train the rest."""
    out = {}
    for family, n in totals.items():
        val, test = round(n * float(ratios["val"])), round(n * float(ratios["test"]))
        out[family] = {"train": n - val - test, "val": val, "test": test}
    return out


def _choose(counts: dict[str, int], preferred: str, targets: dict, placed: dict, max_share: float) -> str:
    """The split with the most relative room among those the group fits (all splits when it fits none)."""
    size = sum(counts.values())

    def room(split: str, family: str) -> int:
        return targets[family][split] - placed[family][split]

    def fits(split: str) -> bool:
        return all(n <= room(split, f) and n <= max(1, max_share * targets[f][split]) for f, n in counts.items())

    def score(split: str) -> float:
        return sum(n * room(split, f) / max(targets[f][split], 1) for f, n in counts.items()) / size

    candidates = [s for s in SPLIT_NAMES if fits(s)] or list(SPLIT_NAMES)
    return max(candidates, key=lambda s: (round(score(s), 12), s == preferred, -SPLIT_NAMES.index(s)))


def place_groups(groups: list[tuple[str, float, str, dict[str, int]]], totals: dict[str, int],
                 fixed: dict[str, dict[str, int]], ratios: dict, max_share: float
                 ) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Place multi-row groups (key, u, hash split, {family: counted rows}); returns (key -> split, targets, placed).

    `totals` are counted rows per family over placed and free rows; `fixed` the counted rows already in each split.
    """
    targets = family_targets(totals, ratios)
    placed = {f: {s: fixed.get(f, {}).get(s, 0) for s in SPLIT_NAMES} for f in totals}
    out: dict[str, str] = {}
    for key, u, preferred, counts in sorted(groups, key=lambda g: (-sum(g[3].values()), g[1], g[0])):
        counts = {f: n for f, n in counts.items() if n > 0}
        if not counts:  # nothing of it is exported: where it goes changes no ratio
            out[key] = preferred
            continue
        split = _choose(counts, preferred, targets, placed, max_share)
        out[key] = split
        for family, n in counts.items():
            placed[family][split] += n
    return out, targets, placed


def singleton_quotas(targets: dict[str, dict[str, int]], placed: dict[str, dict[str, int]]) -> dict[str, tuple]:
    """{family: (val rows, test rows)} still missing after the multi-row groups; single rows fill them by rank."""
    return {f: (max(0, targets[f]["val"] - placed[f]["val"]), max(0, targets[f]["test"] - placed[f]["test"]))
            for f in targets}
