#!/usr/bin/env python3
"""bench/relay_e2e.py: end-to-end relay throughput on loopback.

ringpost-bench sends N messages (4 KiB) from a trusted client to recipients at D remote
domains; dnsmasq answers their MX with 127.0.0.2, where Postfix's smtp-sink accepts them.
Prints the accept rate and the end-to-end rate (first message sent -> last one delivered at
the sink, counted in the daemon's log), and ringpostd's CPU seconds per message.

    RP_BUILD_DIR=build python3 bench/relay_e2e.py --messages 5000 --sessions 50 --domains 100
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_for  # noqa: E402
from test_relay import Dns, RECORDS, Sink  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--domains", type=int, default=100)
    a = p.parse_args()
    RECORDS[:] = ["--local=/test/"] + ["--mx-host=d%d.test,mx.sink.test,10" % i
                                       for i in range(a.domains)] + \
        ["--host-record=mx.sink.test,127.0.0.2", "--mx-host=remote.test,mx.sink.test,10"]
    dns = Dns(ttl=300)  # Cacheable, like real MX records.
    port, sink_port = harness.free_ports(2)
    sink = Sink("127.0.0.2", sink_port)
    sink.stop()  # Again without dumping to files: the sink must not be the bottleneck.
    sink.process = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.2:%d" % sink_port, "256"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    extra = ("\n[dns]\nresolvers = [\"127.0.0.1:%d\"]\n\n[relay]\nport = %d\nscan_interval_ms = 50\n"
             "retry_schedule_s = [5]\n" % (dns.port, sink_port))
    d = harness.Daemon(config_text=smtp_config(port, trusted=("127.0.0.1/32",), extra=extra),
                       wait_ports=[port])
    try:
        d.start()
        started = time.monotonic()
        # %d in --to spreads the recipients over the domains d0.test .. d(D-1).test.
        bench = subprocess.run(
            [harness.binary("ringpost-bench"), "smtp", "--port", str(port), "--sessions", str(a.sessions),
             "--messages", str(a.messages), "--from", "demo@example.test",
             "--to", "u@d%d.test", "--to-spread", str(a.domains), "--pipelining", "--quiet"],
            capture_output=True, text=True, timeout=600)
        accepted_at = time.monotonic()
        print(bench.stdout.strip())
        ok = wait_for(lambda: d.log().count("status=sent") >= a.messages, timeout=600, step=0.2)
        done = time.monotonic()
        sent = d.log().count("status=sent")
        with open("/proc/%d/stat" % d.process.pid) as f:
            fields = f.read().split(")")[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        print("accept: %d messages in %.2f s = %.0f msg/s" % (a.messages, accepted_at - started,
                                                               a.messages / (accepted_at - started)))
        print("end to end: %d/%d delivered in %.2f s = %.0f msg/s%s" % (
            sent, a.messages, done - started, sent / (done - started), "" if ok else " (INCOMPLETE)"))
        print("ringpostd CPU: %.2f s = %.3f ms per message" % (cpu_s, 1000.0 * cpu_s / max(sent, 1)))
        d.stop()
    finally:
        d.__exit__(None, None, None)
        sink.close()
        dns.stop()


if __name__ == "__main__":
    main()
