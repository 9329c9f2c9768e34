#!/usr/bin/env bash
# bench/compare_smtp.sh: the same SMTP load against Postfix's smtp-sink (in memory: the
# protocol's ceiling), a real Postfix delivering to a local mailbox (durable accept), and
# ringpostd, each driven by Postfix's smtp-source and by ringpost-bench, in one run,
# alternating. Prints a table: msgs/s, ratio vs Postfix, server and client CPU per message, p99
# accept latency (from ringpost-bench), and the memory per idle SMTP connection (Postfix and
# ringpostd: PSS growth of the server's whole process tree with --idle N connections open).
#
# Everything runs on loopback, from a temporary folder, on free ports. The script installs
# Postfix from Debian if it is missing (configured as "No configuration": nothing system-wide
# starts), and on exit (also Ctrl-C) stops only the processes it started and removes only
# its own folder.
#
#   bash bench/compare_smtp.sh                 # issue 3's load: 20,000 x 4 KiB, 50 sessions
#   bash bench/compare_smtp.sh --messages 2000 --sessions 10 --size 4096 --rounds 2
#
# Options:
#   --messages N      messages per run [20000]
#   --sessions S      concurrent sessions [50]
#   --size B          payload bytes per message; smtp-source adds ~100 bytes of headers,
#                     ringpost-bench is sized to send the same total [4096]
#   --per-session M   messages per connection: 0 = keep the connection (smtp-source -d),
#                     1 = a new connection per message (smtp-source without -d) [0]
#   --rounds R        repeat the whole alternation R times [1]
#   --targets LIST    comma list of sink,postfix,ringpostd [sink,postfix,ringpostd]
#   --clients LIST    comma list of smtp-source,ringpost-bench [smtp-source,ringpost-bench]
#   --bench-threads T ringpost-bench --threads [1, like smtp-source's one process]
#   --pipelining      also pass --pipelining to ringpost-bench (smtp-source never pipelines)
#   --idle N          idle SMTP connections (greeting read, EHLO answered) held open for the
#                     memory figure, before the throughput runs; 0 = skip [500]
#   --drain-timeout S how long to wait for Postfix's queue to empty after a run [300]
#   --keep            keep the temporary folder (logs, mailbox) and print its path
# Environment: RP_BENCH (ringpost-bench binary), RP_RINGPOSTD (ringpostd binary),
#   RP_RINGPOSTD_CONFIG (a config template with @PORT@ and @DATA@ placeholders), RP_BUILD_DIR
#   (where tools/ringpostd and tools/ringpost-bench are, if RP_BENCH/RP_RINGPOSTD are unset).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
messages=20000
sessions=50
size=4096
per_session=0
rounds=1
targets=sink,postfix,ringpostd
clients=smtp-source,ringpost-bench
bench_threads=1
pipelining=0
drain_timeout=300
idle=500
keep=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case "$1" in
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --per-session) per_session=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --bench-threads) bench_threads=$2; shift 2 ;;
    --pipelining) pipelining=1; shift ;;
    --drain-timeout) drain_timeout=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare_smtp: unknown option $1" >&2; usage 2 ;;
  esac
done

log() { echo "compare_smtp: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- what it needs ----
if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null \
   || ! command -v postfix >/dev/null; then
  log "installing Postfix from Debian (No configuration: nothing system-wide is started)"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postfix >/dev/null || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postfix >/dev/null; }
fi
export PATH=$PATH:/usr/sbin:/sbin
command -v python3 >/dev/null || die "python3 is needed to read ringpost-bench's JSON"

bench=${RP_BENCH:-}
if [[ -z $bench ]]; then
  for candidate in ${RP_BUILD_DIR:+"$RP_BUILD_DIR/tools/ringpost-bench"} \
      "$root/build/tools/ringpost-bench" "$root/build-bench/tools/ringpost-bench"; do
    if [[ -x $candidate ]]; then bench=$candidate; break; fi
  done
fi
if [[ -z $bench && $clients == *ringpost-bench* ]]; then
  log "building ringpost-bench in build/"
  cmake -S "$root" -B "$root/build" -G Ninja >/dev/null
  cmake --build "$root/build" --target ringpost-bench >/dev/null
  bench=$root/build/tools/ringpost-bench
fi
ringpostd=${RP_RINGPOSTD:-${RP_BUILD_DIR:-$root/build}/tools/ringpostd}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # --idle N connections, both ends.

# ---- our processes and folder, and nothing else ----
work=$(mktemp -d /tmp/rp-compare-smtp.XXXXXX)
chmod 755 "$work"
pids=()          # Every background process we started.
postfix_etc=""   # Set once our Postfix instance was started.

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $postfix_etc ]]; then
    postfix -c "$postfix_etc" abort >/dev/null 2>&1 || true
  fi
  if [[ -f $work/postfix/queue/pid/master.pid ]]; then
    local master
    master=$(tr -d ' ' <"$work/postfix/queue/pid/master.pid")
    [[ -n $master ]] && kill "$master" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then
    log "kept $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


wait_port() {  # PORT SECONDS
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1).close()" \
      2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

clk_tck=$(getconf CLK_TCK)

# CPU ticks of a process: its own, and those of the children it has reaped.
proc_ticks() {
  local stat
  # A child may exit between listing and reading: it counts 0 (master reaps its CPU).
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || stat=""
  [[ -n $stat ]] || { echo 0; return; }
  sed 's/.*) //' <<<"$stat" | awk '{ print $12 + $13 + $14 + $15 }'
}

# CPU ticks of a process tree (Postfix's master and its smtpd, cleanup, qmgr, local...).
# Children that exited were reaped by master, so their CPU is in master's cutime/cstime.
tree_ticks() {
  local total
  total=$(proc_ticks "$1")
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    total=$((total + $(proc_ticks "$child")))
  done
  echo "$total"
}

# ---- the servers ----
sink_pid=""
sink_port=""
start_sink() {
  sink_port=$(free_port)
  # -u nobody: smtp-sink drops root. Backlog 1000. No -c: counters would cost CPU.
  smtp-sink -u nobody "127.0.0.1:$sink_port" 1000 >"$work/smtp-sink.log" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  wait_port "$sink_port" 10 || die "smtp-sink did not start (see $work/smtp-sink.log)"
}

postfix_pid=""
postfix_port=""
start_postfix() {
  postfix_port=$(free_port)
  local base=$work/postfix
  mkdir -p "$base/etc" "$base/queue" "$base/data" "$base/mail"
  chown postfix "$base/data"
  chown nobody "$base/mail"   # Deliveries to files run as default_privs.
  cat >"$base/etc/main.cf" <<EOF
# A throwaway Postfix instance for bench/compare_smtp.sh: loopback only, own queue.
compatibility_level = 3.6
queue_directory = $base/queue
data_directory = $base/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination = bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps = hash:$base/etc/aliases
alias_database = hash:$base/etc/aliases
local_recipient_maps = \$alias_maps
allow_mail_to_files = alias
default_privs = nobody
biff = no
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = $base/maillog
smtpd_banner = \$myhostname ESMTP
# One smtpd process per connection: room for --idle connections (loopback is in mynetworks,
# so anvil's per-client limits do not apply; said again here).
default_process_limit = $((idle + 150))
smtpd_client_connection_count_limit = 0
EOF
  # Local delivery of every test message to one mbox file.
  echo "bench: $base/mail/bench.mbox" >"$base/etc/aliases"
  postalias -c "$base/etc" "$base/etc/aliases"
  cat >"$base/etc/master.cf" <<EOF
127.0.0.1:$postfix_port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
  postfix_etc=$base/etc
  postfix -c "$base/etc" start >"$work/postfix-start.log" 2>&1 \
    || die "Postfix did not start: $(tail -3 "$work/postfix-start.log")"
  wait_port "$postfix_port" 20 || die "Postfix smtpd is not listening (see $base/maillog)"
  postfix_pid=$(tr -d ' ' <"$base/queue/pid/master.pid")
}

postfix_queue_count() {
  find "$work/postfix/queue/"{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l
}

ringpostd_pid=""
ringpostd_port=""
ringpostd_skip=""
start_ringpostd() {
  if [[ ! -x $ringpostd ]]; then
    ringpostd_skip="no $ringpostd (build the engine first)"
    return
  fi
  ringpostd_port=$(free_port)
  local base=$work/ringpostd
  mkdir -p "$base/data"
  if [[ -n ${RP_RINGPOSTD_CONFIG:-} ]]; then
    sed -e "s|@PORT@|$ringpostd_port|g" -e "s|@DATA@|$base/data|g" "$RP_RINGPOSTD_CONFIG" \
      >"$base/ringpost.toml"
  elif [[ -f $root/config/demo.toml ]]; then
    # The demo configuration (example.test, demo@example.test), with its SMTP (mx) listener
    # on our free port, every other listener on another free port, and its files under our
    # folder.
    python3 - "$root/config/demo.toml" "$base" "$ringpostd_port" "$idle" >"$base/ringpost.toml" <<'PYEOF'
import re, socket, sys
text = open(sys.argv[1]).read()
base, port = sys.argv[2], sys.argv[3]
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
text = text.replace('"127.0.0.1:2525"', '"127.0.0.1:%s"' % port)
text = re.sub(r'"127\.0\.0\.1:(2\d{3})"', lambda m: '"127.0.0.1:%d"' % free_port(), text)
text = text.replace('".demo/', '"%s/' % base)
# Every --idle connection comes from 127.0.0.1: room for them past the per-address limit.
limit = max(256, int(sys.argv[4]) + 100)
text = re.sub(r'(?m)^connections_per_ip = \d+', 'connections_per_ip = %d' % limit, text)
# The product's default (config/ringpost.toml): each shard pinned to its core. The demo
# leaves it off so that it shares a desktop politely.
text = re.sub(r'(?m)^pin_cores = false', 'pin_cores = true', text)
sys.stdout.write(text)
PYEOF
  else
    ringpostd_skip="no config/demo.toml to start it with (set RP_RINGPOSTD_CONFIG)"
    return
  fi
  if ! "$ringpostd" --check-config --config "$base/ringpost.toml" >"$base/check.log" 2>&1; then
    ringpostd_skip="its config was refused: $(head -1 "$base/check.log") (set RP_RINGPOSTD_CONFIG)"
    return
  fi
  "$ringpostd" --config "$base/ringpost.toml" >"$base/ringpostd.log" 2>&1 &
  ringpostd_pid=$!
  pids+=("$ringpostd_pid")
  wait_port "$ringpostd_port" 20 || { ringpostd_skip="did not listen (see $base/ringpostd.log)"; }
}

# ---- one measured run ----
results=$work/results.tsv
: >"$results"

run_one() {  # ROUND TARGET CLIENT
  local round=$1 target=$2 client=$3 port pid to
  case $target in
    sink) port=$sink_port; pid=$sink_pid; to=bench@bench.test ;;
    postfix) port=$postfix_port; pid=$postfix_pid; to=bench@bench.test ;;
    ringpostd) port=$ringpostd_port; pid=$ringpostd_pid; to=demo@example.test ;;
  esac
  local tag=$work/run-$round-$target-$client
  local server_before server_after
  # The previous run's dirty pages (Postfix's mailbox and queue files are not all synced)
  # would otherwise be written back during this one and slow its fsyncs: start clean.
  sync
  server_before=$(tree_ticks "$pid")
  local TIMEFORMAT='%3R %3U %3S'
  local status=0
  if [[ $client == smtp-source ]]; then
    local reuse=(-d)
    ((per_session == 1)) && reuse=()
    { time smtp-source "${reuse[@]}" -s "$sessions" -m "$messages" -l "$size" \
        -f bench@bench.test -t "$to" -M bench.test "127.0.0.1:$port" \
        >"$tag.out" 2>&1; } 2>"$tag.time" || status=$?
  else
    local extra=()
    ((pipelining)) && extra+=(--pipelining)
    # smtp-source's -l counts the payload only; it adds about 100 bytes of headers.
    { time "$bench" smtp --host 127.0.0.1 --port "$port" --threads "$bench_threads" \
        --sessions "$sessions" --messages "$messages" --size $((size + 100)) \
        --per-session "$per_session" --from bench@bench.test --to "$to" --ehlo bench.test \
        --timeout 60s --quiet --json "${extra[@]}" >"$tag.json" 2>"$tag.out"; } \
        2>"$tag.time" || status=$?
  fi
  local load_end_ticks
  load_end_ticks=$(tree_ticks "$pid")
  local drain_s=0
  if [[ $target == postfix ]]; then
    # Count the work Postfix owes for these messages: wait until local delivery is done.
    local drain_start=$SECONDS
    while (($(postfix_queue_count) > 0)); do
      ((SECONDS - drain_start < drain_timeout)) || { log "Postfix queue did not drain"; break; }
      sleep 0.2
    done
    drain_s=$((SECONDS - drain_start))
  fi
  server_after=$(tree_ticks "$pid")
  read -r wall user sys <"$tag.time"
  local p99=- errors=0
  if [[ $client == ringpost-bench && -s $tag.json ]]; then
    read -r p99 errors < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.3f %d" % (r["latency_ms"]["accept"]["p99"], r["error_count"] + r["failed"]))' "$tag.json")
  elif ((status != 0)); then
    errors="exit $status"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$client" "$wall" \
    "$((server_after - server_before))" "$((load_end_ticks - server_before))" \
    "$user" "$sys" "$p99" "$errors" "$drain_s" >>"$results"
  log "round $round: $client -> $target: ${wall}s for $messages messages (errors: $errors)"
}


# ---- memory per idle connection (tree_pss in bench/lib.sh) ----
# Opens N connections one after another, reads each greeting, sends EHLO and reads its reply
# (every wait bounded), writes "ready OPEN" to READY_FILE, holds them until STOP_FILE exists
# (at most HOLD seconds), then closes them.
cat >"$work/idle.py" <<'PYEOF'
import os, socket, sys, time
port, count, ready_file, stop_file, hold = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                            sys.argv[4], float(sys.argv[5]))
deadline = time.monotonic() + 120
def reply(sock):  # Reads until the last line of a reply ("NNN " after any "NNN-" lines).
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
        for line in data.split(b"\r\n")[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return line
socks, failed = [], ""
for i in range(count):
    if time.monotonic() > deadline:
        failed = "time limit after %d connections" % i
        break
    s = None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if not reply(s).startswith(b"220"):
            raise OSError("no 220 greeting")
        s.sendall(b"EHLO idle.bench.test\r\n")
        if not reply(s).startswith(b"250"):
            raise OSError("EHLO refused")
        socks.append(s)
    except OSError as e:
        failed = "connection %d: %s" % (i + 1, e)
        if s is not None:
            s.close()
        break
with open(ready_file + ".tmp", "w") as f:
    f.write("ready %d %s\n" % (len(socks), failed))
os.rename(ready_file + ".tmp", ready_file)
end = time.monotonic() + hold
while not os.path.exists(stop_file) and time.monotonic() < end:
    time.sleep(0.1)
for s in socks:
    try:
        s.sendall(b"QUIT\r\n")
    except OSError:
        pass
    s.close()
PYEOF

idle_results=$work/idle.tsv
: >"$idle_results"
idle_run() {  # TARGET PORT PID
  local target=$1 port=$2 pid=$3 before during processes_before processes opened note
  local ready=$work/idle-$target.ready stop=$work/idle-$target.stop
  read -r before processes_before < <(tree_pss "$pid")
  python3 "$work/idle.py" "$port" "$idle" "$ready" "$stop" 180 >"$work/idle-$target.log" 2>&1 &
  local helper=$!
  pids+=("$helper")
  local deadline=$((SECONDS + 150))
  until [[ -s $ready ]]; do
    if ((SECONDS > deadline)) || ! kill -0 "$helper" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if [[ ! -s $ready ]]; then
    touch "$stop"
    wait "$helper" || true
    die "idle $target: the helper did not report: $(tail -3 "$work/idle-$target.log")"
  fi
  sleep 2  # Let the server settle (Postfix's master has forked every smtpd by now).
  read -r during processes < <(tree_pss "$pid")
  read -r _ opened note <"$ready"
  touch "$stop"
  wait "$helper" || log "idle $target: helper exit status $?"
  [[ -n $note ]] && log "idle $target: stopped early: $note"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$opened" "$before" "$during" \
    "$processes_before" "$processes" >>"$idle_results"
  log "idle $target: $opened connections: PSS $before -> $during KiB" \
    "($processes_before -> $processes processes)"
  sleep 1  # Postfix: let the smtpd processes read the QUITs before the load runs.
}

# ---- the run ----
IFS=, read -ra target_list <<<"$targets"
IFS=, read -ra client_list <<<"$clients"
for target in "${target_list[@]}"; do
  case $target in
    sink) start_sink ;;
    postfix) start_postfix ;;
    ringpostd) start_ringpostd ;;
    *) die "unknown target $target" ;;
  esac
done
if [[ -n $ringpostd_skip && $targets == *ringpostd* ]]; then
  log "ringpostd: skipped: $ringpostd_skip"
fi

# Idle connections first, on servers at rest: after the load, Postfix would hand the new
# connections to the smtpd processes the load left waiting, hiding their memory.
if ((idle > 0)); then
  for target in "${target_list[@]}"; do
    case $target in
      postfix) idle_run postfix "$postfix_port" "$postfix_pid" ;;
      ringpostd)
        if [[ -z $ringpostd_skip ]]; then
          idle_run ringpostd "$ringpostd_port" "$ringpostd_pid"
        fi ;;
    esac
  done
fi

for ((round = 1; round <= rounds; round++)); do
  for target in "${target_list[@]}"; do
    [[ $target == ringpostd && -n $ringpostd_skip ]] && continue
    # Alternate which client goes first, so neither always meets a server warmed (or
    # tired) by the other.
    order=("${client_list[@]}")
    if ((round % 2 == 0)); then
      order=()
      for ((i = ${#client_list[@]} - 1; i >= 0; i--)); do order+=("${client_list[i]}"); done
    fi
    for client in "${order[@]}"; do
      run_one "$round" "$target" "$client"
    done
  done
done

# ---- the table ----
echo
echo "SMTP accept: $messages messages of $size bytes (payload) from $sessions sessions," \
  "$( ((per_session == 0)) && echo "persistent connections" || echo "$per_session per connection")"
echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); client and servers share these cores"
python3 - "$results" "$messages" "$clk_tck" "${ringpostd_skip:-}" <<'EOF'
import sys
path, messages, tck, skip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
postfix = {}
for r in rows:
    if r[1] == "postfix":
        postfix[(r[0], r[2])] = messages / float(r[3])
head = ("round", "server", "client", "msgs/s", "vs postfix", "srv ms/msg", "cli ms/msg",
        "p99 acc ms", "errors")
fmt = "%-5s %-9s %-14s %9s %10s %10s %10s %10s %s"
print(fmt % head)
for r in rows:
    rnd, target, client, wall, srv_ticks, load_ticks, user, sys_, p99, errors, drain = r
    rate = messages / float(wall)
    base = postfix.get((rnd, client))
    ratio = "%.2fx" % (rate / base) if base else "-"
    srv_ms = float(srv_ticks) / tck * 1000 / messages
    cli_ms = (float(user) + float(sys_)) * 1000 / messages
    print(fmt % (rnd, target, client, "%.0f" % rate, ratio, "%.3f" % srv_ms, "%.3f" % cli_ms,
                 p99, errors))
if len({r[0] for r in rows}) > 1:
    import statistics
    groups = {}
    for r in rows:
        groups.setdefault((r[1], r[2]), []).append(r)
    med = lambda values: statistics.median(values)
    rate_of = lambda r: messages / float(r[3])
    base = {c: med([rate_of(r) for r in g]) for (t, c), g in groups.items() if t == "postfix"}
    print()
    print("median over %d rounds:" % len({r[0] for r in rows}))
    print(fmt % ("", "server", "client", "msgs/s", "vs postfix", "srv ms/msg", "cli ms/msg",
                 "p99 acc ms", "errors"))
    for (target, client), g in groups.items():
        rate = med([rate_of(r) for r in g])
        ratio = "%.2fx" % (rate / base[client]) if client in base else "-"
        srv = med([float(r[4]) / tck * 1000 / messages for r in g])
        cli = med([(float(r[6]) + float(r[7])) * 1000 / messages for r in g])
        p99s = [float(r[8]) for r in g if r[8] != "-"]
        p99 = "%.3f" % med(p99s) if p99s else "-"
        errors = sum(int(r[9]) if r[9].isdigit() else 1 for r in g)
        print(fmt % ("", target, client, "%.0f" % rate, ratio, "%.3f" % srv, "%.3f" % cli, p99,
                     errors))
print("msgs/s: messages / client wall time. srv ms/msg: CPU of the server's processes per "
      "message (Postfix: master, smtpd, cleanup, qmgr, local..., until its queue drained). "
      "cli ms/msg: the client's CPU. p99 acc: final dot to 250, from ringpost-bench.")
if skip:
    print("ringpostd: skipped: " + skip)
EOF
while IFS=$'\t' read -r target opened before during processes_before processes; do
  awk -v t="$target" -v n="$opened" -v b="$before" -v d="$during" -v pb="$processes_before" \
    -v p="$processes" 'BEGIN {
      printf "smtp-idle %-9s %5d connections, %d -> %d processes:", t, n, pb, p
      printf " PSS %d -> %d KiB", b, d
      printf " = %.1f KiB per connection\n", (n > 0 ? (d - b) / n : 0) }'
done <"$idle_results"
if [[ -s $idle_results ]]; then
  echo "smtp-idle: connections that read the greeting and had EHLO answered, held open; PSS of" \
    "the server's whole process tree (Postfix: master and an smtpd per connection) before and" \
    "with them open, over the number of connections."
fi
