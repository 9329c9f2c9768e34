#!/usr/bin/env bash
# bench/compare_tls.sh: submission with STARTTLS + AUTH PLAIN, a temporary Postfix (Dovecot SASL
# from a temporary, auth-only Dovecot with a passwd-file user) against ringpostd, side by side,
# one certificate (ECDSA P-256) for both, loaded by the same client
# (ringpost-bench smtp --starttls --auth PLAIN).
#
#   bash bench/compare_tls.sh [--messages N] [--sessions N] [--per-session N]
#                             [--persistent-sessions N] [--persistent-messages N] [--groups LIST]
#                             [--pin] [--threads N] [--keep]
#
# Two modes, both servers in each, one summary table per mode:
#   new connection per message (--per-session 1, --sessions 20): a full TLS handshake, AUTH and
#     one message, so msgs/s is also handshakes/s;
#   persistent (--per-session 0, --persistent-sessions 50): encrypted SMTP throughput, 50
#     sessions sending many messages each (like the plain 50-session SMTP load);
#     --persistent-messages N [5 x --messages] messages in this mode.
# --per-session N runs only that mode (N > 0 counts as "new connection" with N per session).
# --groups: the key exchange groups the client offers, key share for the first
#   [X25519,P-256,P-384: what Thunderbird, OpenSSL and Apple clients offer]; P-256 forces P-256.
# --pin: the server on CPU 0 (ringpostd one shard; Postfix and its Dovecot restricted with
#   taskset), the load client on CPU 1: the same rule for both servers, and the client no
#   longer competes with the server for its core. Default: no pinning (ringpostd 2 shards).
# --threads sets ringpost-bench's client threads [1].
# Prints msgs/s, server and client CPU per message and the ratio to Postfix. Postfix counts until its
# queue is empty (local delivery done); its CPU includes the auth-only Dovecot's. ringpostd
# answers 250 after fdatasync.
# Only loopback, only free high ports, own config and folders (no /etc, no system service);
# stops only what it started.
# Environment: RP_BUILD_DIR (default build/), or RP_BENCH and RP_RINGPOSTD.
# (Cyrus SASL was dropped: Debian's libsasl2 opened /etc/sasldb2 whatever the config said.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
messages=2000
sessions=20
per_session=both
persistent_sessions=50
persistent_messages=0
groups=X25519,P-256,P-384
pin=0
threads=1
keep=0
while (($#)); do
  case $1 in
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --per-session) per_session=$2; shift 2 ;;
    --persistent-sessions) persistent_sessions=$2; shift 2 ;;
    --persistent-messages) persistent_messages=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --threads) threads=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_tls: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "compare_tls: $*" >&2; }
die() { log "$*"; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin
server_cpus=() client_cpus=() ringpostd_cores=2
if ((pin)); then
  (($(nproc) >= 2)) || die "--pin needs two CPUs"
  server_cpus=(taskset -c 0) client_cpus=(taskset -c 1) ringpostd_cores=1
fi
for tool in postfix dovecot openssl python3 taskset; do
  command -v $tool >/dev/null || die "$tool is missing (bash tools/deps.sh)"
done
build=${RP_BUILD_DIR:-$root/build}
bench=${RP_BENCH:-$build/tools/ringpost-bench}
ringpostd=${RP_RINGPOSTD:-$build/tools/ringpostd}
[[ -x $bench && -x $ringpostd ]] || die "build ringpostd and ringpost-bench first ($build)"

work=$(mktemp -d /tmp/rp-compare-tls.XXXXXX)
chmod 755 "$work"
pids=()
postfix_etc=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $postfix_etc ]] && postfix -c "$postfix_etc" abort >/dev/null 2>&1 || true
  postfix_etc=""
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() {  # PORT SECONDS
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
proc_ticks() {
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}
tree_ticks() {  # A process and its live children (exited ones are in its cutime/cstime).
  local total child
  total=$(proc_ticks "$1")
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do total=$((total + $(proc_ticks "$child"))); done
  echo "$total"
}
clk_tck=$(getconf CLK_TCK)
reaped_ticks() {  # CPU of this shell's reaped children (ringpost-bench, when it has exited).
  sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'
}

# ---- one certificate for both ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=mail.example.test" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem"

# ---- Dovecot, auth only: Postfix's SASL server (a unix socket in its own base_dir) ----
dove=$work/dovecot
mkdir -p "$dove/run" "$dove/state"
printf '%s:{PLAIN}%s::::::\n' demo@example.test demo >"$dove/passwd"
cat >"$dove/dovecot.conf" <<EOF
# A throwaway, auth-only Dovecot for bench/compare_tls.sh: no listeners, its own folders.
base_dir = $dove/run
state_dir = $dove/state
log_path = $dove/dovecot.log
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dove/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener postfix-auth {
    mode = 0666
  }
}
EOF
${server_cpus[@]+"${server_cpus[@]}"} dovecot -c "$dove/dovecot.conf" -F >"$dove/stdout.log" 2>&1 &
dove_pid=$!
pids+=("$dove_pid")
dove_socket=$dove/run/postfix-auth
deadline=$((SECONDS + 15))
until [[ -S $dove_socket ]]; do
  kill -0 "$dove_pid" 2>/dev/null || die "Dovecot did not start: $(tail -3 "$dove/stdout.log" "$dove/dovecot.log" 2>/dev/null)"
  ((SECONDS < deadline)) || die "Dovecot made no auth socket (see $dove/dovecot.log)"
  sleep 0.1
done

# ---- Postfix: smtpd with STARTTLS and Dovecot SASL ----
postfix_port=$(free_port)
base=$work/postfix
mkdir -p "$base/etc" "$base/queue" "$base/data" "$base/mail"
chown postfix "$base/data"
chown nobody "$base/mail"
cat >"$base/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $base/queue
data_directory = $base/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = example.test
mydestination = example.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps = hash:$base/etc/aliases
alias_database = hash:$base/etc/aliases
local_recipient_maps = \$alias_maps
allow_mail_to_files = alias
default_privs = nobody
biff = no
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = $base/maillog
smtpd_tls_cert_file = $work/cert.pem
smtpd_tls_key_file = $work/key.pem
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_session_cache_database =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dove_socket
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
EOF
echo "demo: $base/mail/demo.mbox" >"$base/etc/aliases"
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
smtp      unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
tlsmgr    unix  - - n 1000? 1 tlsmgr
postlog   unix-dgram n - n - 1 postlogd
EOF
postfix_etc=$base/etc
${server_cpus[@]+"${server_cpus[@]}"} postfix -c "$base/etc" start >"$work/postfix-start.log" 2>&1 || die "Postfix did not start: $(tail -3 "$work/postfix-start.log")"
wait_port "$postfix_port" 20 || die "Postfix is not listening"
postfix_pid=$(tr -d ' ' <"$base/queue/pid/master.pid")

# ---- ringpostd: a submission listener, the same certificate, demo@example.test / demo ----
ringpostd_port=$(free_port)
mkdir -p "$work/ringpostd/data"
cat >"$work/ringpostd/ringpost.toml" <<EOF
[server]
hostname = "mail.example.test"
cores = $ringpostd_cores
pin_cores = false
data_dir = "$work/ringpostd/data"
log_level = "warn"

[[smtp.listener]]
address = "127.0.0.1:$ringpostd_port"
kind = "submission"

[tls]
cert_file = "$work/cert.pem"
key_file = "$work/key.pem"

[auth]
failures_max = 1000

[[domain]]
name = "example.test"

[[user]]
address = "demo@example.test"
password = "demo"
EOF
${server_cpus[@]+"${server_cpus[@]}"} "$ringpostd" --config "$work/ringpostd/ringpost.toml" >"$work/ringpostd.log" 2>&1 &
ringpostd_pid=$!
pids+=("$ringpostd_pid")
wait_port "$ringpostd_port" 20 || die "ringpostd did not listen: $(tail -3 "$work/ringpostd.log")"

postfix_queue_count() {
  find "$base/queue/"{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l
}

run() {  # MODE NAME PORT PID [PID...]: the server's CPU is that of every PID's tree
  local mode=$1 name=$2 port=$3 before=0 after=0 start end pid client_before client_after
  local mode_sessions=$sessions mode_per_session=$per_session mode_messages=$messages
  shift 3
  if [[ $mode == persistent ]]; then
    mode_sessions=$persistent_sessions mode_per_session=0
    mode_messages=$((persistent_messages > 0 ? persistent_messages : 5 * messages))
  fi
  if [[ $mode == new && $per_session == both ]]; then mode_per_session=1; fi
  for pid in "$@"; do before=$((before + $(tree_ticks "$pid"))); done
  start=$(date +%s.%N)
  client_before=$(reaped_ticks)
  ${client_cpus[@]+"${client_cpus[@]}"} "$bench" smtp --threads "$threads" --host 127.0.0.1 \
    --port "$port" --starttls --groups "$groups" --auth PLAIN --user demo@example.test \
    --password demo --sessions "$mode_sessions" --messages "$mode_messages" --per-session "$mode_per_session" \
    --size 4096 --from demo@example.test --to demo@example.test --to-spread 1 --timeout 60s \
    --quiet --json >"$work/$mode-$name.json" 2>"$work/$mode-$name.err" || log "$mode $name: ringpost-bench reported errors"
  client_after=$(reaped_ticks)
  if [[ $name == postfix ]]; then
    local drain=$SECONDS
    while (($(postfix_queue_count) > 0)) && ((SECONDS - drain < 120)); do sleep 0.2; done
  fi
  end=$(date +%s.%N)
  for pid in "$@"; do after=$((after + $(tree_ticks "$pid"))); done
  python3 - "$work/$mode-$name.json" "$mode" "$name" "$start" "$end" "$before" "$after" "$clk_tck" \
    "$((client_after - client_before))" <<'PY' >>"$work/results"
import json, sys
path, mode, name, start, end, before, after, tck, client = sys.argv[1:]
data = json.load(open(path))
ok = data.get("completed", 0)
seconds = float(end) - float(start)
cpu = (int(after) - int(before)) / float(tck)
print("%s\t%s\t%d\t%.3f\t%.3f\t%.3f" % (mode, name, ok, seconds, cpu, int(client) / float(tck)))
PY
}

uptime >&2
modes=(new persistent)
[[ $per_session == both ]] || { ((per_session > 0)) && modes=(new) || modes=(persistent); }
for mode in "${modes[@]}"; do
  run "$mode" postfix "$postfix_port" "$postfix_pid" "$dove_pid"
  run "$mode" ringpostd "$ringpostd_port" "$ringpostd_pid"
done
uptime >&2
python3 - "$work/results" "$per_session" "$sessions" "$persistent_sessions" "$groups" "$pin" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
per, sessions, persistent, groups, pin = sys.argv[2:]
titles = {
    "new": "new connection per message (%s per session, %s sessions: msgs/s = handshakes/s)"
           % ("1" if per == "both" else per, sessions),
    "persistent": "persistent connections (%s sessions, encrypted SMTP throughput)" % persistent,
}
print("STARTTLS + AUTH PLAIN + 4 KiB messages; client groups %s; %s" %
      (groups, "server on CPU 0, client on CPU 1" if pin == "1" else "no CPU pinning"))
for mode in ("new", "persistent"):
    mode_rows = [r[1:] for r in rows if r[0] == mode]
    if not mode_rows:
        continue
    print()
    print(titles[mode])
    print("%-10s %8s %9s %10s %12s %10s %12s" % ("server", "accepted", "msgs/s", "vs postfix",
          "CPU ms/msg", "CPU ratio", "client ms/msg"))
    base = base_cpu = None
    for name, ok, seconds, cpu, client in mode_rows:
        ok, seconds, cpu, client = int(ok), float(seconds), float(cpu), float(client)
        rate = ok / seconds if seconds > 0 else 0
        cost = 1000 * cpu / max(ok, 1)
        if name == "postfix":
            base, base_cpu = rate, cost
        print("%-10s %8d %9.0f %10s %12.3f %10s %12.3f" % (name, ok, rate,
              "%.2fx" % (rate / base) if base else "-", cost,
              "%.2fx" % (base_cpu / cost) if base_cpu and cost else "-", 1000 * client / max(ok, 1)))
PY
