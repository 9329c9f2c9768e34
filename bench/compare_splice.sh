#!/usr/bin/env bash
# bench/compare_splice.sh: what zero-copy FETCH/RETR (splice from the segment) changes, two
# ringpostd builds side by side in one run. Both daemons hold the same mailbox (N messages of
# SIZE bytes, filled by ringpost-bench smtp); then, alternating the two, ringpost-bench drives
#   imap-1    one client: LOGIN, SELECT, FETCH 1:* BODY.PEEK[], LOGOUT
#   imap-10   ten clients at once
#   pop3-1    one client: RETR every message, 8 in flight
# for --rounds rounds each, and prints msgs/s and the daemon's CPU (user+system) per message,
# with the ratio new/base. CPU per message is the steadier figure on a busy machine.
#
#   RP_BASE=/path/to/old/ringpostd bash bench/compare_splice.sh --messages 5000 --size 4096
#
# Options: --messages N [5000]  --size B [4096]  --rounds R [3]  --cores C [2]
#   --repeat N   logins per measured bench run (more work per CPU reading) [1]
#   --base-splice-min B, --new-splice-min B   [pop3]/[imap] splice_bytes_min for each daemon
#                (omitted: the binary's default; an old binary knows no such key). With
#                RP_BASE=build/tools/ringpostd this compares splice on/off in one build.
# Environment: RP_BASE (the ringpostd to compare against; required), RP_RINGPOSTD (the new
# one) and RP_BENCH (ringpost-bench); default build/tools/. Loopback only, free ports, a
# temporary folder; stops only the processes it started.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
messages=5000
size=4096
rounds=3
cores=2
repeat=1
declare -A splice_min=()
while (($# > 0)); do
  case "$1" in
    --messages) messages=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --base-splice-min) splice_min[base]=$2; shift 2 ;;
    --new-splice-min) splice_min[new]=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bench=${RP_BENCH:-$root/build/tools/ringpost-bench}
new=${RP_RINGPOSTD:-$root/build/tools/ringpostd}
base=${RP_BASE:?set RP_BASE to the ringpostd to compare against}
work=$(mktemp -d /tmp/compare-splice.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n "${KEEP:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)

declare -A pid smtp imap pop3
start() {  # start NAME BINARY
  local name=$1 binary=$2 dir=$work/$1
  mkdir -p "$dir"
  smtp[$name]=$(free_port); imap[$name]=$(free_port); pop3[$name]=$(free_port)
  cat >"$dir/ringpost.toml" <<EOF
[server]
hostname = "mail.example.test"
cores = $cores
pin_cores = false
data_dir = "$dir/data"
log_level = "warn"
[engine]
connections_per_ip = 0
[auth]
plaintext_loopback = true
[[domain]]
name = "example.test"
[[user]]
address = "demo@example.test"
password = "demo"
$( [[ -n "${splice_min[$name]:-}" ]] && printf '[pop3]\nsplice_bytes_min = %s\n[imap]\nsplice_bytes_min = %s\n' "${splice_min[$name]}" "${splice_min[$name]}" )
[[smtp.listener]]
address = "127.0.0.1:${smtp[$name]}"
kind = "mx"
[[imap.listener]]
address = "127.0.0.1:${imap[$name]}"
kind = "imap"
[[pop3.listener]]
address = "127.0.0.1:${pop3[$name]}"
kind = "pop3"
EOF
  (cd "$dir" && exec "$binary" --config "$dir/ringpost.toml" >"$dir/log" 2>&1) &
  pid[$name]=$!
  pids+=("${pid[$name]}")
  wait_port "${smtp[$name]}" && wait_port "${imap[$name]}" || { echo "$name did not start" >&2; exit 1; }
  "$bench" smtp --port "${smtp[$name]}" --to demo@example.test --messages "$messages" \
    --size "$size" --sessions 10 --pipelining --quiet --json >"$dir/fill.json"
  for _ in $(seq 1 240); do
    got=$("$bench" imap --port "${imap[$name]}" --no-body --no-flags --json --quiet |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["mailbox_messages"])')
    ((got >= messages)) && return 0
    sleep 0.5
  done
  echo "$name holds $got of $messages" >&2; exit 1
}

start base "$base"
start new "$new"

results=$work/results
: >"$results"
measure() {  # measure NAME TEST ARGS...
  local name=$1 test=$2; shift 2
  local before after
  before=$(ticks "${pid[$name]}")
  "$bench" "$@" --json --quiet >"$work/run.json" || echo "$name $test: errors" >&2
  after=$(ticks "${pid[$name]}")
  python3 - "$name" "$test" "$((after - before))" "$clk_tck" "$work/run.json" >>"$results" <<'PYEOF'
import json, sys
name, test, ticks, tck, path = sys.argv[1:6]
r = json.load(open(path))
done = r.get("completed", 0) or 1
print("%s\t%s\t%.1f\t%.2f" % (name, test, r.get("per_second", 0), int(ticks) / int(tck) * 1e6 / done))
PYEOF
}

for round in $(seq 0 "$rounds"); do  # Round 0 warms up and is not counted.
  for name in base new; do
    measure "$name" imap-1 imap --port "${imap[$name]}" --no-flags --rounds "$repeat"
    measure "$name" imap-10 imap --port "${imap[$name]}" --no-flags --sessions 10 --rounds "$repeat"
    measure "$name" pop3-1 pop3 --port "${pop3[$name]}" --window 8 --rounds "$repeat"
  done
  if ((round == 0)); then : >"$results"; fi
done

echo "uptime: $(uptime)"
echo "messages $messages x $size bytes, $cores shards, $rounds rounds (medians)"
python3 - "$results" <<'PYEOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
data = {}
for name, test, rate, cpu in rows:
    data.setdefault((test, name), []).append((float(rate), float(cpu)))
print("%-8s %12s %12s %7s %14s %14s %7s" % ("test", "base msg/s", "new msg/s", "ratio",
                                            "base CPU us/m", "new CPU us/m", "ratio"))
for test in ("imap-1", "imap-10", "pop3-1"):
    b = data.get((test, "base"), [(0, 0)])
    n = data.get((test, "new"), [(0, 0)])
    br, nr = statistics.median(x[0] for x in b), statistics.median(x[0] for x in n)
    bc, nc = statistics.median(x[1] for x in b), statistics.median(x[1] for x in n)
    print("%-8s %12.0f %12.0f %6.2fx %14.2f %14.2f %6.2fx" % (test, br, nr, nr / br if br else 0,
                                                          bc, nc, nc / bc if bc else 0))
PYEOF
