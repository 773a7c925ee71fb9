"""Duplicate clusters: connected components of the duplicate relation, with deterministic ids and canonicals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.dedup.components import connected_components
from etl.schemas import DUP_CLUSTERS_SCHEMA

REASON_SINGLETON, REASON_EXACT, REASON_NEAR, REASON_CAPPED = "singleton", "exact", "near", "capped"


def label_members(nodes: pd.DataFrame, edges: pd.DataFrame, max_size: int) -> tuple[pd.DataFrame, dict]:
    """nodes(conversation_id, content_hash), edges(a, b, weight) -> one row per clustered node (pure pandas).

    The canonical member is the smallest (content_hash, conversation_id); the cluster id is its id, so reruns
    and later releases agree whatever the edge order.
    """
    nodes = nodes.sort_values(["content_hash", "conversation_id"]).reset_index(drop=True)
    index = pd.Series(np.arange(len(nodes)), index=nodes["conversation_id"])
    a = index.loc[edges["a"]].to_numpy()
    b = index.loc[edges["b"]].to_numpy()
    keys = np.arange(len(nodes))  # nodes are sorted by (content_hash, id): position is the order key
    labels, stats = connected_components(len(nodes), a, b, edges["weight"].to_numpy(), keys, max_size)
    out = pd.DataFrame({"conversation_id": nodes["conversation_id"],
                        "cluster_id": nodes["conversation_id"].to_numpy()[labels],
                        "content_hash": nodes["content_hash"]})
    out["is_canonical"] = out["conversation_id"] == out["cluster_id"]
    out["cluster_size"] = out.groupby("cluster_id")["conversation_id"].transform("size").astype("int32")
    distinct_hashes = out.groupby("cluster_id")["content_hash"].transform("nunique")
    out["reason"] = np.where(distinct_hashes == 1, REASON_EXACT, REASON_NEAR)
    capped = set(out["cluster_id"].to_numpy()[a[labels[a] != labels[b]]]) | set(
        out["cluster_id"].to_numpy()[b[labels[a] != labels[b]]]) if len(a) else set()
    out.loc[out["cluster_id"].isin(capped), "reason"] = REASON_CAPPED
    out = out[out["cluster_size"] > 1]
    stats = {"clusters": int(out["cluster_id"].nunique()), "clustered_rows": int(len(out)),
             "largest_cluster": int(out["cluster_size"].max()) if len(out) else 1,
             "capped_clusters": len(capped), "skipped_edges": int(stats.get("skipped_edges", 0))}
    return out.drop(columns=["content_hash"]), stats


def duplicate_clusters(spark: SparkSession, conv: DataFrame, edges: DataFrame, max_size: int) -> tuple[DataFrame, dict]:
    """Every conversation with its cluster; the (small) duplicate edge list is clustered on the driver."""
    dup = edges.where(F.col("kind") == "duplicate").select(
        F.col("conversation_id_a").alias("a"), F.col("conversation_id_b").alias("b"),
        (F.coalesce("jaccard", F.lit(0.0)) + F.coalesce("cosine", F.lit(0.0))).alias("weight"))
    ids = dup.select(F.col("a").alias("conversation_id")).union(dup.select(F.col("b").alias("conversation_id")))
    nodes = conv.join(ids.distinct(), "conversation_id", how="inner").select("conversation_id", "content_hash")
    members, stats = label_members(nodes.toPandas(), dup.toPandas(), max_size)
    schema = DUP_CLUSTERS_SCHEMA
    clustered = spark.createDataFrame(members[[f.name for f in schema.fields]], schema) if len(members) else (
        spark.createDataFrame([], schema))
    singles = (conv.join(clustered.select("conversation_id"), "conversation_id", how="left_anti")
               .select("conversation_id", F.col("conversation_id").alias("cluster_id"),
                       F.lit(True).alias("is_canonical"), F.lit(1).cast("int").alias("cluster_size"),
                       F.lit(REASON_SINGLETON).alias("reason")))
    return clustered.unionByName(singles), stats
