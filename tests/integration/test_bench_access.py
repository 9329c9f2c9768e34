"""tests/integration/test_bench_access.py: `ringpost-bench pop3` and `ringpost-bench imap`
against the real ringpostd (issue 7): zero errors, and the counts the bench reports match the
mailbox the bench itself filled over SMTP; plain, STARTTLS and implicit TLS (IMAP); --idle
sessions; a wrong password is counted. Bounded: 60 messages, every run 20 s at most."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import smtp_config, wait_mailbox  # noqa: E402

DEMO = "demo@example.test"
OTHER = "other@example.test"
COUNT = 60
AUTH = ("\n[auth]\nplaintext_loopback = true\nfailure_delay_ms = 20\n"
        "failure_delay_max_ms = 100\n")


def bench(*args, timeout=60):
    """Runs ringpost-bench with `args`; returns (exit code, JSON report or None, stderr)."""
    done = subprocess.run([harness.binary("ringpost-bench")] + list(args) + ["--json", "--quiet"],
                          capture_output=True, timeout=timeout)
    report = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, report, done.stderr.decode(errors="replace")


class BenchAccess(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ports = harness.free_ports(4)
        cls.smtp, cls.pop3, cls.imap, cls.imaps = ports
        extra = AUTH + ('\n[tls]\ncert_file = "tls/cert.pem"\nkey_file = "tls/key.pem"\n'
                        'self_signed = true\n')
        # (pop3s is not served yet: POP3 gets TLS through STLS.)
        for section, kind, port in (("pop3", "pop3", cls.pop3), ("imap", "imap", cls.imap),
                                    ("imap", "imaps", cls.imaps)):
            extra += '\n[[%s.listener]]\naddress = "127.0.0.1:%d"\nkind = "%s"\n' % (
                section, port, kind)
        cls.daemon = harness.Daemon(config_text=smtp_config(cls.smtp, users=[DEMO, OTHER],
                                                            extra=extra), wait_ports=ports)
        cls.daemon.start()
        # The bench fills the mailboxes itself: COUNT messages of 4 KiB for each user.
        for user in (DEMO, OTHER):
            code, report, stderr = bench("smtp", "--port", str(cls.smtp), "--to", user,
                                         "--messages", str(COUNT), "--sessions", "4",
                                         "--size", "4k", "--duration", "20s")
            assert code == 0, stderr
            assert len(wait_mailbox(cls.daemon, user, COUNT)) == COUNT

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def check(self, result, sessions, rounds=1):
        code, report, stderr = result
        self.assertEqual(code, 0, stderr + json.dumps(report))
        self.assertEqual(report["error_count"], 0)
        self.assertEqual(report["counters"]["mailbox_messages"], COUNT)
        self.assertEqual(report["counters"]["rounds"], sessions * rounds)
        self.assertEqual(report["completed"], COUNT * sessions * rounds)
        # 4096-byte messages, plus the Received: header the daemon prepends.
        self.assertGreater(report["payload_bytes"], 4096 * COUNT * sessions * rounds)
        self.assertEqual(report["latency_ms"]["session"]["count"], sessions * rounds)
        return report

    # Proves POP3 over plain TCP (pipelined RETR window; the daemon has no STLS or pop3s yet,
    # so POP3 over TLS is not tested here): every message
    # retrieved by every round, one RETR latency per message.
    def test_pop3(self):
        # One session: POP3 locks the maildrop (RFC 1939 8), so a second session at the same
        # time is refused at PASS.
        report = self.check(bench("pop3", "--port", str(self.pop3), "--user", DEMO,
                                  "--password", "demo", "--rounds", "3", "--window", "4",
                                  "--duration", "20s"), 1, 3)
        self.assertEqual(report["latency_ms"]["retr"]["count"], COUNT * 3)

    # Proves IMAP: FETCH 1:* at once and in chunks of 7, over plain TCP, STARTTLS and implicit
    # TLS, with UID FETCH FLAGS once per round.
    def test_imap(self):
        report = self.check(bench("imap", "--port", str(self.imap), "--user", DEMO,
                                  "--password", "demo", "--sessions", "2", "--rounds", "2",
                                  "--duration", "20s"), 2, 2)
        self.assertEqual(report["latency_ms"]["fetch"]["count"], 4)
        self.assertEqual(report["latency_ms"]["flags"]["count"], 4)
        report = self.check(bench("imap", "--port", str(self.imap), "--chunk", "7", "--starttls",
                                  "--user", DEMO, "--password", "demo", "--duration", "20s"), 1)
        self.assertEqual(report["latency_ms"]["fetch"]["count"], (COUNT + 6) // 7)
        report = self.check(bench("imap", "--port", str(self.imaps), "--tls", "--user", DEMO,
                                  "--password", "demo", "--sessions", "3", "--threads", "2",
                                  "--duration", "20s"), 3)
        self.assertEqual(report["latency_ms"]["tls"]["count"], 3)

    # Proves --idle: 40 sessions log in and SELECT, stay for the hold, and log out cleanly.
    def test_imap_idle(self):
        code, report, stderr = bench("imap", "--port", str(self.imap), "--user", DEMO,
                                     "--password", "demo", "--idle", "40", "--hold", "1s",
                                     "--duration", "20s")
        self.assertEqual(code, 0, stderr)
        self.assertIn("idle: 40 sessions logged in", stderr)
        self.assertEqual(report["completed"], 40)
        self.assertEqual(report["latency_ms"]["select"]["count"], 40)
        self.assertEqual(report["latency_ms"]["session"]["count"], 40)

    # Proves a wrong password is counted by its reply and fails the run, for both protocols.
    def test_wrong_password(self):
        code, report, _ = bench("pop3", "--port", str(self.pop3), "--user", DEMO, "--password",
                                "nope", "--duration", "10s")
        self.assertEqual(code, 1)
        self.assertEqual(report["completed"], 0)
        self.assertEqual(report["errors"].get("-ERR login"), 1, report["errors"])
        code, report, _ = bench("imap", "--port", str(self.imap), "--user", DEMO, "--password",
                                "nope", "--duration", "10s")
        self.assertEqual(code, 1)
        self.assertEqual(report["errors"].get("NO login"), 1, report["errors"])

    # Proves --dele: one round retrieves and deletes every message of the other user, QUIT
    # commits, and a second run finds the mailbox empty.
    def test_pop3_dele(self):
        self.check(bench("pop3", "--port", str(self.pop3), "--user", OTHER, "--password", "x",
                         "--dele", "--window", "8", "--duration", "20s"), 1)
        code, report, stderr = bench("pop3", "--port", str(self.pop3), "--user", OTHER,
                                     "--password", "x", "--duration", "20s")
        self.assertEqual(code, 0, stderr)
        self.assertEqual(report["counters"]["mailbox_messages"], 0)
        self.assertEqual(report["completed"], 0)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
