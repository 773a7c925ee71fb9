#!/usr/bin/env bash
# Submit the pipeline with spark-submit. Same arguments as `python -m etl`:
#   ./spark-submit.sh run --conf conf/sample.yaml                         # local mode (default profile)
#   ./spark-submit.sh --profile standalone --master spark://127.0.0.1:7077 run --conf conf/sample.yaml
#   ./spark-submit.sh --profile emr run --conf conf/prod.yaml              # on the EMR primary node / as a step
#   ./spark-submit.sh --profile databricks                                  # builds the wheel for a python_wheel_task
#   ./spark-submit.sh bench --n 10000 --out out/bench                       # scale benchmark
# Profiles pass Delta settings only where the platform lacks them (EMR and Databricks provide Delta).
# Extra spark-submit options: SPARK_SUBMIT_OPTS_EXTRA="--executor-memory 8g ...". Exits with the job's exit code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
profile=local
master=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --master) master="$2"; shift 2 ;;
    --master=*) master="${1#*=}"; shift ;;
    *) break ;;
  esac
done
cd "$here"
PY=${PYTHON:-python3}

package() {
  # The code travels as a zip for --py-files (cluster executors import etl from it) and as a wheel.
  mkdir -p dist
  rm -f dist/etl.zip
  $PY - <<'PYEOF'
import os, zipfile
with zipfile.ZipFile("dist/etl.zip", "w", zipfile.ZIP_DEFLATED) as zf:
    for root, dirs, files in os.walk("etl"):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".yaml", ".typed")):
                zf.write(os.path.join(root, name))
PYEOF
}

delta_conf=(--conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
            --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog)
common_conf=(--conf spark.ui.showConsoleProgress=false --conf spark.sql.session.timeZone=UTC
             --conf "spark.pyspark.python=$PY" --conf "spark.pyspark.driver.python=$PY")

case "$profile" in
  local|standalone)
    bash scripts/bootstrap.sh
    package
    jars=$($PY -c "from etl.spark import delta_jars; print(','.join(delta_jars()))")
    if [ "$profile" = local ]; then master="${master:-local[*]}"; fi
    if [ -z "$master" ]; then echo "spark-submit.sh: --profile standalone needs --master spark://HOST:PORT" >&2; exit 2; fi
    # The real interpreter, not a pyenv/asdf shim: executors' Python workers start it directly.
    PY="$("$PY" -c 'import sys; print(sys.executable)')"
    # spark.log.level: the driver's log at WARN once the context is up (python -m etl sets ERROR itself).
    common_conf=(--conf spark.ui.showConsoleProgress=false --conf spark.sql.session.timeZone=UTC
                 --conf spark.log.level=WARN --conf "spark.pyspark.python=$PY" --conf "spark.pyspark.driver.python=$PY")
    submit=(spark-submit --master "$master" --jars "$jars" "${delta_conf[@]}" "${common_conf[@]}"
            --conf spark.sql.shuffle.partitions=8 --py-files dist/etl.zip)
    ;;
  emr)
    # EMR 8.x: Delta's jars come from the delta-defaults classification (delta.enabled=true); never add them.
    # The session still needs Delta's SQL extension and catalog (AWS's own examples pass both).
    package
    submit=(spark-submit --deploy-mode client "${delta_conf[@]}" --py-files dist/etl.zip)
    ;;
  databricks)
    # Databricks runs the wheel's console entry point (python_wheel_task, entry point therapy-etl).
    $PY -m pip wheel --no-deps -q -w dist .
    echo "built: $(ls dist/*.whl | tail -n 1); see README 'Databricks' for the job definition"
    exit 0
    ;;
  *) echo "spark-submit.sh: unknown profile '$profile' (local, standalone, emr, databricks)" >&2; exit 2 ;;
esac

export ETL_SPARK_SUBMIT=1 HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
set +e
# shellcheck disable=SC2086
"${submit[@]}" ${SPARK_SUBMIT_OPTS_EXTRA:-} scripts/etl_main.py "$@"
rc=$?
exit $rc
