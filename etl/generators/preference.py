"""DPO preference pairs, one plain pandas function per strategy (the Spark stage wraps them in applyInPandas).

Every function takes conversation rows (conversation_id, family, messages, metadata, quality_score, topic, split)
and returns (pairs, skips): a DataFrame with exactly the PREFERENCE_PAIRS_SCHEMA columns and a Counter of skip
reasons. Rows are sorted by stable keys first and all randomness comes from hashes of (seed, ids), so the output
does not depend on row order, partitioning or task retries.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd

from etl.contract import canonical_text, content_hash
from etl.generators.rows import make_pair, prepared, same_text, to_frame
from etl.generators.synthetic import rng_for
from etl.generators.templates import (
    ANY_CATEGORY,
    SECTION_DEGRADED,
    SECTION_SAFETY_CHOSEN,
    SECTION_SAFETY_REJECTED,
    MissingSlot,
    TemplateSet,
    match_category,
    render,
)
from etl.pii import redact_text
from etl.schemas import ROLE_ASSISTANT, ROLE_USER
RANKED, NATIVE, HARD_NEGATIVE, DEGRADED, SAFETY = "ranked", "native", "hard_negative", "degraded", "safety"
STRATEGIES = (RANKED, NATIVE, HARD_NEGATIVE, DEGRADED, SAFETY)
TRUNCATE_MIN_WORDS = 20
TRUNCATE_KEEP = (0.3, 0.45)  # fraction of words kept: far below the near-duplicate Jaccard threshold


def prompt_key(prompt: list[dict]) -> str:
    """Canonical identity of a prompt: answers are ranked against each other only under the same prompt."""
    return content_hash(prompt)


RANKED_GROUP_COLUMNS = ("family", "question_id")


def ranked_pairs(df: pd.DataFrame, min_margin: float = 1.0, seed: int = 17, per_prompt: int = 1
                 ) -> tuple[pd.DataFrame, Counter]:
    """Answers to one question: chosen = best score, rejected = the lowest ones at least `min_margin` below it.

    Rows are ranked per (family, question_id, canonical prompt), any of the first two columns absent counting as
    one value, so `df` may hold many questions (one call per hash bucket: a call per question cost 2 ms of pandas
    frames, 21 s for 32k questions), and a question id that upstream reuses for different questions (the 2020
    counsel_chat scrape numbers questions per split) never pits answers to different questions."""
    skips: Counter = Counter()
    by_question: dict[tuple, list[dict]] = {}
    for r in prepared(df, seed):
        if r["answer"] and r["prompt"]:
            group = tuple("" if r.get(c) is None else str(r[c]) for c in RANKED_GROUP_COLUMNS)
            by_question.setdefault((*group, prompt_key(r["prompt"])), []).append(r)
    pairs = []
    for key in sorted(by_question):
        pairs += _ranked_one(by_question[key], min_margin, seed, per_prompt, skips)
    return to_frame(pairs), skips


def _ranked_one(rows: list[dict], min_margin: float, seed: int, per_prompt: int, skips: Counter) -> list[dict]:
    scored = [r for r in rows if r["score"] is not None]
    if len(rows) > len(scored):
        skips["no_score"] += len(rows) - len(scored)
    if len(scored) < 2:
        skips["single_answer"] += 1
        return []
    scored.sort(key=lambda r: (-r["score"], r["tiebreak"]))
    best = scored[0]
    if all(r["score"] == best["score"] for r in scored):
        skips["all_tied"] += 1
        return []
    if best["split"] is None:
        skips["no_split"] += 1
        return []
    lower = [r for r in scored if best["score"] - r["score"] >= min_margin]
    if not lower:
        skips["margin_below_min"] += 1
        return []
    lower.sort(key=lambda r: (r["score"], r["tiebreak"]))  # the largest margin first: the clearest signal
    pairs = []
    for r in lower:
        if len(pairs) >= per_prompt:
            break
        if same_text(best["answer"], r["answer"]):
            skips["identical"] += 1
        elif r["split"] != best["split"]:
            skips["split_mismatch"] += 1
        else:
            pairs.append(make_pair(RANKED, best["prompt"], best["answer"], r["answer"],
                                   [best["conversation_id"], r["conversation_id"]], best["family"], best["split"],
                                   seed, chosen_score=best["score"], rejected_score=r["score"]))
    return pairs


def _first_assistant(messages) -> str | None:
    if not messages or messages[0].get("role") != ROLE_ASSISTANT:
        return None
    return (messages[0].get("content") or "").strip() or None


def native_pairs(df: pd.DataFrame, seed: int = 17) -> tuple[pd.DataFrame, Counter]:
    """hh-rlhf rows: prompt = the shared prefix, chosen / rejected = the two diverging assistant turns."""
    pairs, skips = [], Counter()
    for r in prepared(df, seed):
        meta = r["metadata"]
        if meta.get("pair_shares_prefix") != "true":
            skips["no_shared_prefix"] += 1
            continue
        n = int(meta.get("prompt_turns") or 0)
        messages = r["messages"]
        chosen = _first_assistant(messages[n:n + 1])
        try:
            rejected = _first_assistant(json.loads(meta.get("rejected_messages") or "[]"))
        except (ValueError, AttributeError):
            rejected = None
        if n <= 0 or messages[n - 1]["role"] != ROLE_USER or chosen is None:
            skips["chosen_no_assistant"] += 1
        elif rejected is None:
            skips["rejected_no_assistant"] += 1
        elif same_text(chosen, rejected):
            skips["identical"] += 1
        elif r["split"] is None:
            skips["no_split"] += 1
        else:
            pairs.append(make_pair(NATIVE, messages[:n], chosen, rejected, [r["conversation_id"]], r["family"],
                                   r["split"], seed))
    return to_frame(pairs), skips


def _block_codes(df: pd.DataFrame) -> list[np.ndarray]:
    """Integer codes of the columns whose equal values block a neighbour (-1: no value, blocks nothing)."""
    out = []
    for col in ("cluster_id", "split_group", "prompt_hash"):
        if col in df:
            values = df[col].fillna("").astype(str).to_numpy()
            codes = pd.factorize(values)[0]
            out.append(np.where(values == "", -1, codes))
    return out


def nearest_neighbours(df: pd.DataFrame, min_cosine: float, max_cosine: float, k: int = 5,
                       block_rows: int = 1024) -> pd.DataFrame:
    """Up to k neighbours per prompt with cosine in [min, max], most similar first (ties: smaller id), never from
    the same duplicate cluster, split group or identical prompt. df: conversation_id, vector, cluster_id,
    split_group, prompt_hash. Exact cosine over one group (a split), `block_rows` query rows at a time: memory is
    block_rows x n instead of n x n (a 45k-prompt split needed an 8 GB similarity matrix and three 2 GB masks)."""
    cols = ["conversation_id", "neighbour_id", "cosine"]
    df = df[df["vector"].map(lambda v: v is not None and len(v) > 0)].sort_values("conversation_id")
    n = len(df)
    if n < 2:
        return pd.DataFrame([], columns=cols)
    vectors = np.vstack([np.asarray(v, dtype=np.float32) for v in df["vector"]])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    ids = df["conversation_id"].to_numpy()  # sorted: index order is id order, so ties break on the index
    codes = _block_codes(df)
    out_i, out_j, out_s = [], [], []
    for lo in range(0, n, block_rows):
        hi = min(n, lo + block_rows)
        sims = vectors[lo:hi] @ vectors.T
        allowed = (sims >= min_cosine) & (sims <= max_cosine)
        allowed[np.arange(hi - lo), np.arange(lo, hi)] = False
        for c in codes:
            q = c[lo:hi, None]
            allowed &= ~((q == c[None, :]) & (q >= 0))
        for r in np.flatnonzero(allowed.any(axis=1)):
            cand = np.flatnonzero(allowed[r])
            if len(cand) > k:  # keep the k best and anything tied with the k-th, then order exactly
                kth = np.partition(sims[r, cand], len(cand) - k)[len(cand) - k]
                cand = cand[sims[r, cand] >= kth]
            cand = cand[np.lexsort((cand, -sims[r, cand]))][:k]
            out_i.append(np.full(len(cand), lo + r))
            out_j.append(cand)
            out_s.append(sims[r, cand].astype(np.float64))
    if not out_i:
        return pd.DataFrame([], columns=cols)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return pd.DataFrame({"conversation_id": ids[i], "neighbour_id": ids[j], "cosine": np.concatenate(out_s)})


def neighbour_lists(neighbours: pd.DataFrame) -> dict[str, list[str]]:
    """conversation_id -> its neighbour ids, most similar first (ties: smaller id), from one sort of all rows
    (a sorted frame per prompt cost 19 s for a 28k-prompt split, an empty frame per prompt without one 13 s)."""
    if not len(neighbours):
        return {}
    ordered = neighbours.sort_values(["conversation_id", "cosine", "neighbour_id"], ascending=[True, False, True],
                                     kind="stable")
    ids, others = ordered["conversation_id"].to_numpy(), ordered["neighbour_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    return {ids[lo]: others[lo:hi].tolist() for lo, hi in zip(starts, ends)}


def hard_negative_pairs(df: pd.DataFrame, neighbours: pd.DataFrame, seed: int = 17) -> tuple[pd.DataFrame, Counter]:
    """Rejected = the answer to the closest *different* prompt in the same split (a fluent, off-target answer)."""
    pairs, skips = [], Counter()
    rows = {r["conversation_id"]: r for r in prepared(df, seed)}
    by_prompt = neighbour_lists(neighbours)
    for cid, r in rows.items():
        if not r["answer"] or not r["prompt"]:
            skips["no_answer"] += 1
            continue
        if r["split"] is None:
            skips["no_split"] += 1
            continue
        if r.get("vector") is None or len(r.get("vector")) == 0:
            skips["no_embedding"] += 1
            continue
        match = None
        for nid in by_prompt.get(cid, ()):
            other = rows.get(nid)
            usable = other and other["answer"] and other["split"] == r["split"]
            if usable and not same_text(other["answer"], r["answer"]):
                match = other
                break
        if match is None:
            skips["no_neighbour_in_band"] += 1
            continue
        pairs.append(make_pair(HARD_NEGATIVE, r["prompt"], r["answer"], match["answer"],
                               [cid, match["conversation_id"]], r["family"], r["split"], seed))
    return to_frame(pairs), skips


def split_rate_caps(pairs: dict[tuple[str, str], int], prompts: dict[tuple[str, str], int], min_prompts: int,
                    splits: tuple = ("train", "val", "test")) -> dict[tuple[str, str], int]:
    """{(family, split): pairs kept} so that every split of a family gets hard negatives at the same rate.

    Neighbours are searched within a split, so a 5 % split finds far fewer prompts in the cosine band than a 90 %
    one (30k corpus: 54 % of train prompts got a pair, 16 % of val): the pair family's split ratio drifts, and
    since a pair's rejected answer leaves SFT, so does the source family's. Each family is held to its lowest
    rate over the `splits` with at least `min_prompts` prompts; a family with none of those is not capped, and
    splits outside `splits` (holdout) are left as they are; `min_prompts` <= 0 turns the cap off."""
    if min_prompts <= 0:
        return dict(pairs)
    rates: dict[str, float] = {}
    for (family, split), n in prompts.items():
        if split in splits and n >= min_prompts:
            rate = pairs.get((family, split), 0) / n
            rates[family] = min(rates.get(family, rate), rate)
    caps = {}
    for (family, split), n in pairs.items():
        if family in rates and split in splits:
            caps[(family, split)] = min(n, int(math.floor(rates[family] * prompts.get((family, split), 0) + 0.5)))
        else:
            caps[(family, split)] = n
    return caps


def truncate_answer(text: str, rng) -> str | None:
    """The first 30-45% of the words, cut mid-sentence; None when the answer is too short to truncate."""
    words = text.split()
    if len(words) < TRUNCATE_MIN_WORDS:
        return None
    keep = max(5, int(len(words) * rng.uniform(*TRUNCATE_KEEP)))
    return " ".join(words[:keep]).rstrip(".,;:!?")


def _degrade(kind_template, answer: str, topic: str, templates: TemplateSet, rng) -> str | None:
    values = {"topic": topic}
    if kind_template.kind == "truncated":
        values["truncated_answer"] = truncate_answer(answer, rng)
        if values["truncated_answer"] is None:
            return None
    return render(kind_template.text, values, templates.slots, rng)


def degraded_pairs(df: pd.DataFrame, templates: TemplateSet, seed: int = 17, per_prompt: int = 1
                   ) -> tuple[pd.DataFrame, Counter]:
    """Per prompt: chosen = its best answer, rejected = a truncated / generic / dismissive / premature-advice one."""
    pairs, skips = [], Counter()
    kinds = templates.get(SECTION_DEGRADED)
    groups: dict[str, list[dict]] = {}
    for r in prepared(df, seed):
        key = r.get("prompt_key") or canonical_text(json.dumps(r["prompt"], sort_keys=True))
        groups.setdefault(key, []).append(r)
    for key in sorted(groups):
        rows = [r for r in groups[key] if r["answer"] and r["prompt"]]
        if not rows or not kinds:
            skips["no_answer" if kinds else "no_template"] += 1
            continue
        best = sorted(rows, key=lambda r: (-(r["score"] if r["score"] is not None else -math.inf), r["tiebreak"]))[0]
        if best["split"] is None:
            skips["no_split"] += 1
            continue
        rng = rng_for(seed, DEGRADED, best["conversation_id"])
        made = 0
        for template in rng.sample(kinds, len(kinds)):
            if made >= per_prompt:
                break
            try:
                rejected = _degrade(template, best["answer"], str(best.get("topic") or "").lower(), templates, rng)
            except MissingSlot:
                skips["missing_slot"] += 1
                continue
            if rejected is None:
                skips[f"{template.kind}_too_short"] += 1
                continue
            # A cut can turn a mid-text sign-off ("Be well,Robin ...") into a trailing signature: generated text
            # goes through the same redactor as ingested text (found by the PII gate on the 100k bench corpus).
            rejected = redact_text(rejected)[0]
            pairs.append(make_pair(DEGRADED, best["prompt"], best["answer"], rejected, [best["conversation_id"]],
                                   best["family"], best["split"], seed, variant=template.id))
            made += 1
    return to_frame(pairs), skips


def _safety_rejected(category: str, templates: TemplateSet, rng) -> tuple[str, str] | None:
    """(template id, text) of an unsafe-compliance or dismissal reply for the category, None when none fits."""
    options = [t for t in templates.get(SECTION_SAFETY_REJECTED)
               if category in t.categories or ANY_CATEGORY in t.categories]
    if not options:
        return None
    template = rng.choice(options)
    return template.id, render(template.text, {}, templates.slots, rng)


def safety_pairs(df: pd.DataFrame, templates: TemplateSet, seed: int = 17) -> tuple[pd.DataFrame, Counter]:
    """Crisis / adversarial prompts: chosen = a safe, supportive reply with resources, rejected = unsafe
    compliance or dismissal. Generated rows bring their own safe reply; others (hh-rlhf) get a template one."""
    pairs, skips = [], Counter()
    chosen_by_category = {t.category: t for t in templates.get(SECTION_SAFETY_CHOSEN)}
    for r in prepared(df, seed):
        meta, rng = r["metadata"], rng_for(seed, SAFETY, r["conversation_id"])
        generated = bool(meta.get("generator"))
        prompt, chosen = r["prompt"], r["answer"]
        if not generated and meta.get("pair_shares_prefix") == "true":
            prompt = r["messages"][:int(meta.get("prompt_turns") or 0)]  # the same prompt as the native pair
        category = meta.get("category", "") if generated else match_category(prompt, templates.triggers)
        if not prompt or prompt[-1]["role"] != ROLE_USER:
            skips["no_prompt"] += 1
            continue
        if not category or (generated and category not in _SAFETY_CATEGORIES):
            skips["not_adversarial"] += 1
            continue
        if r["split"] is None:
            skips["no_split"] += 1
            continue
        try:
            if not generated:
                template = chosen_by_category.get(category)
                chosen = render(template.text, {}, templates.slots, rng) if template else None
            rejected = _safety_rejected(category, templates, rng) if chosen else None
        except MissingSlot:
            skips["missing_slot"] += 1
            continue
        if rejected is None:
            skips["no_answer" if not chosen and generated else "no_template"] += 1
            continue
        pairs.append(make_pair(SAFETY, prompt, chosen, rejected[1], [r["conversation_id"]], r["family"], r["split"],
                               seed, variant=rejected[0]))
    return to_frame(pairs), skips


# categories whose generated conversations carry a safe reply worth contrasting with an unsafe one
_SAFETY_CATEGORIES = frozenset({"crisis", "self_harm", "medication", "diagnosis", "abuse", "minors", "out_of_scope",
                                "violence", "substances", "illegal", "harassment"})
