#!/usr/bin/env bash
# Runs the fuzz targets one after another and prints, per target, the
# executions, libFuzzer's coverage (cov: edges, ft: features), the corpus,
# wall and CPU time, and the outcome. docs/fuzzing.md explains the targets.
#
#   fuzz/run.sh [SECONDS-PER-TARGET [TARGET...]]    (default: 60, every target)
#
# Each target runs over fuzz/corpus/<target> (grown by the runs, not
# committed) and fuzz/seeds/<target> (committed), with a 2 GB RSS limit, a
# per-target input size limit and a 10 s per-input timeout. A crash (a
# panic: a failed assertion, an overflow), a hang or an out-of-memory stops that target with its input saved under
# fuzz/artifacts/<target>/ and makes the script exit 1 after the others ran.
# Logs: fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-60}
shift || true
all=(ws_decode packet http_head command rest_query rest_body recovery_claim recovery_offset polling_payload ws_deflate bus_envelope session_entry)
targets=("$@")
(( ${#targets[@]} > 0 )) || targets=("${all[@]}")

# Largest input per target: enough for several frames/fields, small enough
# that every execution is cheap.
max_len() {
  case $1 in
    ws_decode | http_head) echo 8192 ;;
    packet | rest_body | polling_payload | bus_envelope) echo 4096 ;;
    command) echo 2048 ;;
    *) echo 1024 ;;
  esac
}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is needed (cargo install cargo-fuzz --locked)" >&2
  exit 1
fi

# No sanitizer: the code under test is safe Rust, where AddressSanitizer
# would only slow every execution down. Debug assertions and overflow
# checks are on (cargo fuzz's default).
cargo +nightly fuzz build -s none
bin=fuzz/target/x86_64-unknown-linux-gnu/release

mkdir -p fuzz/logs
failed=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=fuzz/logs/$t.log
  status=0
  # %e wall seconds, %U user, %S system CPU seconds of the fuzzer process.
  /usr/bin/time -f 'time: %e %U %S' -o "fuzz/logs/$t.time" \
    nice -n 5 "$bin/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
    >"$log" 2>&1 || status=$?
  # (Preceded by a "Command exited with non-zero status" line on failure.)
  read -r _ wall user sys < <(grep '^time:' "fuzz/logs/$t.time") || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  outcome=ok
  if (( status != 0 )); then
    failed=1
    outcome="FAILED (exit $status; see $log and fuzz/artifacts/$t/)"
  fi
  cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { printf "%.1f", u + s }')
  rows+=("$(printf '%-15s %12s %7s %7s %12s %8s %8s %7s  %s' "$t" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "${wall:-?}" "$cpu" "${rss:-?}" "$outcome")")
  echo "fuzz/run.sh: $t: $outcome" >&2
done

printf '%-15s %12s %7s %7s %12s %8s %8s %7s  %s\n' target execs cov ft corpus wall_s cpu_s rss_mb outcome
printf '%s\n' "${rows[@]}"
exit "$failed"
