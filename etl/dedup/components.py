"""Deterministic connected components with a size cap, for clustering verified near-duplicate edges.

Edges are merged strongest first (ties by node pair), and a merge that would make a component larger than
`max_size` is skipped and counted: a template sentence shared by thousands of rows links weak pairs, and those
must not glue whole families into one cluster. The label of a component is the index of its member with the
smallest order key (e.g. smallest content_hash), so ids do not depend on edge or row order.
"""

from __future__ import annotations

import numpy as np

_SIZE_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def _edge_order(edges_a: np.ndarray, edges_b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Indices of edges by descending weight, then ascending (min node, max node)."""
    lo, hi = np.minimum(edges_a, edges_b), np.maximum(edges_a, edges_b)
    pair = lo * (hi.max() + 1) + hi if len(hi) else hi  # one int64 key for (lo, hi): a 2-key lexsort is ~2x faster
    return np.lexsort((pair, -weights))


def _ordered_keys_rank(node_order_keys, n_nodes: int) -> np.ndarray:
    """Rank of each node's order key (ties by index), so labels compare ints instead of strings."""
    keys = np.asarray(node_order_keys)
    if keys.dtype.kind == "U":
        try:
            keys = keys.astype("S")  # ASCII keys (hex hashes) sort 2x faster as bytes, in the same order
        except UnicodeEncodeError:
            pass
    if keys.shape != (n_nodes,):
        raise ValueError(f"node_order_keys must have one key per node ({n_nodes}), got shape {keys.shape}")
    order = np.argsort(keys, kind="stable")  # stable: equal keys fall back to node index
    rank = np.empty(n_nodes, dtype=np.int64)
    rank[order] = np.arange(n_nodes, dtype=np.int64)
    return rank


def size_histogram(sizes: np.ndarray) -> dict[str, int]:
    """Component counts by size bucket, e.g. {"1": 900, "2": 40, "3-4": 7, ..., ">=1000": 0}."""
    out: dict[str, int] = {}
    edges = list(_SIZE_BUCKETS) + [None]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi is None:
            label, mask = f">={lo}", sizes >= lo
        elif hi == lo + 1:
            label, mask = str(lo), sizes == lo
        else:
            label, mask = f"{lo}-{hi - 1}", (sizes >= lo) & (sizes < hi)
        out[label] = int(np.count_nonzero(mask))
    return out


def connected_components(
    n_nodes: int,
    edges_a,
    edges_b,
    weights,
    node_order_keys,
    max_size: int,
) -> tuple[np.ndarray, dict]:
    """Union-find over edges (strongest first) capped at `max_size` members per component.

    Returns (labels, stats): labels[i] is the index of the member of i's component with the smallest
    order key; stats has components, largest, skipped_edges, self_loops and a size histogram.
    """
    edges_a = np.asarray(edges_a, dtype=np.int64)
    edges_b = np.asarray(edges_b, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if not (edges_a.shape == edges_b.shape == weights.shape) or edges_a.ndim != 1:
        raise ValueError("edges_a, edges_b and weights must be 1-D arrays of the same length")
    if len(edges_a) and (min(edges_a.min(), edges_b.min()) < 0 or max(edges_a.max(), edges_b.max()) >= n_nodes):
        raise ValueError(f"edge endpoints must be node indices in [0, {n_nodes})")
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    rank = _ordered_keys_rank(node_order_keys, n_nodes)

    order = _edge_order(edges_a, edges_b, weights)
    parent = list(range(n_nodes))
    size = [1] * n_nodes
    skipped = 0
    self_loops = 0
    # Plain Python loop over sorted edges: union-find is sequential by nature; lists beat numpy scalars here.
    for a, b in zip(edges_a[order].tolist(), edges_b[order].tolist()):
        ra = a  # find with path halving, inlined: this loop is the hot path (~1M edges/s)
        while parent[ra] != ra:
            parent[ra] = parent[parent[ra]]
            ra = parent[ra]
        rb = b
        while parent[rb] != rb:
            parent[rb] = parent[parent[rb]]
            rb = parent[rb]
        if ra == rb:
            self_loops += a == b
            continue
        if size[ra] + size[rb] > max_size:
            skipped += 1
            continue
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]

    roots = np.asarray(parent, dtype=np.int64)
    while True:  # pointer jumping finishes path compression for every node at once
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            break
        roots = jumped
    # label = node with the smallest rank among the members of each root
    best_rank = np.full(n_nodes, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best_rank, roots, rank)
    node_by_rank = np.empty(n_nodes, dtype=np.int64)
    node_by_rank[rank] = np.arange(n_nodes, dtype=np.int64)
    labels = node_by_rank[best_rank[roots]]

    sizes = np.bincount(roots, minlength=n_nodes)
    sizes = sizes[sizes > 0]
    stats = {
        "nodes": int(n_nodes),
        "edges": int(len(edges_a)),
        "components": int(len(sizes)),
        "largest": int(sizes.max()) if len(sizes) else 0,
        "skipped_edges": int(skipped),
        "self_loops": int(self_loops),
        "sizes": size_histogram(sizes),
    }
    return labels, stats
