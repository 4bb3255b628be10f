#!/usr/bin/env bash
# Tests of gatrix-tune. apply and revert run only against a fake host under a
# temporary --root (its own /proc/sys, /sys, /etc and /var/lib), so nothing
# of the real machine changes and no privileges are needed; against the real
# host only `check` and `apply --dry-run` run, which change nothing.
#
# usage: tuning/test.sh        (exit 0: every check passed; 1: one failed)
set -euo pipefail

if (($#)); then
  echo "usage: tuning/test.sh (no arguments): tests gatrix-tune against a fake host in a temp dir" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tune=$here/gatrix-tune
tmp=$(mktemp -d /tmp/gatrix-tune-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
passed=0

fail() {
  echo "FAIL: $*" >&2
  [[ ! -f $tmp/out ]] || { echo "--- last output:" >&2; cat "$tmp/out" >&2; }
  exit 1
}
ok() {
  passed=$((passed + 1))
  echo "ok - $*"
}
# run EXPECTED_RC ARGS...: runs gatrix-tune, output in $tmp/out.
run() {
  local want=$1 rc=0
  shift
  "$tune" "$@" >"$tmp/out" 2>&1 || rc=$?
  [[ $rc == "$want" ]] || fail "gatrix-tune $* exited $rc, expected $want"
}
has() { grep -qF -- "$1" "$tmp/out" || fail "output of the last command lacks: $1"; }
# The status column of a row of the check table.
status_of() {
  awk -v s="$1 " 'index($0, s) == 1 && match($0, / (ok|LOW|n\/a) /) {
      print substr($0, RSTART + 1, RLENGTH - 2); exit }' "$tmp/out"
}
want_status() {
  local got
  got=$(status_of "$1")
  [[ $got == "$2" ]] || fail "row '$1': status '$got', expected '$2'"
}
value() { tr -s ' \t\n' '   ' <"$root$1" | sed 's/^ //; s/ $//'; }
want_value() {
  local got
  got=$(value "$1")
  [[ $got == "$2" ]] || fail "$1 is '$got', expected '$2'"
}
# Every file and directory under the root with its content hash, size, mode
# and modification time: equal snapshots mean nothing was touched.
snapshot() {
  (cd "$root" && find . -printf '%p %y %s %m %T@\n' | sort &&
    find . -type f -exec sha256sum {} + | sort -k2)
}

put() {
  mkdir -p "$(dirname "$root$1")"
  printf '%b\n' "$2" >"$root$1"
}

# ---- CPU lists and masks (the script's own functions) -----------------------------
# helpers FUNCTION ARGS...: calls one function of gatrix-tune (loaded
# without running main); $0 and $@ belong to the inner bash.
# shellcheck disable=SC2016
helpers() { bash -c 'source <(sed "/^main \"\$@\"$/d" "$0"); "$@"' "$tune" "$@"; }
[[ $(helpers cpus_to_mask "0 33") == "2,00000001" ]] || fail "cpus_to_mask 0,33"
[[ $(helpers cpus_to_mask "$(helpers expand_cpus 0-63)") == "ffffffff,ffffffff" ]] || fail "cpus_to_mask 0-63"
[[ $(helpers mask_to_cpus 00000002,00000001) == "0 33" ]] || fail "mask_to_cpus 2,1"
[[ $(helpers compress_cpus "$(helpers expand_cpus 0,2-4,4,7)") == "0,2-4,7" ]] || fail "expand/compress 0,2-4,4,7"
helpers expand_cpus 3-1 >/dev/null 2>&1 && fail "expand_cpus must refuse 3-1"
ok "CPU lists and masks: more than 32 CPUs, ranges, duplicates, bad ranges"

# ---- A fake 4-CPU host, untuned ------------------------------------------------
put /proc/sys/fs/file-max 9223372036854775807       # above the floor: kept
# fs/nr_open left out: shows as n/a
put /proc/sys/net/core/somaxconn 4096               # already ok
put /proc/sys/net/ipv4/tcp_max_syn_backlog 512
put /proc/sys/net/ipv4/ip_local_port_range '32768\t60999'
put /proc/sys/net/ipv4/tcp_mem '100\t200\t300'
put /proc/sys/net/ipv4/tcp_rmem '4096\t131072\t6291456'
put /proc/sys/net/ipv4/tcp_wmem '4096\t16384\t4194304'
put /proc/sys/net/core/netdev_max_backlog 1000
put /proc/sys/net/ipv4/tcp_keepalive_time 7200
put /proc/sys/net/ipv4/tcp_keepalive_intvl 75
put /proc/sys/net/ipv4/tcp_keepalive_probes 9
put /proc/sys/net/ipv4/tcp_fin_timeout 60
put /proc/self/limits 'Limit                     Soft Limit           Hard Limit           Units
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes'
put /proc/meminfo 'MemTotal:       16384000 kB'
put /proc/irq/40/smp_affinity_list 0-3
put /proc/irq/41/smp_affinity_list 0
put /sys/devices/system/cpu/online 0-3
for c in 0 1 2 3; do
  put /sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor powersave
  put /sys/devices/system/cpu/cpu$c/cpufreq/scaling_available_governors 'performance powersave'
done
put /sys/kernel/mm/transparent_hugepage/enabled '[always] madvise never'
mkdir -p "$root/sys/class/net/lo"
put /sys/class/net/eth9/device/msi_irqs/40 msix
put /sys/class/net/eth9/device/msi_irqs/41 msix
put /sys/class/net/eth9/queues/rx-0/rps_cpus f
put /sys/class/net/eth9/queues/rx-1/rps_cpus 0
snapshot >"$tmp/initial"

# ---- check on the untuned host ---------------------------------------------------
run 1 check --root "$root"
has "SETTING"
want_status net.core.somaxconn ok
want_status fs.file-max ok
want_status fs.nr_open n/a
want_status net.ipv4.tcp_mem LOW
want_status net.ipv4.tcp_rmem LOW
want_status net.ipv4.tcp_wmem ok
want_status net.ipv4.tcp_keepalive_time LOW
want_status transparent_hugepage LOW
want_status "cpu governor" LOW
want_status "irq affinity eth9" LOW
want_status "rps eth9" LOW
want_status "nofile (this shell)" LOW
grep -q '^rps lo\|^irq affinity lo' "$tmp/out" && fail "lo (no device) must not be listed"
ok "check on an untuned host: exit 1, LOW rows, n/a for a missing key"

# ---- apply --dry-run changes nothing ---------------------------------------------
run 0 apply --dry-run --root "$root"
has "+++ b/etc/sysctl.d/60-gatrix-chat.conf"
has "+net.ipv4.tcp_mem = 1048576 1572864 2097152"
has "+gatrix-chat hard nofile 1048576"
has "would set /sys/kernel/mm/transparent_hugepage/enabled: always -> madvise"
has "would set /proc/irq/40/smp_affinity_list: 0-3 -> 0"
has "would set net.ipv4.tcp_mem: 100 200 300 -> 1048576 1572864 2097152"
has "SHARD_CPUS=1-3"
snapshot | cmp -s - "$tmp/initial" || fail "apply --dry-run changed the fake host"
ok "apply --dry-run: prints the diff and the runtime changes, changes nothing"

# ---- apply ---------------------------------------------------------------------------
run 0 apply --root "$root"
sysctl_conf=$root/etc/sysctl.d/60-gatrix-chat.conf
limits_conf=$root/etc/security/limits.d/60-gatrix-chat.conf
state=$root/var/lib/gatrix-chat-tune/saved.conf
[[ -f $sysctl_conf && -f $limits_conf && -f $state ]] || fail "apply did not write the drop-ins and the state file"
# Every setting line comes right after a one-line '#' reason.
awk '!/^#/ && prev !~ /^#/ { bad = 1 } { prev = $0 } END { exit bad }' "$sysctl_conf" ||
  fail "a value in $sysctl_conf has no '#' reason line before it"
# What the file says is what the (fake) kernel now has, key by key.
while IFS='=' read -r key val; do
  key=${key// /}
  val=${val#"${val%%[! ]*}"}
  want_value "/proc/sys/${key//.//}" "$val"
done < <(grep -v '^#' "$sysctl_conf")
grep -q '^fs.nr_open' "$sysctl_conf" && fail "a key the kernel lacks must be left out of the drop-in"
# The real sysctl(8) reads the file without a complaint (it only warns, with
# exit 0, on bad syntax, hence the check of stderr), for the keys this
# machine's kernel has.
if sysctl --help 2>&1 | grep -q -- --dry-run; then
  while IFS= read -r line; do
    key=${line%% =*}
    if [[ $line == \#* || -e /proc/sys/${key//.//} ]]; then printf '%s\n' "$line"; fi
  done <"$sysctl_conf" >"$tmp/real.conf"
  sysctl --dry-run -p "$tmp/real.conf" >/dev/null 2>"$tmp/sysctl.err" || fail "sysctl --dry-run -p: $(cat "$tmp/sysctl.err")"
  [[ ! -s $tmp/sysctl.err ]] || fail "sysctl --dry-run -p warned: $(cat "$tmp/sysctl.err")"
fi
want_value /proc/sys/fs/file-max 9223372036854775807
want_value /proc/sys/net/ipv4/tcp_rmem "4096 16384 6291456"
want_value /proc/sys/net/ipv4/tcp_mem "1048576 1572864 2097152"
want_value /sys/kernel/mm/transparent_hugepage/enabled madvise
for c in 0 1 2 3; do want_value /sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor performance; done
want_value /proc/irq/40/smp_affinity_list 0
want_value /sys/class/net/eth9/queues/rx-0/rps_cpus 1
want_value /sys/class/net/eth9/queues/rx-1/rps_cpus 0
grep -qP '^sysctl:net.ipv4.tcp_mem\t100 200 300$' "$state" || fail "state file lacks the original tcp_mem"
grep -qP '^/sys/kernel/mm/transparent_hugepage/enabled\talways$' "$state" || fail "state file lacks the original THP mode"
grep -q 'LimitNOFILE' "$limits_conf" || fail "the limits drop-in must say the service uses LimitNOFILE"
ok "apply: drop-ins with a reason per value, runtime values set, better values kept, originals saved"

# ---- apply again changes nothing -----------------------------------------------------
snapshot >"$tmp/applied"
run 0 apply --root "$root"
has "nothing to change: already applied"
snapshot | cmp -s - "$tmp/applied" || fail "a second apply changed something"
run 0 apply --dry-run --root "$root"
has "nothing to change: already applied"
ok "apply twice: the second run changes nothing"

# ---- check after apply ----------------------------------------------------------------
run 1 check --root "$root"
for row in fs.file-max net.ipv4.tcp_mem net.ipv4.tcp_rmem net.ipv4.tcp_keepalive_probes \
  transparent_hugepage "cpu governor" "irq affinity eth9" "rps eth9"; do
  want_status "$row" ok
done
want_status "nofile (this shell)" LOW
put /proc/self/limits 'Limit                     Soft Limit           Hard Limit           Units
Max open files            1048576              1048576              files
Max locked memory         67108864             67108864             bytes'
run 0 check --root "$root"
has "All settings meet the recommendation"
ok "check after apply: every tuned row ok; exit 0 once the process limits are ok too"
put /proc/self/limits 'Limit                     Soft Limit           Hard Limit           Units
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes'

# ---- revert ---------------------------------------------------------------------------
snapshot >"$tmp/before-revert"
run 0 revert --dry-run --root "$root"
has "would set net.ipv4.tcp_mem: 1048576 1572864 2097152 -> 100 200 300"
snapshot | cmp -s - "$tmp/before-revert" || fail "revert --dry-run changed something"
run 0 revert --root "$root"
[[ ! -e $sysctl_conf && ! -e $limits_conf && ! -e $state ]] || fail "revert left a drop-in or the state file"
want_value /proc/sys/net/ipv4/tcp_mem "100 200 300"
want_value /proc/sys/net/ipv4/ip_local_port_range "32768 60999"
want_value /proc/sys/net/ipv4/tcp_keepalive_time 7200
want_value /proc/irq/40/smp_affinity_list 0-3
want_value /sys/class/net/eth9/queues/rx-0/rps_cpus f
want_value /sys/devices/system/cpu/cpu2/cpufreq/scaling_governor powersave
want_value /sys/kernel/mm/transparent_hugepage/enabled always
run 1 check --root "$root"
want_status net.ipv4.tcp_mem LOW
run 0 revert --root "$root"
has "nothing to revert"
ok "revert: original values back, drop-ins and state removed; a second revert has nothing to do"

# ---- usage errors change nothing --------------------------------------------------------
snapshot >"$tmp/before-usage"
run 2 bogus
run 2 apply --root "$root" --irq-cpus 0-1 --shard-cpus 1-3
has "CPU 1 is in both"
run 2 apply --root "$root" --irq-cpus 7
run 2 apply --root "$root" --irq-cpus x
run 2 check --root "$root" --dry-run
run 2 check --root "$tmp/does-not-exist"
run 2
snapshot | cmp -s - "$tmp/before-usage" || fail "a usage error changed something"
run 0 --help
has "usage: gatrix-tune check"
ok "usage errors exit 2 and change nothing"

# ---- a one-CPU host: no CPU left for the shards is not an error ---------------------
mkdir -p "$tmp/one/sys/devices/system/cpu"
echo 0 >"$tmp/one/sys/devices/system/cpu/online"
run 0 apply --dry-run --root "$tmp/one"
has "CLUSTER_WORKERS=0"
run 0 check --root "$tmp/one"
has "All settings meet the recommendation (n/a: not present on this host)."
ok "a one-CPU host with nothing present: apply --dry-run exits 0, check says all n/a or ok"

# ---- the real host: read-only ------------------------------------------------------------
rc=0
"$tune" check >"$tmp/out" 2>&1 || rc=$?
[[ $rc == 0 || $rc == 1 ]] || fail "check on this host exited $rc (expected 0 or 1)"
has "SETTING"
has "net.core.somaxconn"
ok "check on this host: exit $rc with a table"
before=$(ls -la /etc/sysctl.d /etc/security/limits.d /var/lib/gatrix-chat-tune 2>&1 || true)
run 0 apply --dry-run
after=$(ls -la /etc/sysctl.d /etc/security/limits.d /var/lib/gatrix-chat-tune 2>&1 || true)
[[ $before == "$after" ]] || fail "apply --dry-run on this host changed /etc or /var/lib"
ok "apply --dry-run on this host: exit 0, no file written"

echo "tuning/test.sh: all $passed checks passed"
