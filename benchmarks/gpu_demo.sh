#!/usr/bin/env bash
# `nas demo --gpu` on a GPU machine, timed, with the GPUs sampled, its store kept (docs/gpu-studies.md):
#
#   OUT=./gpu-demo bash benchmarks/gpu_demo.sh        # -> $OUT/nas/{studies.db,mlflow.db}, demo.log, dmon.log
#
# The study's SQLite store and MLflow store land in $OUT/nas (NAS_HOME), so that `nas pareto demo-gpu` and the
# dashboard can be shown on them on another machine afterwards (NAS_HOME=$OUT/nas nas dashboard).
set -uo pipefail
OUT=${OUT:-./gpu-demo}
LIMIT=${LIMIT:-900}  # seconds: the demo's promise is 15 minutes on an H200
mkdir -p "$OUT/nas"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
dmon=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 2 > "$OUT/dmon.log" 2>&1 & dmon=$!
fi
t0=$(date +%s)
NAS_HOME="$OUT/nas" timeout -k 10 "$LIMIT" "${PYTHON:-python3}" -m nas.cli demo --gpu > "$OUT/demo.log" 2>&1
code=$?
echo "nas demo --gpu: exit $code after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/demo.log"
[ -n "$dmon" ] && kill "$dmon" 2>/dev/null
tail -25 "$OUT/demo.log"
exit $code
