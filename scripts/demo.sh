#!/usr/bin/env bash
# Set up what is missing, write the built-in sample raw tree, and run the whole pipeline on it, uploading the
# release to a loopback S3 server (moto) that the demo starts and stops. No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m etl demo --conf conf/sample.yaml "$@"
