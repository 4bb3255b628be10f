#!/bin/bash
# The several-instances rows of docs/benchmarks.md, one run each: one
# instance without Redis, one with, two and three instances on one MariaDB
# database (a fresh one per row) and one Redis (a throwaway redis-server on
# port 6390 per row). From the repository, after `cargo build --release`:
#
#   scripts/test --with-mariadb bench/instances.sh OUTDIR
#
# (which starts a throwaway MariaDB and exports GATRIX_TEST_MYSQL_URL), or
# with MYSQL_URL=mysql://user:pass@host:port naming a server where the user
# may create gatrix_bench_* databases. RATE=<msgs/s> (default 1000) and
# SETUPS="one-noredis one-redis two three three-p4" choose the runs
# (three-p4: three instances with SEQUENCER_PARTITIONS=4, the writers'
# commits per partition).
set -u
OUT=${1:-bench-instances}; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export JWT_SECRET=benchsecret-0123456789abcdef0123456789
base=${MYSQL_URL:-$GATRIX_TEST_MYSQL_URL}
RPORT=6390
start_redis() { redis-server --port $RPORT --save '' --appendonly no --daemonize yes --dir /tmp >/dev/null; sleep 0.5; }
stop_redis() { redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1; sleep 0.5; }
newdb() { local n=gatrix_bench_${1//-/_}_$RANDOM; python3 - "$base" "$n" <<'P'
import sys,subprocess,urllib.parse as u
p=u.urlparse(sys.argv[1]); subprocess.run(["mariadb","-h",p.hostname,"-P",str(p.port),"-u",p.username,"-p"+p.password,"-e","CREATE DATABASE "+sys.argv[2]],check=True)
P
  echo "$base/$n"; }
run() { # label n redis [partitions]
  local label=$1 n=$2 redis=$3 parts=${4:-1} db; db=$(newdb $label)
  local pids=() servers=() metrics=()
  for ((i=0;i<n;i++)); do
    env RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000 WS_MAX_CONNECTIONS=100000 WS_MAX_CONNECTIONS_PER_IP=100000 \
      WS_CONNECTION_RATE_PER_IP=1000000 WS_CONNECTION_BURST_PER_IP=1000000 DATABASE_URL=$db SEQUENCER_PARTITIONS=$parts \
      $( [ $redis = 1 ] && echo REDIS_URL=redis://127.0.0.1:$RPORT ) SERVER_ID=bench-$i \
      HOST=127.0.0.1 PORT=310$i METRICS_LISTEN=127.0.0.1:940$i CLUSTER_WORKERS=1 \
      target/release/gatrix-chat > $OUT/$label-server-$i.log 2>&1 &
    pids+=($!); servers+=(--server 127.0.0.1:310$i); metrics+=(--metrics 127.0.0.1:940$i)
  done
  for ((i=0;i<n;i++)); do for t in $(seq 100); do curl -fs 127.0.0.1:310$i/ready >/dev/null && break; sleep 0.2; done; done
  local pidlist; pidlist=$(IFS=,; echo "${pids[*]}")
  taskset -c 1 target/release/gatrix-chat-bench "${servers[@]}" --json $OUT/$label.json \
    fanout -c 10 -m 100 -s 10 -r ${RATE:-1000} -b 100 -d 10 --server-pid $pidlist "${metrics[@]}" \
    $( [ $redis = 1 ] && echo --redis 127.0.0.1:$RPORT ) > $OUT/$label.txt 2>&1
  echo "== $label rc=$?"; tail -40 $OUT/$label.txt
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
}
for s in ${SETUPS:-one-noredis one-redis two three}; do case $s in
  one-noredis) run one-noredis 1 0;;
  one-redis) start_redis; run one-redis 1 1; stop_redis;;
  two) start_redis; run two 2 1; stop_redis;;
  three) start_redis; run three 3 1; stop_redis;;
  three-p4) start_redis; run three-p4 3 1 4; stop_redis;;
esac; done
