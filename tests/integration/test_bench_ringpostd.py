"""tests/integration/test_bench_ringpostd.py: ringpost-bench against the real ringpostd (issue
7's smoke run): zero errors, exact counts, ordered percentiles, and the mail it says was
accepted is really in the mailboxes. Bounded: 600 messages, 20 s at most."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_mailbox  # noqa: E402

USERS = ["u%d@example.test" % i for i in range(4)]


class BenchAgainstRingpostd(unittest.TestCase):
    # Proves ringpost-bench's report matches what the daemon stored: 600 accepted messages,
    # spread over 4 users (so over both shards), all delivered.
    def test_smtp_load(self):
        port, = harness.free_ports(1)
        d = harness.Daemon(config_text=smtp_config(port, users=USERS), wait_ports=[port])
        with d:
            done = subprocess.run(
                [harness.binary("ringpost-bench"), "smtp", "--port", str(port), "--threads", "2",
                 "--sessions", "12", "--messages", "600", "--size", "1k-16k", "--pipelining",
                 "--to", "u%d@example.test", "--to-spread", "4", "--duration", "20s",
                 "--json", "--quiet"], capture_output=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
            report = json.loads(done.stdout)
            self.assertEqual(report["attempted"], 600)
            self.assertEqual(report["completed"], 600)
            self.assertEqual(report["error_count"], 0)
            self.assertGreater(report["per_second"], 0)
            for step in ("envelope", "accept", "message"):
                s = report["latency_ms"][step]
                self.assertLessEqual(s["p50"], s["p99"])
                self.assertLessEqual(s["p99"], s["max"])
            self.assertEqual(report["latency_ms"]["accept"]["count"], 600)
            total = sum(len(wait_mailbox(d, user, 150)) for user in USERS)
            self.assertEqual(total, 600)
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
