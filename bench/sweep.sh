#!/usr/bin/env bash
# bench/sweep.sh: the SMTP load against ringpostd over its per-core knobs, one knob at a time
# around the defaults, bounded in time; prints a table (msgs/s, ratio to the baseline, p50 and
# p99 accept latency, ringpostd CPU per message). Each point starts a fresh ringpostd with a
# temporary config on free loopback ports and an empty data folder; the baseline (defaults)
# runs before and after every knob, and each point is compared with the baselines around it,
# so drift from a noisy machine shows (the last line: the baselines' spread).
#
#   bash bench/sweep.sh                          # ~5 minutes: 8 s per point
#   bash bench/sweep.sh --seconds 4 --sessions 50 --size 4096 --knobs cores,commit_window_us
#
# Options:
#   --seconds S    load per point (ringpost-bench --duration) [8]
#   --sessions N   concurrent SMTP sessions [50]
#   --size B       message bytes [4096]
#   --knobs LIST   comma list of knobs to sweep
#                  [cores,ring_entries,recv_buffer_count,recv_buffer_bytes,commit_window_us,commit_batch_max]
#   --keep         keep the temporary folder
# Environment: RP_BENCH, RP_RINGPOSTD (default build/tools/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
seconds=8
sessions=50
size=4096
knobs=cores,ring_entries,recv_buffer_count,recv_buffer_bytes,commit_window_us,commit_batch_max
keep=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --knobs) knobs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
log() { echo "sweep: $*" >&2; }
die() { log "$*"; exit 1; }
bench=${RP_BENCH:-$root/build/tools/ringpost-bench}
ringpostd=${RP_RINGPOSTD:-$root/build/tools/ringpostd}
[[ -x $bench ]] || die "no $bench (set RP_BENCH)"
[[ -x $ringpostd ]] || die "no $ringpostd (set RP_RINGPOSTD)"

work=$(mktemp -d /tmp/rp-sweep.XXXXXX)
rp_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $rp_pid ]] && kill "$rp_pid" 2>/dev/null && wait "$rp_pid" 2>/dev/null || true
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() {
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

cpus=$(nproc)
# The defaults (config/ringpost.toml), and the values tried for each knob.
declare -A default=([cores]=$cpus [ring_entries]=1024 [recv_buffer_count]=4096
  [recv_buffer_bytes]=16384 [commit_window_us]=1000 [commit_batch_max]=256)
declare -A values=([cores]="$(seq -s ' ' 1 "$cpus")" [ring_entries]="256 4096"
  [recv_buffer_count]="512 16384" [recv_buffer_bytes]="4096 65536"
  [commit_window_us]="0 250 4000" [commit_batch_max]="16 1024")

results=$work/results.jsonl
: >"$results"

# point LABEL KNOB=VALUE...: one fresh ringpostd with these knobs, one timed load.
point() {
  local label=$1; shift
  declare -A k
  local key
  for key in "${!default[@]}"; do k[$key]=${default[$key]}; done
  local pair
  for pair in "$@"; do k[${pair%%=*}]=${pair#*=}; done
  local dir=$work/$label port
  mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/ringpost.toml" <<EOF
[server]
hostname = "mail.example.test"
cores = ${k[cores]}
pin_cores = false
data_dir = "$dir/data"
log_level = "warn"

[engine]
ring_entries = ${k[ring_entries]}
recv_buffer_count = ${k[recv_buffer_count]}
recv_buffer_bytes = ${k[recv_buffer_bytes]}
commit_window_us = ${k[commit_window_us]}
commit_batch_max = ${k[commit_batch_max]}
connections_per_ip = 0

[[domain]]
name = "example.test"

$(for i in 0 1 2 3 4 5 6 7; do printf '[[user]]\naddress = "u%d@example.test"\npassword = "x"\n\n' "$i"; done)
[[smtp.listener]]
address = "127.0.0.1:$port"
kind = "mx"
EOF
  (cd "$dir" && exec "$ringpostd" --config "$dir/ringpost.toml" >"$dir/ringpostd.log" 2>&1) &
  rp_pid=$!
  if ! wait_port "$port" 15; then
    log "$label: ringpostd did not start: $(tail -2 "$dir/ringpostd.log")"
    kill "$rp_pid" 2>/dev/null || true; wait "$rp_pid" 2>/dev/null || true; rp_pid=""
    return
  fi
  local ticks_before ticks_after
  ticks_before=$(sed 's/.*) //' "/proc/$rp_pid/stat" | awk '{ print $12 + $13 }')
  "$bench" smtp --port "$port" --sessions "$sessions" --threads 1 --size "$size" \
    --duration "${seconds}s" --messages 100000000 --pipelining --to 'u%d@example.test' \
    --to-spread 8 --json --quiet >"$dir/bench.json" 2>"$dir/bench.err" || true
  ticks_after=$(sed 's/.*) //' "/proc/$rp_pid/stat" | awk '{ print $12 + $13 }')
  kill "$rp_pid" 2>/dev/null || true
  wait "$rp_pid" 2>/dev/null || true
  rp_pid=""
  python3 - "$label" "$((ticks_after - ticks_before))" "$(getconf CLK_TCK)" "$dir/bench.json" \
    >>"$results" <<'PYEOF'
import json, sys
label, ticks, tck, path = sys.argv[1:5]
try:
    r = json.load(open(path))
except Exception:
    r = {"completed": 0, "per_second": 0, "latency_ms": {"accept": {}}, "error_count": -1}
a = r["latency_ms"].get("accept", {})
print(json.dumps({"label": label, "per_second": r["per_second"], "completed": r["completed"],
                  "p50": a.get("p50", 0), "p99": a.get("p99", 0), "errors": r["error_count"],
                  "cpu_us": int(ticks) / int(tck) * 1e6 / max(r["completed"], 1)}))
PYEOF
  rm -rf "$dir/data"
}

log "work folder $work; ${seconds}s per point, $sessions sessions, $size-byte messages"
# A baseline before and after every knob: each point's ratio is against the mean of the two
# baselines around it, so a machine whose load drifts (other builds) skews it less.
point baseline
IFS=, read -r -a knob_list <<<"$knobs"
for knob in "${knob_list[@]}"; do
  [[ -n ${values[$knob]+x} ]] || die "unknown knob $knob"
  for value in ${values[$knob]}; do
    [[ $value == "${default[$knob]}" ]] && continue
    log "$knob = $value"
    point "$knob=$value" "$knob=$value"
  done
  point baseline
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $cpus cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ringpost-bench smtp --sessions $sessions --size $size --pipelining --duration ${seconds}s, fresh ringpostd per point; defaults: $(for k in cores ring_entries recv_buffer_count recv_buffer_bytes commit_window_us commit_batch_max; do printf '%s=%s ' "$k" "${default[$k]}"; done)"
python3 - "$results" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("%-26s %10s %7s %9s %9s %10s %7s" % ("point", "msgs/s", "ratio", "p50 ms", "p99 ms",
                                            "CPU us/msg", "errors"))
for i, r in enumerate(rows):
    if r["label"] == "baseline":
        ref = r["per_second"]
    else:
        before = [b["per_second"] for b in rows[:i] if b["label"] == "baseline"][-1:]
        after = [b["per_second"] for b in rows[i:] if b["label"] == "baseline"][:1]
        around = before + after
        ref = sum(around) / len(around) if around else 0
    print("%-26s %10.0f %6.2fx %9.2f %9.2f %10.1f %7d" % (
        r["label"], r["per_second"], r["per_second"] / ref if ref else 0, r["p50"], r["p99"],
        r["cpu_us"], r["errors"]))
spread = [r["per_second"] for r in rows if r["label"] == "baseline"]
if spread and min(spread) > 0:
    print("baselines: %s msgs/s (max/min %.2fx: differences below that are noise)" % (
        " ".join("%.0f" % v for v in spread), max(spread) / min(spread)))
PYEOF
