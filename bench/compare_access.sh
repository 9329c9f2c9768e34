#!/usr/bin/env bash
# bench/compare_access.sh: mailbox access, Dovecot against ringpostd, side by side in one run
# (issue 5's targets). Both servers hold the same mailbox (N messages of SIZE bytes): Dovecot
# from Maildir files written here, ringpostd over SMTP (ringpost-bench smtp). Then, alternating
# Dovecot and ringpostd, ringpost-bench drives:
#   imap-fetch-1    one client: LOGIN, SELECT, FETCH 1:* BODY.PEEK[], LOGOUT (--rounds times)
#   imap-fetch-10   ten clients doing the same at once
#   imap-flags      UID FETCH 1:* FLAGS (the step's mean time, 5 rounds)
#   pop3-retr       one client: USER/PASS, STAT, LIST, RETR every message (8 in flight)
#   imap-idle       --idle N logged-in IMAP sessions: server RSS growth per session
# and prints a table: msgs/s, ratio, server CPU per message, p99, memory per connection.
#
# Everything runs on loopback, from a temporary folder, on free ports. Dovecot (Debian's
# dovecot-imapd/-pop3d, installed by tools/deps.sh without starting a system Dovecot) runs with
# its own config, base_dir, passwd-file user and Maildir, in the foreground; on exit (also
# Ctrl-C) the script stops only the processes it started and removes only its own folder.
#
#   bash bench/compare_access.sh                     # 10,000 x 4 KiB, 1000 idle sessions
#   bash bench/compare_access.sh --messages 2000 --idle 200 --rounds 1
#
# Options:
#   --messages N   messages in the mailbox [10000]
#   --size B       bytes per message [4096]
#   --idle N       idle IMAP sessions for the memory figure [1000]
#   --rounds R     measured rounds per test (after one warm-up round) [2]
#   --keep         keep the temporary folder (logs, configs) and print its path
# Environment: RP_BENCH (ringpost-bench), RP_RINGPOSTD (ringpostd); default build/tools/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
messages=10000
size=4096
idle=1000
rounds=2
keep=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case "$1" in
    --messages) messages=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done

log() { echo "compare_access: $*" >&2; }
die() { log "$*"; exit 1; }

if ! command -v dovecot >/dev/null || [[ ! -x /usr/lib/dovecot/imap ]] || [[ ! -x /usr/lib/dovecot/pop3 ]]; then
  log "installing Dovecot from Debian (tools/deps.sh; no system Dovecot is started)"
  bash "$root/tools/deps.sh"
fi
bench=${RP_BENCH:-$root/build/tools/ringpost-bench}
ringpostd=${RP_RINGPOSTD:-$root/build/tools/ringpostd}
[[ -x $bench ]] || die "no $bench (build ringpost-bench, or set RP_BENCH)"
[[ -x $ringpostd ]] || die "no $ringpostd (build ringpostd, or set RP_RINGPOSTD)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- our processes and folder, and nothing else ----
work=$(mktemp -d /tmp/rp-compare-access.XXXXXX)
chmod 755 "$work"
pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



# CPU ticks of a process tree: every live process under $1 (Dovecot's master, its login,
# auth and imap/pop3 processes) and the children the tree has reaped (cutime/cstime).
proc_ticks() {
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}
tree_pids() {
  echo "$1"
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$child"; done
}
tree_ticks() {
  local total=0 pid
  for pid in $(tree_pids "$1"); do total=$((total + $(proc_ticks "$pid"))); done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# ---- Dovecot ----
user=demo@example.test
password=demo
dove=$work/dovecot
dove_imap=$(free_port)
dove_pop3=$(free_port)
mkdir -p "$dove/run" "$dove/state" "$dove/mail"
printf '%s:{PLAIN}%s::::::\n' "$user" "$password" >"$dove/passwd"
cat >"$dove/dovecot.conf" <<EOF
# A throwaway Dovecot for bench/compare_access.sh: loopback only, its own folders. Defaults
# otherwise (one imap/pop3 process per session, as Debian ships it).
base_dir = $dove/run
state_dir = $dove/state
log_path = $dove/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$dove/mail/%u/Maildir
first_valid_uid = 1
default_process_limit = $((idle + 200))
default_client_limit = $((idle * 2 + 1000))
default_vsz_limit = 1G
mail_max_userip_connections = $((idle + 100))
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dove/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$dove/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $dove_imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $dove_pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap {
  process_limit = $((idle + 100))
}
EOF

# The same messages as ringpost-bench smtp sends (its headers and 78-byte lines), written
# straight into the Maildir (cur/, with S= sizes so Dovecot need not stat them).
fill_maildir() {
  python3 - "$dove/mail/$user/Maildir" "$messages" "$size" <<'PYEOF'
import os, sys
base, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(base, sub), exist_ok=True)
lines = []
n = 0
while sum(len(l) for l in lines) < size + 200:
    text = "line %08d " % n
    c = ord("a")
    while len(text) < 76:
        text += chr(c)
        c = ord("a") if c == ord("z") else c + 1
    lines.append(text + "\r\n")
    n += 1
filler = "".join(lines)
for i in range(count):
    header = ("From: <bench@bench.test>\r\nTo: <%s>\r\nSubject: ringpost-bench message %d\r\n"
              "Date: Sun, 22 Nov 2026 07:00:00 +0000\r\nMessage-ID: <%d.compare@bench.test>\r\n\r\n"
              % ("demo@example.test", i, i))
    body = filler[:max(0, size - len(header))]
    if body.endswith("\r"):
        body = body[:-1]
    data = (header + body).encode()
    name = "%d.M%dP1.bench,S=%d:2," % (1700000000 + i, i, len(data))
    with open(os.path.join(base, "cur", name), "wb") as f:
        f.write(data)
PYEOF
  chown -R nobody:nogroup "$dove/mail"
}

dove_pid=""
start_dovecot() {
  dovecot -c "$dove/dovecot.conf" -F >"$dove/stdout.log" 2>&1 &
  dove_pid=$!
  pids+=("$dove_pid")
  wait_port "$dove_imap" 15 || die "Dovecot did not start (see $dove/dovecot.log)"
  wait_port "$dove_pop3" 15 || die "Dovecot did not start POP3"
}

# ---- ringpostd ----
rp=$work/ringpostd
rp_smtp=$(free_port)
rp_imap=$(free_port)
rp_pop3=$(free_port)
mkdir -p "$rp"
cat >"$rp/ringpost.toml" <<EOF
[server]
hostname = "mail.example.test"
cores = $(nproc)
pin_cores = false
data_dir = "$rp/data"
log_level = "warn"

[engine]
sessions_per_shard = $((idle + 512))
connections_per_ip = 0

[auth]
plaintext_loopback = true

[[domain]]
name = "example.test"

[[user]]
address = "$user"
password = "$password"

[[smtp.listener]]
address = "127.0.0.1:$rp_smtp"
kind = "mx"

[[imap.listener]]
address = "127.0.0.1:$rp_imap"
kind = "imap"

[[pop3.listener]]
address = "127.0.0.1:$rp_pop3"
kind = "pop3"
EOF

rp_pid=""
start_ringpostd() {
  (cd "$rp" && exec "$ringpostd" --config "$rp/ringpost.toml" >"$rp/ringpostd.log" 2>&1) &
  rp_pid=$!
  pids+=("$rp_pid")
  wait_port "$rp_smtp" 15 || die "ringpostd did not start (see $rp/ringpostd.log)"
  wait_port "$rp_imap" 15 || die "ringpostd did not listen for IMAP"
}

fill_ringpostd() {
  "$bench" smtp --port "$rp_smtp" --to "$user" --messages "$messages" --size "$size" \
    --sessions 10 --pipelining --quiet --json >"$rp/fill.json" ||
    die "filling ringpostd failed: $(head -c 400 "$rp/fill.json")"
  # Delivery to the mailbox follows the 250 within moments: wait until IMAP sees it all.
  local deadline=$((SECONDS + 120)) got=0
  while ((SECONDS < deadline)); do
    got=$("$bench" imap --port "$rp_imap" --user "$user" --password "$password" --no-body \
            --no-flags --json --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["mailbox_messages"])' || echo 0)
    ((got >= messages)) && return 0
    sleep 0.5
  done
  die "ringpostd holds $got of $messages messages after 120 s"
}

# ---- measuring ----
results=$work/results.tsv
: >"$results"

# run SERVER TEST PORT ARGS...: one ringpost-bench run; appends a JSON line with the
# server's CPU ticks for it.
run() {
  local server=$1 test=$2 port=$3; shift 3
  local pid=$rp_pid
  [[ $server == dovecot ]] && pid=$dove_pid
  local before after
  before=$(tree_ticks "$pid")
  if ! "$bench" "$@" --port "$port" --user "$user" --password "$password" --json --quiet \
      >"$work/run.json" 2>"$work/run.err"; then
    log "$server $test: ringpost-bench reported errors: $(head -c 300 "$work/run.json") $(head -c 300 "$work/run.err")"
  fi
  after=$(tree_ticks "$pid")
  python3 - "$server" "$test" "$((after - before))" "$clk_tck" "$work/run.json" >>"$results" <<'PYEOF'
import json, sys
server, test, ticks, tck, path = sys.argv[1:6]
try:
    r = json.load(open(path))
except Exception:
    r = {"completed": 0, "per_second": 0, "latency_ms": {}, "error_count": -1}
lat = r.get("latency_ms", {})
step = {"imap-flags": "flags", "pop3-retr": "retr"}.get(test, "fetch")
s = lat.get(step, {})
print(json.dumps({"server": server, "test": test, "cpu_s": int(ticks) / int(tck),
                  "completed": r.get("completed", 0), "per_second": r.get("per_second", 0),
                  "p99_ms": s.get("p99", 0), "mean_ms": s.get("mean", 0),
                  "errors": r.get("error_count", 0)}))
PYEOF
}

# idle SERVER PORT: N logged-in IMAP sessions; RSS of the server's process tree before and
# while they are held.
idle_run() {
  local server=$1 port=$2
  local pid=$rp_pid
  [[ $server == dovecot ]] && pid=$dove_pid
  local before during processes
  local out=$work/idle-$server.json err=$work/idle-$server.err
  rm -f "$out" "$err"
  read -r before _ < <(tree_pss "$pid")
  "$bench" imap --port "$port" --user "$user" --password "$password" --idle "$idle" \
    --hold 15s --threads 2 --timeout 60s --duration 120s --json --quiet >"$out" 2>"$err" &
  local bench_pid=$!
  pids+=("$bench_pid")
  local deadline=$((SECONDS + 120))
  until grep -q "sessions logged in" "$err" 2>/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$bench_pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  sleep 2  # Let the sessions settle (Dovecot's login processes hand over and exit).
  read -r during processes < <(tree_pss "$pid")
  wait "$bench_pid" || log "$server idle: ringpost-bench reported errors: $(head -c 300 "$out")"
  local logged
  logged=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["completed"])' "$out" 2>/dev/null || echo 0)
  echo "{\"server\": \"$server\", \"test\": \"imap-idle\", \"pss_before_kib\": $before, \"pss_during_kib\": $during, \"sessions\": $logged, \"processes\": $processes}" >>"$results"
}

log "work folder $work; $messages messages of $size bytes; $idle idle sessions"
log "filling Dovecot's Maildir and ringpostd (over SMTP)"
fill_maildir
start_dovecot
start_ringpostd
fill_ringpostd

imap_fetch=(imap --no-flags)
for server in dovecot ringpostd; do  # Warm-up: Dovecot builds its index, both fill caches.
  port=$rp_imap; [[ $server == dovecot ]] && port=$dove_imap
  "$bench" imap --port "$port" --user "$user" --password "$password" --quiet >/dev/null 2>&1 || true
done

for ((round = 1; round <= rounds; round++)); do
  log "round $round of $rounds"
  for server in dovecot ringpostd; do
    imap=$rp_imap; pop3=$rp_pop3
    if [[ $server == dovecot ]]; then imap=$dove_imap; pop3=$dove_pop3; fi
    run "$server" imap-fetch-1 "$imap" "${imap_fetch[@]}" --sessions 1
    run "$server" imap-fetch-10 "$imap" "${imap_fetch[@]}" --sessions 10 --threads 2
    run "$server" imap-flags "$imap" imap --no-body --rounds 5
    run "$server" pop3-retr "$pop3" pop3 --window 8
  done
done
log "idle sessions"
idle_run dovecot "$dove_imap"
idle_run ringpostd "$rp_imap"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $messages messages x $size bytes, $rounds rounds (medians), ringpostd cores=$(nproc); Dovecot $(dovecot --version | cut -d' ' -f1) defaults"
python3 - "$results" "$messages" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(test, server, key):
    values = [r[key] for r in rows if r["test"] == test and r["server"] == server and key in r]
    return statistics.median(values) if values else 0
targets = {"imap-fetch-1": ">= 2x", "imap-fetch-10": ">= 2x", "imap-flags": ">= 3x faster",
           "pop3-retr": ">= 2x"}
print("%-14s %12s %12s %7s %10s %10s %9s %9s  %s" % ("test", "dovecot/s", "ringpost/s", "ratio",
      "dove us/m", "rp us/m", "dove p99", "rp p99", "target"))
for test in ("imap-fetch-1", "imap-fetch-10", "imap-flags", "pop3-retr"):
    d, r = med(test, "dovecot", "per_second"), med(test, "ringpostd", "per_second")
    dc = med(test, "dovecot", "cpu_s") / max(med(test, "dovecot", "completed"), 1) * 1e6
    rc = med(test, "ringpostd", "cpu_s") / max(med(test, "ringpostd", "completed"), 1) * 1e6
    dp, rp = med(test, "dovecot", "p99_ms"), med(test, "ringpostd", "p99_ms")
    if test == "imap-flags":
        # Time per UID FETCH 1:* FLAGS (mean ms); the ratio is Dovecot's time over ours.
        dm, rm = med(test, "dovecot", "mean_ms"), med(test, "ringpostd", "mean_ms")
        print("%-14s %10.2fms %10.2fms %6.2fx %10s %10s %9.2f %9.2f  %s" % (
            test, dm, rm, dm / rm if rm else 0, "-", "-", dp, rp, targets[test]))
        continue
    print("%-14s %12.0f %12.0f %6.2fx %10.1f %10.1f %9.2f %9.2f  %s" % (
        test, d, r, r / d if d else 0, dc, rc, dp, rp, targets[test]))
errors = [(r["server"], r["test"], r["errors"]) for r in rows if r.get("errors")]
for server in ("dovecot", "ringpostd"):
    idle = [r for r in rows if r["test"] == "imap-idle" and r["server"] == server]
    if idle:
        i = idle[0]
        per = (i["pss_during_kib"] - i["pss_before_kib"]) / max(i["sessions"], 1)
        print("imap-idle      %-9s %5d sessions, %d processes: PSS %7d -> %7d KiB = %.1f KiB per session%s" % (
            server, i["sessions"], i["processes"], i["pss_before_kib"], i["pss_during_kib"], per,
            "  (target < 16 KiB)" if server == "ringpostd" else ""))
if errors:
    print("runs with errors:", errors)
PYEOF
