#!/usr/bin/env bash
# bench/commit_modes.sh: SMTP accept latency and rate of ringpostd under [store] commit modes,
# side by side with one binary, alternating rounds: batches_inflight (1 = the old single batch
# in flight) and prewrite_bytes (0 = segments grow as they are appended). Each point starts a
# fresh ringpostd (2 pinned shards, empty data folder) on a free loopback port.
#
#   bash bench/commit_modes.sh [--rounds N] [--messages N] [--sessions N] [--size B]
#                              [--modes "1:0 2:0 1:16777216 2:16777216"]
# Environment: RP_BENCH, RP_RINGPOSTD (default build/tools/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
rounds=2 messages=20000 sessions=50 size=4196 cores=2
modes="1:0 2:0 1:16777216 2:16777216"
while (($# > 0)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bench=${RP_BENCH:-$root/build/tools/ringpost-bench}
ringpostd=${RP_RINGPOSTD:-$root/build/tools/ringpostd}
work=$(mktemp -d /tmp/rp-commit.XXXXXX)
rp_pid=""
cleanup() {
  [[ -n $rp_pid ]] && kill "$rp_pid" 2>/dev/null && wait "$rp_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
point() {
  local inflight=$1 prewrite=$2 dir=$work/p port
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/ringpost.toml" <<EOF
[server]
hostname = "mail.example.test"
cores = $cores
pin_cores = true
data_dir = "$dir/data"
log_level = "info"
[engine]
connections_per_ip = 0
[store]
batches_inflight = $inflight
prewrite_bytes = $prewrite
[dns]
resolvers = ["127.0.0.1:1"]
[[domain]]
name = "example.test"
[[user]]
address = "demo@example.test"
password = "demo"
[[smtp.listener]]
address = "127.0.0.1:$port"
kind = "mx"
EOF
  (cd "$dir" && exec "$ringpostd" --config "$dir/ringpost.toml" >"$dir/ringpostd.log" 2>&1) &
  rp_pid=$!
  wait_port "$port" || { echo "ringpostd did not start: $(tail -2 "$dir/ringpostd.log")" >&2; exit 1; }
  local t0 t1
  t0=$(sed 's/.*) //' "/proc/$rp_pid/stat" | awk '{ print $12 + $13 }')
  "$bench" smtp --port "$port" --sessions "$sessions" --messages "$messages" --size "$size" \
    --json --quiet >"$dir/bench.json" 2>"$dir/bench.err" || true
  t1=$(sed 's/.*) //' "/proc/$rp_pid/stat" | awk '{ print $12 + $13 }')
  kill "$rp_pid"; wait "$rp_pid" 2>/dev/null || true; rp_pid=""
  grep -o 'shard [0-9]: group commit.*' "$dir/ringpostd.log" | sed 's/^/    /' || true
  python3 - "$inflight" "$prewrite" "$((t1 - t0))" "$(getconf CLK_TCK)" "$dir/bench.json" <<'PY'
import json, sys
inflight, prewrite, ticks, tck, path = sys.argv[1:6]
r = json.load(open(path))
a = r["latency_ms"].get("accept", {})
print("inflight=%s prewrite=%-9s %8.0f msgs/s  p50 %5.2f  p90 %5.2f  p99 %6.2f ms  cpu %5.1f us/msg  errors %d"
      % (inflight, prewrite, r["per_second"], a.get("p50", 0), a.get("p90", 0), a.get("p99", 0),
         int(ticks) / int(tck) * 1e6 / max(r["completed"], 1), r["error_count"]))
PY
}
echo "load: $(uptime | sed 's/.*load average/load average/')"
for ((r = 1; r <= rounds; ++r)); do
  for m in $modes; do point "${m%%:*}" "${m##*:}"; done
done
echo "load: $(uptime | sed 's/.*load average/load average/')"
