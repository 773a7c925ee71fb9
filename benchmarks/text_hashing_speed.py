"""Speed of the per-turn text functions every hashing stage runs, against their plain reference definitions.

    python benchmarks/text_hashing_speed.py --lake out/bench_s8/n100000/lake --n 20000 --out out/text_hashing.json

`etl.contract.canonical_text` (under every content hash, text hash and turn key) and `etl.leakage.filler_only`
(the trivial-turn rule of splits, turn keys and the leakage gate) run once per turn of every conversation in
ingest, dedup, splits, preference_pairs and verify. Both are timed here against `etl.testing.reference` (the
definitions as written, which the code used before it was tuned) on the turns of the first `--n` conversations of
a lake, best of `--repeat` passes, and the outputs are compared: the script fails if any text differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from etl import contract, leakage  # noqa: E402
from etl.testing import reference  # noqa: E402


def best_of(fn, items, repeat: int) -> tuple[float, list]:
    best, out = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - started)
    return round(best, 3), out


def read_turns(lake: str, n: int) -> tuple[int, list[str]]:
    from etl.spark import get_spark

    spark = get_spark("text-hashing-speed")
    rows = spark.read.format("delta").load(os.path.join(lake, "conversations")).select("messages").limit(n).collect()
    spark.stop()
    return len(rows), [m["content"] for r in rows for m in r["messages"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True, help="a lake folder with a conversations table")
    ap.add_argument("--n", type=int, default=20000, help="conversations to read (their turns are timed)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="JSON report path")
    args = ap.parse_args(argv)
    n_rows, turns = read_turns(args.lake, args.n)
    report = {"lake": args.lake, "conversations": n_rows, "turns": len(turns),
              "chars": sum(map(len, turns)), "seconds": {}}
    canon = None
    for name, fast, ref, items in (("canonical_text", contract.canonical_text, reference.canonical_text, turns),
                                   ("filler_only", leakage.filler_only, reference.filler_only, None)):
        items = items if items is not None else canon
        t_ref, want = best_of(ref, items, args.repeat)
        t_fast, got = best_of(fast, items, args.repeat)
        if got != want:
            bad = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            print(f"{name}: output differs from the reference on turn {bad}: {items[bad][:80]!r}", file=sys.stderr)
            return 1
        canon = canon if canon is not None else want
        report["seconds"][name] = {"reference": t_ref, "current": t_fast, "speedup": round(t_ref / t_fast, 2)}
        print(f"{name}: reference {t_ref} s, current {t_fast} s ({t_ref / t_fast:.2f}x) on {len(items)} turns, "
              f"identical output")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
