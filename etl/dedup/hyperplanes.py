"""Random-hyperplane (SimHash) LSH over embedding vectors: `tables` bucket keys of `bits` sign bits each.

Two unit vectors at angle theta agree on one bit with probability 1 - theta / pi, so they share a table's
bucket with probability (1 - theta / pi) ** bits; several tables OR those chances together.
"""

from __future__ import annotations

import functools

import numpy as np

DEFAULT_SEED = 7
MAX_BITS = 62  # keeps the packed key non-negative in an int64


@functools.lru_cache(maxsize=16)
def _planes(dim: int, bits: int, tables: int, seed: int) -> np.ndarray:
    """(dim, tables * bits) float32 Gaussian normals, fixed by (dim, bits, tables, seed)."""
    rng = np.random.default_rng(seed)
    planes = rng.standard_normal((dim, tables * bits)).astype(np.float32)
    planes.setflags(write=False)
    return planes


def hyperplane_bands(vectors: np.ndarray, bits: int, tables: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(n, tables) int64 bucket keys: the sign pattern of `bits` projections per table, packed into an int."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be between 1 and {MAX_BITS}, got {bits}")
    if tables < 1:
        raise ValueError(f"tables must be >= 1, got {tables}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (n, d) array, got shape {vectors.shape}")
    n, dim = vectors.shape
    if n == 0:
        return np.empty((0, tables), dtype=np.int64)
    signs = (vectors @ _planes(dim, bits, tables, seed)) > 0  # (n, tables * bits)
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    return signs.reshape(n, tables, bits).astype(np.int64) @ weights


def bucket_probability(cosine: float, bits: int, tables: int) -> float:
    """Probability that two vectors with this cosine share at least one table's bucket."""
    theta = float(np.arccos(np.clip(cosine, -1.0, 1.0)))
    per_table = (1.0 - theta / np.pi) ** bits
    return 1.0 - (1.0 - per_table) ** tables
