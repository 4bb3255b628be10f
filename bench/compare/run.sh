#!/usr/bin/env bash
# One measurement: a fresh comparison server pinned to core 0, one
# gatrix-chat-bench scenario pinned to core 1, under the shared machine's
# benchmark lock (/tmp/perf/BENCH_LOCK). Build first (see README.md); no
# compiles happen here.
#
#   bench/compare/run.sh node|socketioxide OUTDIR NAME -- <bench args>
#
# The literal PID in the bench args is replaced by the server's pid.
# Environment: PORT (default 3101), BENCH (the gatrix-chat-bench binary),
# JWT_SECRET (default the docs' benchmark secret).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kind=$1 out=$2 name=$3
shift 3
[ "${1:-}" = "--" ] && shift
export PORT=${PORT:-3101}
export JWT_SECRET=${JWT_SECRET:-benchsecret-0123456789abcdef0123456789}
bench=${BENCH:-$root/target/release/gatrix-chat-bench}
mkdir -p "$out"

case $kind in
  node) cmd=(node "$here/node/server.js") ;;
  socketioxide) cmd=("$here/socketioxide/target/release/compare-socketioxide") ;;
  *) echo "unknown server $kind" >&2; exit 2 ;;
esac

if ss -ltn | grep -q "127.0.0.1:$PORT "; then
  echo "port $PORT is taken" >&2; exit 1
fi

mkdir -p /tmp/perf
until mkdir /tmp/perf/BENCH_LOCK 2>/dev/null; do sleep 5; done
srv=
cleanup() {
  if [ -n "$srv" ]; then
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
  fi
  rmdir /tmp/perf/BENCH_LOCK 2>/dev/null || true
}
trap cleanup EXIT

taskset -c 0 "${cmd[@]}" 2>"$out/$name.server.log" &
srv=$!
for _ in $(seq 100); do
  ss -ltn | grep -q "127.0.0.1:$PORT " && break
  sleep 0.1
done
args=()
for a in "$@"; do args+=("${a//PID/$srv}"); done
echo "+ taskset -c 1 gatrix-chat-bench --server 127.0.0.1:$PORT ${args[*]}" | tee "$out/$name.txt"
set +e
taskset -c 1 "$bench" --server "127.0.0.1:$PORT" "${args[@]}" >>"$out/$name.txt" 2>&1
rc=$?
set -e
echo "exit $rc" >>"$out/$name.txt"
grep -v '^\s*$' "$out/$name.txt" | tail -40
