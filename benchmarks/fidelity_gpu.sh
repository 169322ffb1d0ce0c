#!/usr/bin/env bash
# docs/proxy-fidelity.md's test on a GPU machine: a grid of architectures at a small profile, several seeds
# each, then `nas fidelity` re-training every one of them at a larger profile, then the seeds' noise:
#
#   OUT=./fidelity-gpu bash benchmarks/fidelity_gpu.sh       # -> $OUT/nas/{studies.db,mlflow.db}, *.log
#   FROM=DIR OUT=... bash benchmarks/fidelity_gpu.sh         # go on from the stores a cut-off run left in DIR
#   bash benchmarks/fidelity_gpu.sh --rates LOG               # tokens/s of each task in a run's progress lines
#
# (git ignores *.db: a store brought back into the working tree travels to the GPU machine only where the
# run's `carry` names its folder; on a machine still warm, the copy the last call left in /tmp does too.)
#
# SPEC (studies/families-gpu-tiny.yaml), BIG (gpu-small), BIG_SEEDS (1: seeds per architecture at BIG),
# LIMIT (seconds for everything, 540), MPS (1: run the trials under the CUDA MPS daemon where the image has
# it; docs/gpu-studies.md measured 4 trials a GPU at 2.14x one alone with it, 1.74x without). Each step
# resumes what an earlier run finished, so a run cut off by LIMIT goes on from its stores with FROM.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "--rates" ]; then  # LOG: per task, the min / median / max of its "... 123K tok/s" lines
    "$PY" - "$2" <<'PYEOF'
import re, statistics, sys
rates = {}
for task, k in re.findall(r"^\s+trial \d+ \S+ (\w+) \d+/\d+ loss \S+ ([\d.]+)K tok/s", open(sys.argv[1]).read(), re.M):
    rates.setdefault(task, []).append(float(k))
for task, xs in sorted(rates.items(), key=lambda kv: -statistics.median(kv[1])):
    print(f"{task:28s} {min(xs):7.1f}K {statistics.median(xs):7.1f}K {max(xs):7.1f}K tok/s  ({len(xs)} lines)")
PYEOF
    exit
fi
SPEC=${SPEC:-studies/families-gpu-tiny.yaml}
BIG=${BIG:-gpu-small}
BIG_SEEDS=${BIG_SEEDS:-1}
LIMIT=${LIMIT:-540}
OUT=${OUT:-./fidelity-gpu}
NAME=$("$PY" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$SPEC") || exit 2
BIG_NAME=$("$PY" -c "import sys; from workers.profile import load_profile; print(load_profile(sys.argv[1]).name)" \
    "$BIG") || exit 2
mkdir -p "$OUT/nas"
if [ -n "${FROM:-}" ]; then
    ls "$FROM"/studies.db >/dev/null 2>&1 || { echo "FROM=$FROM holds no studies.db; give the folder a cut-off run \
left its store in (on a GPU machine, a folder the run's carry names: git ignores *.db)" >&2; exit 2; }
    cp -n "$FROM"/*.db "$OUT/nas/"
fi
export NAS_HOME="$OUT/nas" PYTHONUNBUFFERED=1
t0=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - t0) )); }

dmon=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 2 >> "$OUT/dmon.log" 2>&1 & dmon=$!
fi
mps=
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    nvidia-cuda-mps-control -d && mps=1 && echo "CUDA MPS daemon started" | tee -a "$OUT/run.log"
fi
finish() {
    [ -n "$mps" ] && echo quit | nvidia-cuda-mps-control
    [ -n "$dmon" ] && kill "$dmon" 2>/dev/null
    echo "fidelity_gpu.sh: $1 after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/run.log"
}

step() {  # LOG ARGS...: one nas command within the time left, its output appended to $OUT/LOG
    local log=$1; shift
    local s; s=$(left)
    if [ "$s" -le 20 ]; then echo "no time left for: nas $*" | tee -a "$OUT/run.log"; return 124; fi
    echo "\$ nas $* (within ${s} s)" >> "$OUT/$log"
    timeout -k 20 "$s" "$PY" -m nas.cli "$@" >> "$OUT/$log" 2>&1
    local code=$?
    echo "nas $1: exit $code at $(( $(date +%s) - t0 )) s" | tee -a "$OUT/run.log"
    return $code
}

step small.log run "$SPEC" || { finish "the small study is not finished"; exit 1; }
step big.log fidelity "$NAME" --profile "$BIG" --top 100 --sample 100 --seeds "$BIG_SEEDS" \
    || { finish "the fidelity study is not finished"; exit 1; }
step seeds.log seeds "$NAME"
step seeds.log status "$NAME"
step seeds.log status "$NAME-at-$BIG_NAME"
finish done
tail -40 "$OUT/big.log"
cat "$OUT/seeds.log"
