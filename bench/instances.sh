#!/bin/bash
# The several-instances rows of docs/benchmarks.md, one run each: one
# instance without Redis, one with, two and three instances on one MariaDB
# database (a fresh one per row) and one Redis (a throwaway redis-server on
# port 6390 per row) or a Redis Cluster (a throwaway one per row: 3 masters
# and 3 replicas on ports 7101-7106, from redis-server binaries in a temp
# dir). From the repository, after `cargo build --release`:
#
#   scripts/test --with-mariadb bench/instances.sh OUTDIR
#
# (which starts a throwaway MariaDB and exports GATRIX_TEST_MYSQL_URL), or
# with MYSQL_URL=mysql://user:pass@host:port naming a server where the user
# may create gatrix_bench_* databases. RATE=<msgs/s> (default 1000) and
# SETUPS="one-noredis one-redis two three three-p4" choose the runs (a
# setup written three-p4@5000 runs at 5000 msgs/s, labelled three-p4-r5000;
# ROUNDS=3 repeats SETUPS three times over, labels ending -1, -2, -3, and
# ONCE="outage-redis outage-cluster" runs after the rounds, once; SETUPS=
# empty runs ONCE alone):
#   three-p4        three instances, SEQUENCER_PARTITIONS=4 (the writers'
#                   commits per partition), one Redis
#   one-p4-noredis, one-p4-redis, one-p4-cluster
#                   one instance, 4 partitions: no Redis, one Redis, the
#                   cluster (the same instance and partitions each time)
#   three-cluster   three instances, 4 partitions, the cluster; every master
#                   is given to the bench's --redis (their sum and each one)
#   outage-redis, outage-cluster
#                   three instances, 4 partitions, one Redis or the
#                   cluster, a fanout of OUTAGE_D s (default 60) in which
#                   Redis (every node of the cluster) is shut down
#                   OUTAGE_AT s in (default 15) and started again, empty,
#                   OUTAGE_SECS (default 30) later: the catch-up
#                   (fanout --outage-down/--outage-up)
#   outage-redis-hang
#                   as outage-redis, but Redis is stopped (SIGSTOP) and
#                   continued (SIGCONT): hung, its connections open
#   ingest-three-p4, ingest-three-cluster
#                   three instances, 4 partitions, acked sends as fast as
#                   they go (ingest -n 24 -w 64): the writers' commits per
#                   partition and messages per commit at saturation
# Before each row the load average (uptime) goes to OUTDIR/<row>.load and
# the output; with the cluster, every node's CPU (INFO cpu, replicas too)
# before and after to OUTDIR/<row>.nodes-cpu. After each row: the streams'
# entries and bytes (<row>.streams) and each instance's chat_bus_*,
# chat_cluster_* and chat_redis_* series (<row>-metrics-<i>.txt).
set -u
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.." || exit
export JWT_SECRET=benchsecret-0123456789abcdef0123456789
base=${MYSQL_URL:-${GATRIX_TEST_MYSQL_URL:-}}
RPORT=6390
CPORTS=(7101 7102 7103 7104 7105 7106)
CDIR=""
start_redis() { redis-server --port $RPORT --save '' --appendonly no --daemonize yes --dir /tmp >/dev/null; sleep 0.5; }
stop_redis() { redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1; sleep 0.5; }
wait_redis() { for _ in $(seq 100); do redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done; }

# The cluster's nodes, started in $CDIR/<port> (again after a shutdown:
# each node's nodes.conf keeps its slots and role, its data is gone).
start_nodes() {
  for p in "${CPORTS[@]}"; do
    mkdir -p "$CDIR/$p"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$CDIR/$p" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 1000 --save '' --appendonly no \
      --protected-mode no --daemonize yes --logfile "$CDIR/$p/log" >/dev/null
  done
  for p in "${CPORTS[@]}"; do
    for _ in $(seq 100); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
}
# Every node says cluster_state:ok and knows all six (at most 60 s).
wait_cluster() {
  for _ in $(seq 600); do
    local ok=1
    for p in "${CPORTS[@]}"; do
      local info; info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')
      grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_known_nodes:6' <<<"$info" || ok=0
    done
    [ $ok = 1 ] && return 0; sleep 0.1
  done
  echo "cluster not ok after 60 s" >&2; return 1
}
start_cluster() {
  CDIR=$(mktemp -d /tmp/gatrix-bench-cluster-XXXXXX)
  start_nodes
  local addrs=(); for p in "${CPORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes > "$CDIR/create.log" 2>&1
  wait_cluster
  # Replicas in sync before the run.
  for p in "${CPORTS[@]}"; do
    for _ in $(seq 100); do
      local r; r=$(redis-cli -p "$p" info replication | tr -d '\r')
      grep -q '^role:master' <<<"$r" || grep -q '^master_link_status:up' <<<"$r" && break; sleep 0.1
    done
  done
}
stop_nodes() { for p in "${CPORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1; done; sleep 0.5; }
stop_cluster() { stop_nodes; rm -rf "$CDIR"; CDIR=""; }
masters() { for p in "${CPORTS[@]}"; do redis-cli -p "$p" role | head -1 | grep -q master && echo "127.0.0.1:$p"; done; }
nodes_cpu() { for p in "${CPORTS[@]}"; do
  echo "$p $(redis-cli -p "$p" role | head -1) $(redis-cli -p "$p" info cpu | tr -d '\r' | grep -E '^used_cpu_(sys|user):' | tr '\n' ' ')"; done; }

newdb() { local n=gatrix_bench_${1//-/_}_$RANDOM; python3 - "$base" "$n" <<'P'
import sys,subprocess,urllib.parse as u
p=u.urlparse(sys.argv[1]); subprocess.run(["mariadb","-h",p.hostname,"-P",str(p.port),"-u",p.username,"-p"+p.password,"-e","CREATE DATABASE "+sys.argv[2]],check=True)
P
  echo "$base/$n"; }

run() { # label n redis(0|1|cluster) [partitions] [fanout|outage|ingest]
  local label=$1 n=$2 redis=$3 parts=${4:-1} kind=${5:-fanout} db; db=$(newdb "$label")
  local pids=() servers=() metrics=() renv=() rargs=() scenario=()
  case $redis in
    1) renv=("REDIS_URL=redis://127.0.0.1:$RPORT"); rargs=(--redis "127.0.0.1:$RPORT");;
    cluster) local cn; cn=$(printf '127.0.0.1:%s,' "${CPORTS[@]}"); renv=(REDIS_CLUSTER_NODES="${cn%,}")
             for m in $(masters); do rargs+=(--redis "$m"); done;;
  esac
  for ((i=0;i<n;i++)); do
    # Instance 0 alone first: it migrates the fresh database (instances
    # started at once on an empty database can race in the migrations).
    if [ "$i" = 1 ]; then for _ in $(seq 100); do curl -fs 127.0.0.1:3100/ready >/dev/null && break; sleep 0.2; done; fi
    env RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000 WS_MAX_CONNECTIONS=100000 WS_MAX_CONNECTIONS_PER_IP=100000 \
      WS_CONNECTION_RATE_PER_IP=1000000 WS_CONNECTION_BURST_PER_IP=1000000 DATABASE_URL="$db" SEQUENCER_PARTITIONS="$parts" \
      "${renv[@]}" SERVER_ID=bench-$i \
      HOST=127.0.0.1 PORT=310$i METRICS_LISTEN=127.0.0.1:940$i CLUSTER_WORKERS=1 \
      target/release/gatrix-chat > "$OUT/$label-server-$i.log" 2>&1 &
    pids+=("$!"); servers+=(--server "127.0.0.1:310$i"); metrics+=(--metrics "127.0.0.1:940$i")
  done
  for ((i=0;i<n;i++)); do for _ in $(seq 100); do curl -fs 127.0.0.1:310$i/ready >/dev/null && break; sleep 0.2; done; done
  local pidlist; pidlist=$(IFS=,; echo "${pids[*]}")
  if [ "$kind" = outage ] || [ "$kind" = hang ]; then
    # Redis's counters restart with it: no --redis; the catch-up instead.
    rargs=()
    local down up
    if [ "$kind" = hang ]; then
      # Redis hung (SIGSTOP), not gone: its connections stay open.
      local rpid; rpid=$(redis-cli -p $RPORT info server | tr -d '\r' | sed -n 's/^process_id://p')
      down="kill -STOP $rpid"; up="kill -CONT $rpid"
    elif [ "$redis" = cluster ]; then
      down="$SELF --cluster-down"
      up="$SELF --cluster-up $CDIR"
    else
      down="redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1"
      up="$SELF --redis-up"
    fi
    scenario=(fanout -c 10 -m 100 -s 10 -r "${RATE:-1000}" -b 100 -d "${OUTAGE_D:-60}" --drain 5
            --outage-at "${OUTAGE_AT:-15}" --outage-secs "${OUTAGE_SECS:-30}" --outage-down "$down" --outage-up "$up")
  elif [ "$kind" = ingest ]; then
    scenario=(ingest -n 24 -w 64 -b 100 -d 10)
  else
    scenario=(fanout -c 10 -m 100 -s 10 -r "${RATE:-1000}" -b 100 -d 10)
  fi
  uptime | tee "$OUT/$label.load"
  [ "$redis" = cluster ] && nodes_cpu > "$OUT/$label.nodes-cpu"
  taskset -c 1 target/release/gatrix-chat-bench "${servers[@]}" --json "$OUT/$label.json" \
    "${scenario[@]}" --server-pid "$pidlist" "${metrics[@]}" "${rargs[@]}" > "$OUT/$label.txt" 2>&1
  echo "== $label rc=$? load: $(cat "$OUT/$label.load")"; tail -40 "$OUT/$label.txt"
  [ "$redis" = cluster ] && nodes_cpu >> "$OUT/$label.nodes-cpu"
  # The streams' memory after the run: entries and MEMORY USAGE of each
  # partition's log, used_memory of each node holding one.
  local nodes=(); case $redis in 1) nodes=("$RPORT");; cluster) mapfile -t nodes < <(masters | cut -d: -f2);; esac
  for p in "${nodes[@]}"; do
    echo "node $p $(redis-cli -p "$p" info memory | tr -d '\r' | grep -E '^used_memory:')"
    redis-cli -p "$p" --scan --pattern 'gatrix:bus:*:log:*' | while read -r k; do
      echo "  $k xlen $(redis-cli -p "$p" xlen "$k") bytes $(redis-cli -p "$p" memory usage "$k" samples 0)"; done
  done > "$OUT/$label.streams"
  for ((i=0;i<n;i++)); do curl -s 127.0.0.1:940$i/metrics | grep -E '^chat_(bus|cluster|redis)_' > "$OUT/$label-metrics-$i.txt"; done
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
}

# The outage's commands, run by the bench through this script (the
# recipes stay in one place): shut the cluster's nodes down; start Redis
# (the cluster's nodes) again and return once it answers (the cluster is
# ok on every node).
case ${1:-} in
  --cluster-down) for p in "${CPORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 & done; wait; exit 0;;
  --redis-up) start_redis; wait_redis; exit 0;;
  --cluster-up) CDIR=$2; start_nodes; wait_cluster; exit;;
esac
OUT=${1:-bench-instances}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

# A setup may carry its own rate: three-p4@5000 runs three-p4 with RATE=5000
# and labels it three-p4-r5000.
# ROUNDS=n runs SETUPS n times over, one after the other (labels get
# -1, -2, …: compare medians), then ONCE (e.g. the outage rows) once.
BASE_RATE=${RATE:-1000}
specs=()
for ((round=1; round<=${ROUNDS:-1}; round++)); do
  for spec in ${SETUPS-one-noredis one-redis two three}; do
    if [ "${ROUNDS:-1}" -gt 1 ]; then specs+=("$spec#$round"); else specs+=("$spec"); fi
  done
done
for spec in ${ONCE:-}; do specs+=("$spec"); done
for spec in "${specs[@]}"; do
  N=""; if [[ $spec == *#* ]]; then N=-${spec#*#}; spec=${spec%#*}; fi
  s=${spec%@*}; R=""; RATE=$BASE_RATE
  if [[ $spec == *@* ]]; then RATE=${spec#*@}; R=-r$RATE; fi
  R=$R$N
  case $s in
  one-noredis) run "one-noredis$R" 1 0;;
  one-redis) start_redis; run "one-redis$R" 1 1; stop_redis;;
  two) start_redis; run "two$R" 2 1; stop_redis;;
  three) start_redis; run "three$R" 3 1; stop_redis;;
  three-p4) start_redis; run "three-p4$R" 3 1 4; stop_redis;;
  one-p4-noredis) run "one-p4-noredis$R" 1 0 4;;
  one-p4-redis) start_redis; run "one-p4-redis$R" 1 1 4; stop_redis;;
  one-p4-cluster) start_cluster; run "one-p4-cluster$R" 1 cluster 4; stop_cluster;;
  three-cluster) start_cluster; run "three-cluster$R" 3 cluster 4; stop_cluster;;
  outage-redis) start_redis; run "outage-redis$R" 3 1 4 outage; stop_redis;;
  outage-cluster) start_cluster; run "outage-cluster$R" 3 cluster 4 outage; stop_cluster;;
  outage-redis-hang) start_redis; run "outage-redis-hang$R" 3 1 4 hang; stop_redis;;
  ingest-three-p4) start_redis; run "ingest-three-p4$N" 3 1 4 ingest; stop_redis;;
  ingest-three-cluster) start_cluster; run "ingest-three-cluster$N" 3 cluster 4 ingest; stop_cluster;;
  *) echo "unknown setup $s" >&2;;
  esac
done
