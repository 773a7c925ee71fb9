#!/usr/bin/env bash
# Set up what is missing, then run the test suite (one SparkSession for the session).
#   bash scripts/test.sh           the default tier (under 15 min on 2 cores)
#   bash scripts/test.sh --slow    the slow tier: whole-pipeline repeats and multi-process runs (CI runs both)
#   bash scripts/test.sh --all     both tiers in one session
set -euo pipefail
cd "$(dirname "$0")/.."
tier=default
case "${1:-}" in
  --slow) tier=slow; shift ;;
  --all) tier=all; shift ;;
esac
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m pytest -q -p no:cacheprovider --tier "$tier" "$@" tests
