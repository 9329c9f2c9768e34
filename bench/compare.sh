#!/usr/bin/env bash
# bench/compare.sh: issue 7's comparison in one run. Runs, in turn,
#   bench/compare_smtp.sh    SMTP accept: Postfix (and smtp-sink) vs ringpostd, idle SMTP memory
#   bench/compare_access.sh  IMAP/POP3: Dovecot vs ringpostd, idle IMAP memory
#   bench/compare_relay.sh   relay end to end: Postfix vs ringpostd, both to one smtp-sink
#   bench/compare_tls.sh     STARTTLS + AUTH PLAIN submission: Postfix (+Dovecot SASL) vs ringpostd
# each of which installs what it needs from Debian, starts its servers with temporary configs on
# loopback, alternates the same loads against them, and on exit stops only what it started. Their
# own tables are printed as they finish; at the end comes one summary table: server pair, test,
# throughput ratio (ringpostd over the other), server CPU ms per message of each, memory per idle
# connection (PSS KiB) where measured, p99 ms where measured.
#
#   bash bench/compare.sh            # every script with its own defaults (issue sizes: long)
#   bash bench/compare.sh --quick    # small bounded sizes (a few minutes)
#
# Options:
#   --quick        small sizes for each script (see quick_args below)
#   --only LIST    comma list of smtp,access,relay,tls [all four]
#   --keep         keep this script's folder (each script's stdout and stderr) and print its path
# Environment: RP_BUILD_DIR (where tools/ringpostd and tools/ringpost-bench are) [build]; it sets
#   RP_BENCH and RP_RINGPOSTD for the scripts that read those, unless they are set.
# Exit status: 0 if every script succeeded; 1 (naming the scripts and their stderr) otherwise.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
only=smtp,access,relay,tls
keep=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case "$1" in
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare: unknown option $1" >&2; usage 2 ;;
  esac
done
log() { echo "compare: $*" >&2; }

export RP_BUILD_DIR=${RP_BUILD_DIR:-$root/build}
export RP_BENCH=${RP_BENCH:-$RP_BUILD_DIR/tools/ringpost-bench}
export RP_RINGPOSTD=${RP_RINGPOSTD:-$RP_BUILD_DIR/tools/ringpostd}
for tool in "$RP_BENCH" "$RP_RINGPOSTD"; do
  [[ -x $tool ]] || { log "no $tool (build ringpostd and ringpost-bench, or set RP_BUILD_DIR)"
    exit 1; }
done

quick_args() {  # NAME: bounded sizes for --quick
  case $1 in
    smtp) echo --messages 2000 --sessions 10 --idle 200 ;;
    access) echo --messages 2000 --idle 200 --rounds 1 ;;
    relay) echo --messages 2000 --sessions 20 --domains 20 --rounds 1 --timeout 300 ;;
    tls) echo --messages 500 --sessions 10 ;;
  esac
}

work=$(mktemp -d /tmp/rp-compare.XXXXXX)
cleanup() {
  local status=$?
  if ((keep)); then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
failed=()
IFS=, read -ra names <<<"$only"
for name in "${names[@]}"; do
  script=$root/bench/compare_$name.sh
  [[ -f $script ]] || { log "no $script"; exit 2; }
  args=()
  if ((quick)); then read -ra args <<<"$(quick_args "$name")"; fi
  log "$(date -u +%H:%M:%S) running bench/compare_$name.sh ${args[*]}" \
    "(load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "==== bench/compare_$name.sh ${args[*]}"
  set +e
  bash "$script" "${args[@]}" 2> >(tee "$work/$name.err" >&2) | tee "$work/$name.out"
  status=${PIPESTATUS[0]}
  set -e
  if ((status != 0)); then
    failed+=("$name")
    log "bench/compare_$name.sh FAILED (exit $status); its last stderr lines:"
    tail -5 "$work/$name.err" | sed 's/^/    /' >&2
  fi
done

echo
echo "==== summary: ringpostd against Postfix / Dovecot" \
  "(ratio = ringpostd's throughput over the other's)"
echo "started $started, ended $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) cores;" \
  "load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)" \
  "$( ((quick)) && echo "(--quick sizes)")"
python3 - "$work" "${names[@]}" <<'PYEOF'
import os, re, sys
work, names = sys.argv[1], sys.argv[2:]
rows = []  # (pair, test, ratio, cpu other, cpu rp, kib other, kib rp, p99 other, p99 rp)

def read(name):
    path = os.path.join(work, name + ".out")
    return open(path).read().splitlines() if os.path.exists(path) else []

def table(lines, header_start, end_prefixes=("",)):
    """Rows (token lists) after the last header line starting with header_start (the median
    table when a script prints one), until a blank line or a line starting with one of
    end_prefixes."""
    starts = [i for i, l in enumerate(lines) if l.split()[:len(header_start)] == header_start]
    if not starts:
        return []
    out = []
    for line in lines[starts[-1] + 1:]:
        if not line.strip() or any(p and line.startswith(p) for p in end_prefixes):
            break
        out.append(line.split())
    return out

def num(text):
    try:
        return float(text.rstrip("xms"))
    except ValueError:
        return None

def fmt(value, spec="%.3f"):
    return "-" if value is None else spec % value

def ratio(rp, other):
    return rp / other if rp is not None and other else None

def smtp():
    lines = read("smtp")
    if any(l.startswith("median over") for l in lines):
        body = table(lines, ["server", "client", "msgs/s"], ("msgs/s:", "median", "smtp-idle"))
    else:
        body = table(lines, ["round", "server", "client"], ("msgs/s:", "median", "smtp-idle"))
    by = {}
    for t in body:
        if t and t[0].isdigit():
            t = t[1:]
        if len(t) >= 7:
            by[(t[0], t[1])] = t
    for client in ("smtp-source", "ringpost-bench"):
        pf, rp = by.get(("postfix", client)), by.get(("ringpostd", client))
        if pf and rp:
            rows.append(("ringpostd/postfix", "smtp accept (%s)" % client,
                         ratio(num(rp[2]), num(pf[2])), num(pf[4]), num(rp[4]), None, None,
                         num(pf[6]), num(rp[6])))
    idle = {}
    for l in lines:
        m = re.match(r"smtp-idle (\S+)\s+(\d+) connections.*= ([\d.]+) KiB per connection", l)
        if m:
            idle[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    if idle:
        n = min(v[0] for v in idle.values())
        rows.append(("ringpostd/postfix", "smtp idle conns (%d)" % n, None, None, None,
                     idle.get("postfix", (0, None))[1], idle.get("ringpostd", (0, None))[1],
                     None, None))

def access():
    lines = read("access")
    for t in table(lines, ["test", "dovecot/s"], ("imap-idle", "runs with")):
        if len(t) < 8:
            continue
        test, d, r, rt, dc, rc, dp, rp = t[:8]
        us = lambda v: None if num(v) is None else num(v) / 1000
        if test == "imap-flags":  # Its columns are times: the ratio is Dovecot's over ours.
            rows.append(("ringpostd/dovecot", "imap flags (time)", num(rt), None, None, None,
                         None, num(dp), num(rp)))
        else:
            rows.append(("ringpostd/dovecot", test.replace("-", " "), num(rt), us(dc), us(rc),
                         None, None, num(dp), num(rp)))
    idle = {}
    for l in lines:
        m = re.match(r"imap-idle\s+(\S+)\s+(\d+) sessions.*= ([\d.]+) KiB per session", l)
        if m:
            idle[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    if idle:
        n = min(v[0] for v in idle.values())
        rows.append(("ringpostd/dovecot", "imap idle sessions (%d)" % n, None, None, None,
                     idle.get("dovecot", (0, None))[1], idle.get("ringpostd", (0, None))[1],
                     None, None))

def relay():
    lines = read("relay")
    body = table(lines, ["round", "server", "accept/s"], ("Postfix relays", "srv ms/msg"))
    median = [i for i, t in enumerate(body) if t and t[0] == "median:"]
    by = {}
    if median:
        for t in body[median[0] + 1:]:
            if len(t) >= 4:
                by[t[0]] = (num(t[1]), num(t[3]))
    else:
        for t in body:
            if len(t) >= 6 and t[0].isdigit():
                by[t[1]] = (num(t[3]), num(t[5]))
    if "postfix" in by and "ringpostd" in by:
        rows.append(("ringpostd/postfix", "relay end to end", ratio(by["ringpostd"][0],
                     by["postfix"][0]), by["postfix"][1], by["ringpostd"][1], None, None, None,
                     None))

def tls():
    lines = read("tls")
    by = {t[0]: t for t in table(lines, ["server", "accepted"]) if len(t) >= 7}
    if "postfix" in by and "ringpostd" in by:
        pf, rp = by["postfix"], by["ringpostd"]
        rows.append(("ringpostd/postfix", "starttls+auth submission", ratio(num(rp[2]), num(pf[2])),
                     num(pf[4]), num(rp[4]), None, None, None, None))

for name in names:
    {"smtp": smtp, "access": access, "relay": relay, "tls": tls}[name]()
head = ("pair", "test", "thrpt ratio", "other ms/msg", "rp ms/msg", "other KiB/conn",
        "rp KiB/conn", "other p99 ms", "rp p99 ms")
line = "%-18s %-28s %11s %12s %10s %14s %11s %12s %9s"
print(line % head)
for r in rows:
    print(line % (r[0], r[1], fmt(r[2], "%.2fx"), fmt(r[3]), fmt(r[4]), fmt(r[5], "%.1f"),
                  fmt(r[6], "%.1f"), fmt(r[7], "%.2f"), fmt(r[8], "%.2f")))
print("ms/msg: server CPU (whole process tree; Postfix until its queue drained) per message. "
      "KiB/conn: PSS growth of the server's process tree per idle connection. p99: from "
      "ringpost-bench (SMTP: final dot to 250). imap flags: ratio of times (Dovecot's over "
      "ringpostd's). CPU is counted in clock ticks (1/%d s): with --quick sizes a server that "
      "spends little CPU shows in steps. Figures come from each script's own table above."
      % os.sysconf("SC_CLK_TCK"))
PYEOF

if ((${#failed[@]} > 0)); then
  log "FAILED: ${failed[*]} (the summary lacks their rows; see their stderr above)"
  exit 1
fi
