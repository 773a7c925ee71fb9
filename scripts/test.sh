#!/usr/bin/env bash
# Set up what is missing, then run the whole test suite (one SparkSession for the session).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m pytest -q -p no:cacheprovider "$@" tests
