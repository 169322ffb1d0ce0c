#!/usr/bin/env bash
# `nas demo --gpu` on a GPU machine, timed, with the GPUs sampled, its store kept (docs/gpu-studies.md):
#
#   OUT=./gpu-demo bash benchmarks/gpu_demo.sh        # -> $OUT/nas/{studies.db,mlflow.db}, demo.log, dmon.log
#   bash benchmarks/gpu_demo.sh --summary DIR...      # the summary line of runs kept before (demo.log, dmon.log)
#
# The study's SQLite store and MLflow store land in $OUT/nas (NAS_HOME), so that `nas pareto demo-gpu` and the
# dashboard can be shown on them on another machine afterwards (NAS_HOME=$OUT/nas nas dashboard). The last
# line: the demo's wall time, and the mean SM utilisation and peak memory of `nvidia-smi dmon` (every 2 s).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

summary() {  # DIR: its demo.log's wall time; its dmon.log's mean SM % and peak framebuffer MB
    "$PY" - "$1" <<'PYEOF'
import re, statistics, sys
from pathlib import Path
d = Path(sys.argv[1])
wall = re.findall(r"nas demo --gpu: exit (\d+) after (\d+) s", (d / "demo.log").read_text())
lines = (d / "dmon.log").read_text().splitlines()
cols = next(l for l in lines if l.startswith("# gpu")).lstrip("# ").split()
rows = [l.split() for l in lines if l.strip() and not l.startswith("#")]
sm = [float(r[cols.index("sm")]) for r in rows if r[cols.index("sm")] != "-"]
fb = [float(r[cols.index("fb")]) for r in rows if r[cols.index("fb")] != "-"]
code, seconds = wall[-1] if wall else ("?", "?")
print(f"{d}: exit {code} after {seconds} s; {len(rows)} GPU samples, mean SM {statistics.mean(sm):.0f}%, "
      f"peak memory {max(fb) / 1000:.1f} GB")
PYEOF
}

if [ "${1:-}" = "--summary" ]; then
    shift
    for d in "$@"; do summary "$d"; done
    exit 0
fi

OUT=${OUT:-./gpu-demo}
LIMIT=${LIMIT:-900}  # seconds: the demo's promise is 15 minutes on an H200
mkdir -p "$OUT/nas"
export PYTHONUNBUFFERED=1
dmon=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 2 > "$OUT/dmon.log" 2>&1 & dmon=$!
fi
t0=$(date +%s)
NAS_HOME="$OUT/nas" timeout -k 10 "$LIMIT" "$PY" -m nas.cli demo --gpu > "$OUT/demo.log" 2>&1
code=$?
echo "nas demo --gpu: exit $code after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/demo.log"
[ -n "$dmon" ] && kill "$dmon" 2>/dev/null
tail -25 "$OUT/demo.log"
[ -n "$dmon" ] && summary "$OUT"
exit $code
