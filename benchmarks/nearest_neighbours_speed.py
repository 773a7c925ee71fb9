"""Hard-negative neighbour search (`etl.generators.preference.nearest_neighbours`): wall time and peak memory.

    python benchmarks/nearest_neighbours_speed.py --n 20000 [--block-rows 1024]

Random 384-d vectors clustered around n/4 centres (so many prompts have neighbours in the cosine band), one split:
the shape of the hard-negative step of preference_pairs. `--block-rows n` reproduces the old whole-matrix search
(n x n similarities and masks) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl.generators import preference as pref  # noqa: E402


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 4), 384)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, 384)).astype(np.float32)
    return pd.DataFrame({"conversation_id": [f"c{i:07d}" for i in range(n)], "vector": list(vectors),
                         "cluster_id": [f"k{i // 3}" if i % 7 == 0 else None for i in range(n)],
                         "split_group": [f"g{i // 2}" for i in range(n)], "prompt_hash": [f"p{i // 5}" for i in range(n)]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--block-rows", type=int, default=1024)
    args = parser.parse_args(argv)
    df = frame(args.n)
    start = time.perf_counter()
    out = pref.nearest_neighbours(df, 0.6, 0.95, 5, block_rows=args.block_rows)
    print(json.dumps({"n": args.n, "block_rows": args.block_rows, "neighbours": len(out),
                      "wall_s": round(time.perf_counter() - start, 2),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
