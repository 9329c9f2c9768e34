#!/usr/bin/env python3
"""bench/relay_queue_memory.py: ringpostd's memory holding N deferred messages (issue 6).

1. Starts ringpostd once on an empty data folder (2 shards) and reads its VmRSS/VmHWM once
   it listens and has scanned the spool a few times: the baseline; stops it.
2. `ringpost queue fill N u%d@dN.test BYTES` writes N deferred messages (one recipient, due
   in an hour, BYTES each, < 1 KiB by default) through the store API, round-robin over the
   shards, as ringpostd would have written them.
3. Starts ringpostd again (recovery loads the spool), waits until it listens and a few relay
   scans ran, reads VmRSS and VmHWM, and prints the difference per message.

    RP_BUILD_DIR=build python3 bench/relay_queue_memory.py --messages 1000000

Runs in its own temporary folder on free loopback ports; stops only the daemon it started.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
if os.environ.get("RP_BUILD_DIR"):  # The daemons run in their own folders.
    os.environ["RP_BUILD_DIR"] = os.path.abspath(os.environ["RP_BUILD_DIR"])
import harness  # noqa: E402
from smtp_util import smtp_config, wait_for  # noqa: E402


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def measure(d, settle_s):
    """Starts the daemon; once every shard opened its store (recovery done), samples VmRSS
    each second until three samples agree within 1% (at most 120 s)."""
    started = time.monotonic()
    d.start(timeout=600)
    listening = time.monotonic() - started
    pid = d.process.pid
    if not wait_for(lambda: len(re.findall(r"shard \d+: store .* opened", d.log())) >= 2, timeout=900,
                    step=0.5):
        raise RuntimeError("the stores did not open:\n" + d.log()[-3000:])
    opened = time.monotonic() - started
    time.sleep(settle_s)  # Several relay scans (scan_interval_ms = 100).
    samples = []
    while len(samples) < 120:
        samples.append(status_kib(pid, "VmRSS"))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= max(last) / 100:
            break
        time.sleep(1.0)
    print("VmRSS each second once the stores opened (MiB): %s" % " ".join("%.0f" % (k / 1024) for k in samples))
    return listening, opened, samples[-1], status_kib(pid, "VmHWM")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--bytes", type=int, default=800)
    p.add_argument("--settle", type=float, default=2.0)
    a = p.parse_args()
    port, dns_port = harness.free_ports(2)
    # The resolver names a port where nobody answers: nothing is due anyway.
    extra = ("\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\n\n[relay]\nretry_schedule_s = [3600]\n"
             "scan_interval_ms = 100\n" % dns_port)
    text = smtp_config(port, trusted=("127.0.0.1/32",), extra=extra)
    d = harness.Daemon(config_text=text, wait_ports=[port])
    try:
        _, _, base_rss, base_hwm = measure(d, a.settle)
        if d.stop() != 0:
            raise RuntimeError("ringpostd failed:\n" + d.log()[-3000:])
        started = time.monotonic()
        fill = subprocess.run([harness.binary("ringpost"), "--config", d.config_path, "queue", "fill",
                               str(a.messages), "u%d@d1.test", str(a.bytes)],
                              cwd=d.folder, capture_output=True, text=True)
        if fill.returncode != 0:
            raise RuntimeError("queue fill: " + fill.stdout + fill.stderr)
        fill_s = time.monotonic() - started
        du = subprocess.run(["du", "-sk", os.path.join(d.folder, "data")], capture_output=True, text=True)
        listening, opened, rss, hwm = measure(d, a.settle)
        with open("/proc/%d/stat" % d.process.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        stop_started = time.monotonic()
        code = d.stop(timeout=120)
        stop_s = time.monotonic() - stop_started
        log = d.log()
    finally:
        d.__exit__(None, None, None)
    n = a.messages
    print("ringpostd holding %d deferred messages of %d bytes (2 shards)" % (n, a.bytes))
    print("fill (ringpost queue fill): %.1f s; data folder %.0f MiB" % (
        fill_s, int(du.stdout.split()[0]) / 1024))
    print("start to listening: %.2f s; to both stores opened (recovery): %.2f s; CPU until "
          "measured: %.2f s" % (listening, opened, cpu_s))
    print("VmRSS: empty %.1f MiB, with the queue %.1f MiB: %.0f bytes per message" % (
        base_rss / 1024, rss / 1024, (rss - base_rss) * 1024 / n))
    print("VmHWM: empty %.1f MiB, with the queue %.1f MiB: %.0f bytes per message" % (
        base_hwm / 1024, hwm / 1024, (hwm - base_hwm) * 1024 / n))
    print("SIGTERM to exit: %.1f s" % stop_s)
    print("load average: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    if code != 0:
        print("ringpostd exit code %s:\n%s" % (code, log[-3000:]))
        sys.exit(1)


if __name__ == "__main__":
    main()
