#!/usr/bin/env python3
"""bench/compare_relay.py: relay end to end, ringpostd and Postfix side by side (issue 6).

Run through bench/compare_relay.sh (which installs what is missing). One load for each
server, in one run, alternating per round: ringpost-bench sends N messages of B bytes from
S sessions (pipelined) to recipients spread over D domains (d0.test ...), from a trusted
loopback client. Each server relays them to one Postfix smtp-sink on 127.0.0.2 (in memory,
counting transactions with -c). The clock runs from the first message sent to the last
transaction counted at the sink: accept + queue + relay, end to end.

- ringpostd: MX lookups go to a dnsmasq on 127.0.0.1 (started here) that names 127.0.0.2
  for every domain, with a TTL of 300 s (dnsmasq's default of 0 forbids caching; real MX
  records live minutes to days); ringpostd caches the answers.
- Postfix (a throwaway instance on loopback with its own queue): Postfix cannot be pointed
  at a loopback DNS server without touching the system resolver, so a transport map sends
  every domain to smtp:[127.0.0.2]:PORT. That skips DNS entirely, and all 100 domains become
  one next hop for Postfix's connection cache: both favour Postfix.

Prints msgs/s end to end, the server's CPU per message (Postfix: master and every child,
reaped or not), and the ratio. Stops only what it started and removes only its folder.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
if os.environ.get("RP_BUILD_DIR"):  # The daemons run in their own folders.
    os.environ["RP_BUILD_DIR"] = os.path.abspath(os.environ["RP_BUILD_DIR"])
import harness  # noqa: E402
import test_relay  # noqa: E402
from smtp_util import smtp_config, wait_for  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    """utime + stime + cutime + cstime of one process (0 when gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except OSError:
        return 0


def tree_ticks(pid):
    """A process and its live children (exited children are in its cutime/cstime)."""
    total = proc_ticks(pid)
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    for child in done.stdout.split():
        total += proc_ticks(int(child))
    return total


def wait_port(address, port, timeout):
    def up():
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return True
        except OSError:
            return False
    return wait_for(up, timeout=timeout, step=0.1)


class CountingSink:
    """smtp-sink -c on 127.0.0.2:port; count() is its completed DATA transactions."""

    def __init__(self, folder, port):
        self.port = port
        self.path = os.path.join(folder, "sink.out")
        self.out = open(self.path, "wb")
        self.process = subprocess.Popen(["smtp-sink", "-c", "-u", "nobody", "127.0.0.2:%d" % port,
                                         "1000"], stdout=self.out, stderr=subprocess.STDOUT)
        if not wait_port("127.0.0.2", port, 10):
            raise RuntimeError("smtp-sink did not start")

    def counters(self):
        """(sessions ended, sessions ended by QUIT, messages) from smtp-sink -c's counter."""
        with open(self.path, "rb") as f:
            f.seek(max(0, os.path.getsize(self.path) - 200))
            found = re.findall(rb"sess=(\d+) quit=(\d+) mesg=(\d+)", f.read())
        return tuple(int(x) for x in found[-1]) if found else (0, 0, 0)

    def count(self):
        return self.counters()[2]

    def open_connections(self):
        """Established connections to the sink now (ss), for sessions that have not ended."""
        done = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % self.port],
                              capture_output=True, text=True)
        return sum(1 for line in done.stdout.splitlines() if "127.0.0.2:%d" % self.port in line)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.out.close()


class Postfix:
    def __init__(self, folder, sink_port, domains):
        self.base = os.path.join(folder, "postfix")
        self.port, = harness.free_ports(1)
        etc = os.path.join(self.base, "etc")
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.base, sub))
        shutil.chown(os.path.join(self.base, "data"), "postfix")
        with open(os.path.join(etc, "transport"), "w") as f:
            for i in range(domains):
                f.write("d%d.test smtp:[127.0.0.2]:%d\n" % (i, sink_port))
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write("""# A throwaway Postfix for bench/compare_relay.py: loopback only, own queue.
compatibility_level = 3.6
queue_directory = {b}/queue
data_directory = {b}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
transport_maps = hash:{b}/etc/transport
smtp_host_lookup = native
disable_dns_lookups = yes
alias_maps =
local_recipient_maps =
biff = no
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = {b}/maillog
smtpd_banner = $myhostname ESMTP
""".format(b=self.base))
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write("""127.0.0.1:{p} inet n - n - - smtpd
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
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
""".format(p=self.port))
        subprocess.run(["postmap", "-c", etc, "hash:" + os.path.join(etc, "transport")], check=True)
        self.etc = etc
        done = subprocess.run(["postfix", "-c", etc, "start"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError("Postfix did not start: " + done.stdout + done.stderr)
        self.started = True
        if not wait_port("127.0.0.1", self.port, 20):
            raise RuntimeError("Postfix smtpd is not listening")
        with open(os.path.join(self.base, "queue", "pid", "master.pid")) as f:
            self.pid = int(f.read().strip())

    def queued(self):
        count = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.base, "queue", sub)):
                count += len(files)
        return count

    def stop(self):
        if self.started:
            subprocess.run(["postfix", "-c", self.etc, "abort"], capture_output=True)
            self.started = False


class Ringpostd:
    def __init__(self, dns_port, sink_port, relay_extra=""):
        self.port, = harness.free_ports(1)
        extra = ("\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\n\n[relay]\nport = %d\n"
                 "retry_schedule_s = [5]\n%s" % (dns_port, sink_port, relay_extra))
        text = smtp_config(self.port, trusted=("127.0.0.1/32",), extra=extra)
        text = text.replace('log_level = "info"', 'log_level = "%s"' % os.environ.get("RP_BENCH_LOG", "warn"))
        self.d = harness.Daemon(config_text=text, wait_ports=[self.port])
        self.d.start()
        self.pid = self.d.process.pid

    def queued(self):
        return 0  # The sink count says when it is done.

    def stop(self):
        code = self.d.stop()
        self.d.__exit__(None, None, None)
        if code != 0:
            raise RuntimeError("ringpostd exited %s" % code)


def run_one(name, server, sink, a):
    # The previous run's connections (kept idle by either server for about 2 s) end first,
    # so that they are not counted for this one.
    wait_for(lambda: sink.open_connections() == 0, timeout=30, step=0.1)
    before_sink = sink.count()
    before_sess, before_quit, _ = sink.counters()
    before_open = sink.open_connections()
    before_ticks = tree_ticks(server.pid)
    started = time.monotonic()
    bench = subprocess.run(
        [harness.binary("ringpost-bench"), "smtp", "--port", str(server.port),
         "--sessions", str(a.sessions), "--messages", str(a.messages), "--size", str(a.size),
         "--from", "bench@bench.test", "--to", "u@d%d.test", "--to-spread", str(a.domains),
         "--ehlo", "bench.test", "--pipelining", "--timeout", "60s", "--quiet"],
        capture_output=True, text=True, timeout=a.timeout)
    accepted = time.monotonic()
    target = before_sink + a.messages
    complete = wait_for(lambda: sink.count() >= target, timeout=a.timeout, step=0.05)
    done = time.monotonic()
    delivered = sink.count() - before_sink
    # Connections the sink saw during this run: those that ended plus those still open.
    sess, quits, _ = sink.counters()
    connections = sess - before_sess + sink.open_connections() - before_open
    # Let Postfix's processes settle (their CPU of this run lands in master's counters).
    ticks = tree_ticks(server.pid) - before_ticks
    errors = "" if bench.returncode == 0 else " (ringpost-bench exit %d: %s)" % (
        bench.returncode, (bench.stdout + bench.stderr).strip()[-300:])
    if not complete:
        errors += " (INCOMPLETE: %d of %d at the sink)" % (delivered, a.messages)
    return {"name": name, "accept_s": accepted - started, "e2e_s": done - started,
            "delivered": delivered, "cpu_s": ticks / TCK, "errors": errors,
            "connections": connections, "quits": quits - before_quit}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--domains", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--servers", default="ringpostd,postfix")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--ringpostd-relay", default="",
                   help="extra [relay] lines for ringpostd, e.g. 'deliveries_per_shard_max = 256'")
    a = p.parse_args()
    names = a.servers.split(",")
    # SIGTERM (Ctrl-C too) runs the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    test_relay.RECORDS[:] = (["--local=/test/"] +
                             ["--mx-host=d%d.test,mx.sink.test,10" % i for i in range(a.domains)] +
                             ["--host-record=mx.sink.test,127.0.0.2"])
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    folder = tempfile.mkdtemp(prefix="rp-compare-relay-")
    os.chmod(folder, 0o755)
    started = []
    results = []
    try:
        dns = test_relay.Dns(ttl=300)  # Cacheable, like real MX records.
        started.append(dns)
        sink_port, = harness.free_ports(1)
        sink = CountingSink(folder, sink_port)
        started.append(sink)
        servers = {}
        for name in names:
            server = Ringpostd(dns.port, sink_port, a.ringpostd_relay.replace("\\n", "\n") + "\n") \
                if name == "ringpostd" else \
                Postfix(folder, sink_port, a.domains)
            started.append(server)
            servers[name] = server
        for rnd in range(a.rounds):
            order = names if rnd % 2 == 0 else list(reversed(names))
            for name in order:
                r = run_one(name, servers[name], sink, a)
                r["round"] = rnd + 1
                results.append(r)
                print("compare_relay: round %d %s: %d delivered in %.2f s%s" % (
                    rnd + 1, name, r["delivered"], r["e2e_s"], r["errors"]), file=sys.stderr)
    finally:
        for thing in reversed(started):
            try:
                thing.stop()
            except Exception as e:  # Clean up the rest regardless.
                print("compare_relay: stop: %s" % e, file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)

    print()
    print("Relay end to end: %d messages of %d bytes, %d sessions (pipelined), %d domains, "
          "accept -> delivered at smtp-sink" % (a.messages, a.size, a.sessions, a.domains))
    print("machine: %d cores, %s; load average before %s, after %s" % (
        os.cpu_count(), os.uname().release, load_before,
        " ".join(open("/proc/loadavg").read().split()[:3])))
    fmt = "%-5s %-9s %10s %12s %10s %12s %12s %s"
    print(fmt % ("round", "server", "accept/s", "end-to-end/s", "vs postfix", "srv ms/msg",
                 "connections", "errors"))
    base = {r["round"]: r["delivered"] / r["e2e_s"] for r in results if r["name"] == "postfix"}
    for r in results:
        rate = r["delivered"] / r["e2e_s"]
        ratio = "%.2fx" % (rate / base[r["round"]]) if r["round"] in base else "-"
        print(fmt % (r["round"], r["name"], "%.0f" % (a.messages / r["accept_s"]), "%.0f" % rate,
                     ratio, "%.3f" % (1000 * r["cpu_s"] / max(r["delivered"], 1)),
                     "%d" % r["connections"], r["errors"] or "-"))
    if a.rounds > 1:
        print("median:")
        for name in names:
            mine = [r for r in results if r["name"] == name]
            rate = statistics.median(r["delivered"] / r["e2e_s"] for r in mine)
            cpu = statistics.median(1000 * r["cpu_s"] / max(r["delivered"], 1) for r in mine)
            ratio = "%.2fx" % (rate / statistics.median(base.values())) if base else "-"
            conns = statistics.median(r["connections"] for r in mine)
            print(fmt % ("", name, "", "%.0f" % rate, ratio, "%.3f" % cpu, "%.0f" % conns, ""))
    print("Postfix relays by a transport map to smtp:[127.0.0.2]:port (no DNS at all, every "
          "domain one next hop): this favours Postfix. ringpostd looks up MX at dnsmasq.")
    print("connections: TCP sessions the sink saw during the run (ended, by smtp-sink -c's "
          "sess= counter, plus those still open at the end, by ss).")
    print("srv ms/msg: CPU seconds of the server's processes / messages (client and sink not "
          "counted; they share the same cores).")


if __name__ == "__main__":
    main()
