"""dedup stage on a small inline lake: the two relations, clusters, the embedding cache, and hostile texts."""

from __future__ import annotations

import random

import pytest
from test_splits import conv, write_lake

from etl.config import ConfigError
from etl.io import delta
from etl.schemas import DUP_CLUSTERS, DUP_EDGES
from etl.stages import dedup

FAMILIES = "{cc: {path: 'cc/**', format: qa_csv}, es: {path: 'es/**', format: esconv_json}}"
Q = "My husband left last month and I cannot stop crying at work. How do I cope with this?"
A = ("Grief after a separation often comes in waves. Try naming the feeling when it arrives, give it a few "
     "minutes, and plan one small kind thing for yourself each evening. A counsellor can help you carry it.")
A_TYPO = A.replace("separation", "separaton").replace("feeling", "feelng").replace("evening", "evenning")
A_OTHER = ("It may help to talk with your manager about flexible hours for a while, and to find a friend you "
           "can call after work. Crying is a normal response to loss, not a weakness.")
Q2 = "I have panic attacks every time I drive over a bridge, what can I do about it?"
A2 = "Exposure in small steps, with a therapist, is the usual treatment for a specific phobia like this one."
TEMPLATE = "Thank you for reaching out. This is an automated reply: a counsellor will answer your message soon."


WORDS = ("sister mother boss money school sleep anger grief move divorce dog job exam church friend phone drinking "
         "weekend holiday debt neighbour wedding lies silence distance trust jealous tired lonely scared stuck").split()


def random_question(i: int) -> str:
    rng = random.Random(i)
    return "Why do I feel " + " ".join(rng.sample(WORDS, 9)) + "?"


def edges_by_pair(spark, cfg) -> dict[tuple[str, str], str]:
    return {(r["conversation_id_a"], r["conversation_id_b"]): r["kind"]
            for r in delta.read_table(spark, cfg, DUP_EDGES).collect()}


def test_duplicates_related_rows_clusters_and_a_cached_rerun(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES)
    rows = [
        conv("a1", "cc", [("user", Q), ("assistant", A)]),
        conv("a2", "cc", [("user", Q.lower()), ("assistant", A_TYPO)]),  # typo'd, lower-cased copy: duplicate
        conv("a3", "cc", [("user", Q), ("assistant", A_OTHER)]),  # another therapist, same question: related
        conv("b1", "es", [("user", Q2), ("assistant", A2)]),
        conv("b2", "es", [("user", Q2), ("assistant", A2)]),  # exact copy in another family: duplicate
    ]
    write_lake(spark, cfg, rows)

    counts = dedup.run(spark, cfg, "r1")
    edges = edges_by_pair(spark, cfg)
    assert edges[("a1", "a2")] == "duplicate"
    assert edges[("a1", "a3")] == "related" and edges[("a2", "a3")] == "related"
    assert edges[("b1", "b2")] == "duplicate"
    clusters = {r["conversation_id"]: r for r in delta.read_table(spark, cfg, DUP_CLUSTERS).collect()}
    assert clusters["a1"]["cluster_id"] == clusters["a2"]["cluster_id"] != clusters["a3"]["cluster_id"]
    assert sum(clusters[c]["is_canonical"] for c in ("a1", "a2")) == 1 and clusters["a3"]["is_canonical"]
    assert counts["largest_cluster"] == 2 and counts["texts_embedded"] > 0 and counts["texts_from_cache"] == 0
    assert counts["texts_hashed"] == 7 and counts["texts_hash_cached"] == 0  # Q, Q lower, A, A_TYPO, A_OTHER, Q2, A2

    # new data: only its new texts are hashed and embedded, and it links to the cached rows (an unchanged rerun
    # writes no new version of any table: test_idempotence runs every stage twice)
    write_lake(spark, cfg, rows + [conv("a4", "cc", [("user", Q2), ("assistant", A_TYPO.upper())])])
    again = dedup.run(spark, cfg, "r2")
    assert again["texts_hashed"] == 1 and again["texts_hash_cached"] == 7 and again["texts_embedded"] == 1
    assert again["texts_from_cache"] == counts["texts_embedded"]
    now = edges_by_pair(spark, cfg)
    assert now[("a1", "a4")] == "related"  # same answer, another question
    assert {pair: kind for pair, kind in now.items() if "a4" not in pair} == edges  # the old edges stay as they were


@pytest.mark.slow  # 30-35 s: the slow tier keeps the default tier under 15 min (907 s on 2026-11-27)
def test_hostile_texts_do_not_crash_or_glue_a_giant_cluster(spark, make_config, tmp_path):
    cfg = make_config(raw_root=str(tmp_path), families=FAMILIES, dedup__max_bucket_size=50)
    rows = [
        conv("empty", "cc", [("user", ""), ("assistant", "")]),
        conv("blank", "cc", [("user", "   \n\t "), ("assistant", " ")]),
        conv("huge", "cc", [("user", Q), ("assistant", "I hear you. " * 90_000)]),  # ~1 MB answer
        conv("zh", "es", [("user", "我最近总是失眠，工作压力很大，不知道该怎么办才好。"),
                          ("assistant", "听起来你最近承受了很多压力。我们可以先从睡前的放松练习开始试试看。")]),
        conv("ar", "es", [("user", "أشعر بالقلق طوال الوقت ولا أستطيع النوم في الليل، ماذا أفعل؟"),
                          ("assistant", "القلق المستمر متعب جدا. دعنا نتحدث عن ما يقلقك أكثر هذه الأيام.")]),
        # one automated reply under 120 different questions: the answer is a template, not a duplicate
        *[conv(f"t{i:03d}", "cc", [("user", random_question(i)), ("assistant", TEMPLATE)]) for i in range(120)],
    ]
    write_lake(spark, cfg, rows)

    counts = dedup.run(spark, cfg, "r1")
    assert counts["largest_cluster"] <= 2  # the template glues nothing: different prompts make it related only
    assert counts["clusters_rows"] == len(rows)  # every conversation has a cluster row, none lost
    kinds = {}
    for kind in edges_by_pair(spark, cfg).values():
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.get("duplicate", 0) == 0
    assert counts["template_buckets_dropped"] > 0 or counts.get("edges_related", 0) > 0



def test_classify_edges_follows_the_prompt_rules(spark):
    """Answer pairs are duplicates when the prompts are the same text, both uninformative, lexically near
    (Jaccard >= threshold), or semantically near (cosine >= threshold and Jaccard >= floor); else related. Prompt
    pairs stay related unless the answer side of the same two conversations is a duplicate. A conversation without
    a prompt row is never a duplicate. Edges keep the pair's own scores and sources."""
    from etl.config import DedupConf

    conf = DedupConf(num_perm=10, jaccard_threshold=0.7, cosine_threshold=0.9, semantic_jaccard_floor=0.2)
    base = list(range(10))

    def sig(equal: int, offset: int) -> list[int]:  # `equal` of 10 positions shared with `base`
        return base[:equal] + [offset + i for i in range(10 - equal)]

    unit = [1.0] + [0.0] * 3
    tilted = [0.95, 0.31224989991992, 0.0, 0.0]  # cosine 0.95 with `unit`
    away = [0.0, 1.0, 0.0, 0.0]  # cosine 0 with `unit`
    prompts = {  # conversation -> (prompt text hash, informative, signature, vector)
        "c1": ("P1", True, base, unit), "c2": ("P1", True, base, unit),
        "c3": ("U3", False, sig(0, 300), None), "c4": ("U4", False, sig(0, 400), None),
        "c5": ("L5", True, base, away), "c6": ("L6", True, sig(7, 600), unit),  # Jaccard exactly 0.7
        "c7": ("S7", True, base, unit), "c8": ("S8", True, sig(2, 800), tilted),  # Jaccard exactly the 0.2 floor
        "c9": ("F9", True, base, unit), "c10": ("F10", True, sig(1, 1000), tilted),
        "c11": ("W11", True, base, unit), "c12": ("W12", True, sig(1, 1200), unit),
        "c13": ("X13", True, base, unit),  # c14 has no prompt row
        "c17": ("M17", True, base, unit), "c18": ("M18", False, sig(0, 1800), None),  # one uninformative
        "c19": ("A19", True, base, unit), "c20": ("A20", True, sig(3, 2000), away),  # Jaccard 0.3, cosine 0
        "c21": ("N21", True, base, None), "c22": ("N22", True, sig(3, 2200), unit),  # no vector on one side
    }
    features = spark.createDataFrame(
        [(c, "prompt", h, inf, s) for c, (h, inf, s, _) in prompts.items()],
        "conversation_id string, field string, text_hash string, informative boolean, signature array<bigint>")
    sigs = features.select("text_hash", "signature").dropDuplicates(["text_hash"])
    by_hash = {h: v for h, _, _, v in prompts.values() if v is not None}
    vectors = spark.createDataFrame(sorted(by_hash.items()), "text_hash string, vector array<double>")
    answer_pairs = [("c1", "c2"), ("c3", "c4"), ("c5", "c6"), ("c7", "c8"), ("c9", "c10"), ("c11", "c12"),
                    ("c13", "c14"), ("c17", "c18"), ("c19", "c20"), ("c21", "c22")]
    prompt_pairs = [("c1", "c2"), ("c9", "c10"), ("c15", "c16"), ("c1", "c9"), ("c9", "c2")]
    best = spark.createDataFrame(
        [("answer", a, b, 0.8, 0.95, "minhash") for a, b in answer_pairs]
        + [("prompt", a, b, 0.9, 0.97, "embedding") for a, b in prompt_pairs],
        "field string, a string, b string, jaccard double, cosine double, source string")

    got = sorted(tuple(r) for r in dedup.classify_edges(best, features, sigs, vectors, conf).select(
        "conversation_id_a", "conversation_id_b", "kind", "field", "jaccard", "cosine", "source").collect())

    def answer(a, b, kind):
        return (a, b, kind, "conversation" if kind == "duplicate" else "answer", 0.8, 0.95, "minhash")

    def prompt(a, b):
        return (a, b, "related", "prompt", 0.9, 0.97, "embedding")

    assert got == sorted([
        answer("c1", "c2", "duplicate"),  # the same prompt text; its prompt pair is dropped (already a duplicate)
        answer("c3", "c4", "duplicate"),  # both prompts uninformative
        answer("c5", "c6", "duplicate"),  # Jaccard 0.7 = the threshold, although the vectors point apart
        answer("c7", "c8", "duplicate"),  # cosine 0.95 >= 0.9 and Jaccard 0.2 = the floor
        answer("c9", "c10", "related"),  # cosine 0.95 but Jaccard 0.1 under the floor
        prompt("c9", "c10"),  # not a duplicate on the answer side: the prompt pair stays
        answer("c11", "c12", "related"),  # the same vector, Jaccard 0.1
        answer("c13", "c14", "related"),  # c14 has no prompt row
        answer("c17", "c18", "related"),  # only one prompt uninformative
        answer("c19", "c20", "related"),  # Jaccard 0.3 over the floor, but cosine 0
        answer("c21", "c22", "related"),  # Jaccard 0.3, no vector for c21's prompt: no cosine
        prompt("c15", "c16"),
        prompt("c1", "c9"), prompt("c9", "c2"),  # c1 and c2 are duplicates of each other, not of c9
    ])




def test_embedding_path_sends_a_few_texts_to_a_local_driver_and_the_rest_to_tasks():
    assert dedup.embedding_path(0, 2000, True) == "none"
    assert dedup.embedding_path(2000, 2000, True) == "driver"
    assert dedup.embedding_path(2001, 2000, True) == "tasks"
    assert dedup.embedding_path(1, 2000, False) == "tasks"  # a cluster: the executors hold cores, GPUs, model files
    assert dedup.embedding_path(1, 0, True) == "tasks"  # 0: never the driver


def test_on_a_cluster_a_driver_without_a_gpu_sizes_cuda_tasks(spark, make_config, tmp_path, monkeypatch):
    """dedup.embeddings.device cuda on a cluster whose driver has no GPU: embed_missing sizes the Spark tasks for
    the executors' GPUs (batch 256) instead of refusing the setting because the driver's torch sees none."""
    import torch

    from etl.dedup import udfs

    class Sized(Exception):
        pass

    def record(_spark, _texts, n_texts, batch_size):
        raise Sized(n_texts, batch_size)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(udfs, "runs_locally", lambda _spark: False)
    monkeypatch.setattr(udfs, "embedding_tasks", record)
    cfg = make_config(raw_root=str(tmp_path), dedup__embeddings__device="cuda")
    texts = spark.createDataFrame([("h0", Q)], "text_hash string, text string")
    with pytest.raises(Sized) as sized:
        dedup.embed_missing(spark, cfg, texts, "r1")
    assert sized.value.args == (1, 256)


def test_a_few_missing_texts_are_embedded_in_the_driver_without_arrow(spark, make_config, tmp_path, monkeypatch):
    """A local master and Arrow off (spark-submit's default): the driver embeds, unit vectors land in the cache."""
    import numpy as np

    from etl.dedup import udfs

    monkeypatch.setattr(udfs, "embed_fn", lambda *a: pytest.fail("the Spark tasks path ran"))
    texts = spark.createDataFrame([("h0", Q), ("h3", Q2)], "text_hash string, text string")
    cfg = make_config(raw_root=str(tmp_path))
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "false")
    try:
        vectors, counts = dedup.embed_missing(spark, cfg, texts, "r1")
        got = {r["text_hash"]: np.array(r["vector"]) for r in vectors.collect()}
    finally:
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    assert counts == {"texts_embedded": 2, "texts_from_cache": 0, "embedded_in": "driver"}
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-3 for v in got.values())
    assert float(np.dot(got["h0"], got["h3"])) < 0.9  # different questions stay apart
    with pytest.raises(ConfigError, match="dedup.embeddings.driver_max_texts"):
        make_config(raw_root=str(tmp_path), dedup__embeddings__driver_max_texts=-1)


@pytest.mark.slow  # Spark tasks with Python workers three times, about 37 s: the slow tier
def test_embed_missing_counts_and_routes_by_the_missing_texts_alone(spark, make_config, tmp_path, monkeypatch):
    """Up to driver_max_texts missing texts go to the driver; more (or a limit of 0) go to Spark tasks, with a local
    master too; cached texts are embedded by neither, and the counts say so. A stand-in model
    (one vector per text) replaces the real one, whose paths are tested above."""
    import numpy as np
    import pandas as pd

    from etl.dedup import embedder, udfs
    from etl.schemas import EMBEDDINGS

    def fake_vector(text: str) -> list[float]:
        return [float(len(text)), 1.0, 0.0, 0.0]

    ran = []
    monkeypatch.setattr(embedder, "embed_texts", lambda texts, conf, gpu=None: (
        ran.append(("driver", len(texts))) or np.array([fake_vector(t) for t in texts])))

    def fake_embed_fn(conf, key, threads=0):
        ran.append(("tasks", None))

        def embed(batches):
            for batch in batches:
                yield pd.DataFrame({"text_hash": batch["text_hash"], "model": key,
                                    "vector": [fake_vector(t) for t in batch["text"].fillna("")]})
        return embed

    monkeypatch.setattr(udfs, "embed_fn", fake_embed_fn)
    texts = [(f"h{i}", "x" * (i + 1)) for i in range(6)]
    steps = [(texts[:3], 2, "tasks", 3), (texts[:5], 2, "driver", 2), (texts, 0, "tasks", 1)]
    for rows, limit, path, embedded in steps:
        ran.clear()
        cfg = make_config(raw_root=str(tmp_path), dedup__embeddings__driver_max_texts=limit)
        frame = spark.createDataFrame(rows, "text_hash string, text string").persist()
        try:
            vectors, counts = dedup.embed_missing(spark, cfg, frame, "r1")
            got = {r["text_hash"]: list(r["vector"]) for r in vectors.collect()}
        finally:
            frame.unpersist()
        assert counts == {"texts_embedded": embedded, "texts_from_cache": len(rows) - embedded, "embedded_in": path}
        assert [r[0] for r in ran] == ([path] if embedded else [])
        assert got == {h: fake_vector(t) for h, t in rows}
    assert delta.read_table(spark, cfg, EMBEDDINGS).count() == 6  # each text embedded once


@pytest.mark.slow  # two model loads (a Python worker and the driver), about 40 s: the slow tier
def test_a_few_missing_texts_are_embedded_in_the_driver_with_the_vectors_tasks_give(spark, make_config, tmp_path,
                                                                                   monkeypatch):
    """The same texts through Spark tasks (a cluster) and through the driver (local master, Arrow off as under
    spark-submit's defaults): the same vectors, both in the cache. The path is checked by the function that ran."""
    import numpy as np

    from etl.dedup import udfs

    ran = []
    on_driver, embed_fn = dedup.embed_on_driver, udfs.embed_fn
    monkeypatch.setattr(dedup, "embed_on_driver", lambda *a: ran.append("driver") or on_driver(*a))
    monkeypatch.setattr(udfs, "embed_fn", lambda *a: ran.append("tasks") or embed_fn(*a))
    texts = spark.createDataFrame([(f"h{i}", t) for i, t in enumerate([Q, A, A_OTHER, Q2])],
                                  "text_hash string, text string")
    got = {}
    for path in ("tasks", "driver"):
        cfg = make_config(raw_root=str(tmp_path), lake_root=str(tmp_path / path))
        with monkeypatch.context() as m:
            if path == "tasks":
                m.setattr(udfs, "runs_locally", lambda _spark: False)
            else:
                spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "false")
            try:
                vectors, counts = dedup.embed_missing(spark, cfg, texts, "r1")
                got[path] = {r["text_hash"]: np.array(r["vector"]) for r in vectors.collect()}
            finally:
                spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        assert counts == {"texts_embedded": 4, "texts_from_cache": 0, "embedded_in": path} and ran == [path]
        ran.clear()
    assert set(got["tasks"]) == set(got["driver"]) == {"h0", "h1", "h2", "h3"}
    for h, v in got["tasks"].items():
        assert float(np.dot(v, got["driver"][h])) > 0.999, h
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-3
    assert float(np.dot(got["driver"]["h0"], got["driver"]["h3"])) < 0.9  # different questions stay apart


def test_the_text_embedded_for_a_hash_is_its_shortest_raw_variant_whatever_the_row_order(spark):
    from etl import contract

    variants = ["Caf&eacute; visits make me anxious, what can I do?", "Café visits make me anxious, what can I do?",
                "Café  visits make me anxious,  what can I do?"]
    assert len({contract.text_hash(v) for v in variants}) == 1
    for order in (variants, variants[::-1]):
        conv = spark.createDataFrame(
            [(f"c{i}", f"h{i}", [{"role": "user", "content": t}, {"role": "assistant", "content": A}])
             for i, t in enumerate(order)],
            "conversation_id string, content_hash string, messages array<struct<role:string,content:string>>")
        features = spark.createDataFrame(
            [(f"c{i}", "prompt", contract.text_hash(t), True) for i, t in enumerate(order)],
            "conversation_id string, field string, text_hash string, informative boolean")
        got = [(r.text_hash, r.text) for r in dedup.informative_texts(conv, features).collect()]
        assert got == [(contract.text_hash(variants[0]), variants[1])]  # no entity, no double spaces
