#!/usr/bin/env bash
# The kernels on one GPU, in one command from the repository root (about 9 minutes on an H200 before the
# gated delta rule joined; its tests, sanitizer cases, bf16 errors and benchmark rows add to each step, whose
# budgets below were not re-measured with it: TESTS_S, BENCH_OPS, BF16_OPS and SANITIZER_K trim them):
#
#   bash benchmarks/gpu_check.sh            # logs to $OUT (default ./gpu-check-out)
#
#   1. tests/kernels/gpu: the small cases and, beside them, the large ones (pytest-xdist workers when the
#      image has it)                                     -> gpu-tests-{small,large}.log and .xml
#   2. the small cases SANITIZER_K selects once more under compute-sanitizer memcheck, one pytest process,
#      every autotuning config run once (KERNELS_AUTOTUNE=once), no caching allocator -> sanitizer.log;
#      beside it benchmarks/bf16_errors.py on BF16_OPS (where each op's bf16 error comes from, and how it
#      moves with the warp count) -> bf16-errors.log; with WARPS_BISECT=1 also issue 11's SSD fp32 case at
#      4 and at 8 warps -> ssd-fp32-w{4,8}.log
#   3. benchmarks/kernels.py (BENCH_OPS) with the anchors found in .anchors/ (or $MAMBA_SSM_SRC, $FLA_SRC,
#      $MAMBA_SCAN_SO)
#                                                        -> bench.log, kernels_h200.md
#
# A step that fails or runs out of its time does not stop the next; the exit code of each is in the
# table printed at the end (124: out of time). Step budgets in seconds: TESTS_S, SANITIZER_S, BENCH_S,
# BF16_S. TESTS (and SANITIZER_TESTS) pick the test files; BENCH_ARGS adds to kernels.py's options. Every
# log comes back in gpu-check-logs.tgz, the benchmark's table beside it.
set -uo pipefail

OUT=${OUT:-./gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
TESTS_S=${TESTS_S:-300}
SANITIZER_S=${SANITIZER_S:-120}
BENCH_S=${BENCH_S:-190}
BF16_S=${BF16_S:-150}
TESTS=${TESTS:-tests/kernels/gpu}  # the test files (one op's: tests/kernels/gpu/test_delta_gpu.py)
SANITIZER_TESTS=${SANITIZER_TESTS:-$TESTS}
cd "$(dirname "$0")/.."
start=$(date +%s)

has() { "$PY" -c "import $1" 2>/dev/null; }
timeout_opt=(); has pytest_timeout && timeout_opt=(--timeout 240)
small_workers=(); large_workers=()  # pytest-xdist: compiling the kernels is most of the time
has xdist && small_workers=(-n 6) && large_workers=(-n 4)

{
    nvidia-smi -L 2>&1 || true
    "$PY" -c "import sys, torch, triton; print(sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
    git log -1 --format='commit %h %s' 2>/dev/null || true
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

: > "$OUT/steps.tsv"
run_step() {  # name, seconds, log, command...: one line "name<TAB>exit code<TAB>seconds" in steps.tsv
    local name=$1 limit=$2 log=$3; shift 3
    local t0 code; t0=$(date +%s)
    echo "== $name (up to ${limit} s) -> $log"
    timeout -k 10 "$limit" "$@" > "$log" 2>&1
    code=$?
    printf '%s\t%s\t%s\n' "$name" "$code" "$(( $(date +%s) - t0 ))" >> "$OUT/steps.tsv"
    echo "   $name: exit $code after $(( $(date +%s) - t0 )) s"
}

# 1. small and large tests side by side (a large one holds up to ~20 GB in fp64: three at a time at most)
pytest_common=(-m gpu -p no:cacheprovider -rfE --durations=10 "${timeout_opt[@]}")
run_step "tests small" "$TESTS_S" "$OUT/gpu-tests-small.log" \
    "$PY" -m pytest $TESTS -k small "${small_workers[@]}" "${pytest_common[@]}" \
    --junitxml="$OUT/gpu-tests-small.xml" &
small_pid=$!
run_step "tests large" "$TESTS_S" "$OUT/gpu-tests-large.log" \
    "$PY" -m pytest $TESTS -k large "${large_workers[@]}" "${pytest_common[@]}" \
    --junitxml="$OUT/gpu-tests-large.xml"
wait "$small_pid"
cat "$OUT/gpu-tests-small.log" "$OUT/gpu-tests-large.log" > "$OUT/gpu-tests.log"

# 2. memcheck: every config once, no timing loops, on the small cases SANITIZER_K selects. Without torch's
# caching allocator each tensor is its own allocation, so a read past its end is caught, not hidden in a
# pool. Beside it, where the bf16 error comes from (BF16_OPS; empty: none), and with WARPS_BISECT=1 issue 11's SSD fp32
# case with every dot kernel held to 4 and to 8 warps, each in its own process (an illegal access ends the
# process's CUDA context).
if [ "${WARPS_BISECT:-0}" = 1 ]; then
    for w in 4 8; do
        KERNELS_WARPS=$w run_step "ssd fp32 w$w" 120 "$OUT/ssd-fp32-w$w.log" \
            "$PY" -m pytest tests/kernels/gpu/test_ssd_gpu.py -k "small and fp32 and T37" -m gpu -p no:cacheprovider \
            -rfE -q "${timeout_opt[@]}" &
    done
fi
[ -n "${BF16_OPS-mlstm,delta}" ] && run_step "bf16 errors" "$BF16_S" "$OUT/bf16-errors.log" \
    "$PY" benchmarks/bf16_errors.py --ops "${BF16_OPS-mlstm,delta}" &
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$sanitizer" ]; then
    KERNELS_AUTOTUNE=once PYTORCH_NO_CUDA_MEMORY_CACHING=1 run_step "sanitizer" "$SANITIZER_S" "$OUT/sanitizer.log" \
        "$sanitizer" --tool memcheck --error-exitcode 1 --print-limit 20 \
        "$PY" -m pytest $SANITIZER_TESTS -k "${SANITIZER_K:-small and not T1000}" \
        -m gpu -p no:cacheprovider -rfE "${timeout_opt[@]}"
else
    echo "compute-sanitizer not found (PATH, /usr/local/cuda*/bin)" | tee "$OUT/sanitizer.log"
    printf 'sanitizer\t127\t0\n' >> "$OUT/steps.tsv"
fi
wait

# 3. the benchmark, with what anchors there are; mLSTM first (issue 11's refused rows), each row printed as
# it is measured, so a step cut short keeps what it finished
anchors=()
mamba_src=${MAMBA_SSM_SRC:-.anchors}
fla_src=${FLA_SRC:-.anchors/fla_src}
[ -d "$mamba_src/mamba_ssm" ] && anchors+=(--mamba-ssm-src "$mamba_src")
[ -d "$fla_src/fla" ] && anchors+=(--fla-src "$fla_src")
scan_so=${MAMBA_SCAN_SO:-.anchors/selective_scan_anchor.so}  # benchmarks/scan_anchor/build.sh
[ -f "$scan_so" ] && anchors+=(--mamba-scan-so "$scan_so")
run_step "bench" "$BENCH_S" "$OUT/bench.log" \
    "$PY" benchmarks/kernels.py --ops "${BENCH_OPS:-ssd,mlstm,selective_scan,gated_delta}" --out "$OUT/kernels_h200.md" "${anchors[@]}" \
    --anchor-timeout "${ANCHOR_S:-120}" --compile-timeout 45 ${BENCH_ARGS:-}

# summary: one line a step
result() {
    case $1 in
        ssd*w*) grep -E "[0-9]+ (passed|failed|skipped|error)" "$OUT/ssd-fp32-${1#ssd fp32 }.log" | tail -1 | tr -d '=' ;;
        tests*) grep -E "[0-9]+ (passed|failed|skipped|error)" "$OUT/gpu-tests-${1#tests }.log" | tail -1 | tr -d '=' ;;
        sanitizer) grep -q "ERROR SUMMARY" "$OUT/sanitizer.log" || { tail -1 "$OUT/sanitizer.log"; return; }
            echo "$(grep -h "ERROR SUMMARY" "$OUT/sanitizer.log" | tail -1);" \
                "$(grep -E "[0-9]+ (passed|failed|skipped|error)" "$OUT/sanitizer.log" | tail -1 | tr -d '=')" ;;
        bench) echo "$(grep -c '^| triton (ours)' "$OUT/bench.log") rows of ours," \
            "$(grep -c '| refused' "$OUT/bench.log") refused, $(grep -c 'not available' "$OUT/bench.log") anchors not available" ;;
        *) echo "see $OUT" ;;
    esac
}
echo
printf '%-12s %4s %5s  %s\n' step exit secs result
while IFS=$'\t' read -r name code took; do
    printf '%-12s %4s %5s  %s\n' "$name" "$code" "$took" "$(result "$name" 2>/dev/null | sed 's/^ *//')"
done < "$OUT/steps.tsv"
echo
grep -hE "^(FAILED|ERROR) " "$OUT/gpu-tests.log" "$OUT/sanitizer.log" 2>/dev/null | cut -c1-220 | head -30
grep -h "^| triton (ours)\|^## " "$OUT/bench.log" 2>/dev/null | cut -c1-160
echo "total $(( $(date +%s) - start )) s; logs in $OUT"
# every log in one archive (a run brings back few files), the table beside it
tar -czf /tmp/gpu-check-logs.tgz -C "$OUT" --exclude kernels_h200.md . \
    && find "$OUT" -maxdepth 1 -type f ! -name kernels_h200.md -delete && mv /tmp/gpu-check-logs.tgz "$OUT/"
