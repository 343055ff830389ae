#!/usr/bin/env bash
# Fuzzes gsoft's readers with libFuzzer (docs/reliability.md).
#   scripts/fuzz.sh [SECONDS] [READER...]     default: 60 seconds each, every reader
# Builds ./build-sanitize (scripts/build-sanitize.sh), then runs fuzz_<reader> for SECONDS with
# FUZZ_JOBS (default: the core count) targets at a time. Each starts from its seeds in
# fuzz/corpus/<reader>/ and the inputs earlier runs found (build-sanitize/fuzz/work/<reader>/).
# Crash inputs land in build-sanitize/fuzz/crashes/<reader>/, logs in build-sanitize/fuzz/logs/,
# and a table of executions, coverage and crashes in build-sanitize/fuzz/summary.md. Exits 1 if
# any target crashed. FUZZ_NO_BUILD=1 skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
all=(safetensors checkpoint_index lipconvnet adapter_config encoder_config tokenizer_json tokenize table idx cifar word_vectors)
readers=("$@")
[ ${#readers[@]} -eq 0 ] && readers=("${all[@]}")
for r in "${readers[@]}"; do
  [[ " ${all[*]} " == *" $r "* ]] || { echo "fuzz.sh: unknown reader '$r' (known: ${all[*]})" >&2; exit 2; }
done
[ "${FUZZ_NO_BUILD:-0}" = 1 ] || scripts/build-sanitize.sh >/dev/null
out=build-sanitize/fuzz
mkdir -p "$out/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local r=$1 seconds=$2 out=$3
  mkdir -p "$out/work/$r" "$out/crashes/$r"
  # -rss_limit_mb: a reader that allocates what the file merely announces shows up as an OOM crash.
  build-sanitize/fuzz/fuzz_"$r" "$out/work/$r" "fuzz/corpus/$r" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/crashes/$r/" \
    > "$out/logs/$r.log" 2>&1 || true
  echo "fuzz.sh: $r done"
}
export -f run_one
echo "fuzz.sh: ${#readers[@]} target(s), ${seconds} s each, ${FUZZ_JOBS:-$(nproc)} at a time"
printf '%s\n' "${readers[@]}" | xargs -P "${FUZZ_JOBS:-$(nproc)}" -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$out"

crashed=0
{
  echo "| reader | seconds | executions | exec/s | coverage (edges) | features | corpus | crashes |"
  echo "|---|---|---|---|---|---|---|---|"
  for r in "${readers[@]}"; do
    log="$out/logs/$r.log"
    # A target that died at start-up has no statistics: '?' rather than an abort here.
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2>/dev/null | tail -1 || true)
    cov=$( (grep -o 'cov: [0-9]*' "$log" 2>/dev/null || true) | tail -1 | cut -d' ' -f2)
    ft=$( (grep -o 'ft: [0-9]*' "$log" 2>/dev/null || true) | tail -1 | cut -d' ' -f2)
    corpus=$(find "$out/work/$r" -type f | wc -l)
    crashes=$(find "$out/crashes/$r" -type f | wc -l)
    [ "$crashes" -gt 0 ] && crashed=1
    echo "| $r | $seconds | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $corpus | $crashes |"
  done
} > "$out/summary.md"
cat "$out/summary.md"
[ $crashed = 0 ] || { echo "fuzz.sh: crashes found; see $out/crashes/ and $out/logs/" >&2; exit 1; }
