"""tests/integration/test_bench_relay.py: `ringpost-bench relay` end to end (issue 7): the bench
sends through the real ringpostd (a trusted client) to recipients at remote domains whose MX
dnsmasq (on loopback) points at the bench's own sink on 127.0.0.2; every accepted message is
delivered exactly once and has an accept-to-delivered latency. Bounded: 200 messages, 30 s."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config  # noqa: E402
import test_relay  # noqa: E402

DOMAINS = 5


class BenchRelay(unittest.TestCase):
    # Proves the relay subcommand's counts: 200 accepted, 200 delivered to the sink, no
    # duplicate, a latency per delivery; and, with the sink on a port the daemon does not
    # relay to, the undelivered messages are counted and fail the run.
    def test_relay_end_to_end(self):
        test_relay.RECORDS[:] = ["--local=/test/", "--host-record=mx.sink.test,127.0.0.2"] + [
            "--mx-host=d%d.test,mx.sink.test,10" % i for i in range(DOMAINS)] + [
            "--mx-host=remote.test,mx.sink.test,10"]
        dns = test_relay.Dns()
        self.addCleanup(dns.stop)
        port, sink_port, other_port = harness.free_ports(3)
        extra = ('\n[dns]\nresolvers = ["127.0.0.1:%d"]\n\n[relay]\nport = %d\n'
                 'scan_interval_ms = 50\nretry_schedule_s = [1]\n' % (dns.port, sink_port))
        d = harness.Daemon(config_text=smtp_config(port, trusted=("127.0.0.1/32",), extra=extra),
                           wait_ports=[port])
        with d:
            done = subprocess.run(
                [harness.binary("ringpost-bench"), "relay", "--sink", "127.0.0.2:%d" % sink_port,
                 "--port", str(port), "--sessions", "8", "--messages", "200", "--pipelining",
                 "--from", "demo@example.test", "--to", "u@d%d.test", "--to-spread", str(DOMAINS),
                 "--duration", "30s", "--drain-timeout", "30s", "--json", "--quiet"],
                capture_output=True, timeout=90)
            self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace") +
                             done.stdout.decode(errors="replace") + d.log()[-3000:])
            report = json.loads(done.stdout)
            self.assertEqual(report["protocol"], "relay")
            self.assertEqual(report["counters"]["accepted"], 200)
            self.assertEqual(report["completed"], 200)
            self.assertEqual(report["error_count"], 0)
            self.assertEqual(report["latency_ms"]["delivered"]["count"], 200)
            self.assertGreater(report["counters"]["sink_connections"], 0)
            # The sink on a port the daemon does not use: nothing arrives within the drain.
            done = subprocess.run(
                [harness.binary("ringpost-bench"), "relay", "--sink", "127.0.0.2:%d" % other_port,
                 "--port", str(port), "--messages", "5", "--from", "demo@example.test",
                 "--to", "u@d1.test", "--drain-timeout", "1s", "--duration", "10s", "--json",
                 "--quiet"], capture_output=True, timeout=60)
            self.assertEqual(done.returncode, 1)
            report = json.loads(done.stdout)
            self.assertEqual(report["counters"]["accepted"], 5)
            self.assertEqual(report["errors"].get("not delivered"), 5, report["errors"])
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
