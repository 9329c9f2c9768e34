# bench/lib.sh: helpers the side-by-side bench scripts share. Sourced, not run:
#   source "$root/bench/lib.sh"

# A free TCP port on 127.0.0.1 (the kernel's pick; free when asked).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:PORT accepts a connection; fails after SECONDS [15].
wait_port() {  # PORT [SECONDS]
  local deadline=$((SECONDS + ${2:-15}))
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" \
      2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Proportional set size (shared pages divided among the processes that map them) of a
# process tree, in KiB, and its process count: "PSS COUNT". Fair to a server made of many
# processes sharing libraries (Postfix: an smtpd per connection); one pass in Python, so
# 1000 processes are read in well under a second.
tree_pss() {  # PID
  python3 - "$1" <<'PYEOF'
import os, sys
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except OSError:
            pass
todo, total, count = [int(sys.argv[1])], 0, 0
while todo:
    pid = todo.pop()
    todo.extend(children.get(pid, []))
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    count += 1
                    break
    except OSError:
        pass
print(total, count)
PYEOF
}
