"""tests/integration/test_bench_ringpostd.py: ringpost-bench against the real ringpostd (issue
7's smoke run): zero errors, exact counts, ordered percentiles, and the mail it says was
accepted is really in the mailboxes; the same over STARTTLS and implicit TLS with AUTH PLAIN
and LOGIN, and a wrong password counted as an error. Bounded: 600 messages, 20 s at most per
run."""

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


def bench(*args, timeout=60):
    """Runs ringpost-bench with `args` and returns (exit code, JSON report or None, stderr)."""
    done = subprocess.run([harness.binary("ringpost-bench")] + list(args) + ["--json", "--quiet"],
                          capture_output=True, timeout=timeout)
    report = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, report, done.stderr.decode(errors="replace")


class BenchTlsAuth(unittest.TestCase):
    # One daemon with submission (STARTTLS + AUTH) and smtps (implicit TLS) listeners and a
    # self-signed certificate, which the bench does not verify by default.
    @classmethod
    def setUpClass(cls):
        cls.mx, cls.submission, cls.smtps = harness.free_ports(3)
        more = ('\n[tls]\ncert_file = "tls/cert.pem"\nkey_file = "tls/key.pem"\n'
                'self_signed = true\n')
        for kind, port in (("submission", cls.submission), ("smtps", cls.smtps)):
            more += '\n[[smtp.listener]]\naddress = "127.0.0.1:%d"\nkind = "%s"\n' % (port, kind)
        cls.daemon = harness.Daemon(config_text=smtp_config(cls.mx, users=USERS, extra=more),
                                    wait_ports=[cls.mx, cls.submission, cls.smtps])
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def check_clean(self, code, report, stderr, count, sessions):
        self.assertEqual(code, 0, stderr + json.dumps(report))
        self.assertEqual(report["completed"], count)
        self.assertEqual(report["error_count"], 0)
        # Every connection did one handshake and one login before its mail.
        connections = report["counters"]["connections"]
        self.assertGreaterEqual(connections, sessions)
        self.assertEqual(report["latency_ms"]["tls"]["count"], connections)
        self.assertEqual(report["latency_ms"]["auth"]["count"], connections)
        self.assertEqual(report["latency_ms"]["accept"]["count"], count)

    # Proves STARTTLS + AUTH PLAIN on submission and implicit TLS + AUTH LOGIN on smtps: every
    # message accepted, one handshake and one AUTH per connection (with --per-session 5 the
    # bench reconnects, so there are several), and the mail is in the mailbox.
    def test_starttls_plain_and_implicit_login(self):
        before = len(wait_mailbox(self.daemon, "demo@example.test", 0))
        code, report, stderr = bench(
            "smtp", "--port", str(self.submission), "--starttls", "--auth", "PLAIN",
            "--user", "demo@example.test", "--password", "demo", "--sessions", "4",
            "--from", "demo@example.test",
            "--messages", "60", "--per-session", "5", "--size", "2k", "--duration", "20s")
        self.check_clean(code, report, stderr, 60, 4)
        self.assertGreaterEqual(report["counters"]["connections"], 12)
        self.assertEqual(report["settings"]["tls"], "starttls")
        code, report, stderr = bench(
            "smtp", "--port", str(self.smtps), "--tls", "--auth", "LOGIN",
            "--auth-user", "demo@example.test", "--auth-pass", "demo", "--sessions", "3",
            "--from", "demo@example.test",
            "--threads", "2", "--messages", "40", "--pipelining", "--duration", "20s")
        self.check_clean(code, report, stderr, 40, 3)
        self.assertEqual(report["settings"]["auth"], "LOGIN")
        box = wait_mailbox(self.daemon, "demo@example.test", before + 100)
        self.assertEqual(len(box), before + 100)

    # Proves a refused login is counted by its reply (535 auth) and fails the run, and that
    # a session that may not log in sends no mail.
    def test_wrong_password_counted(self):
        code, report, stderr = bench(
            "smtp", "--port", str(self.smtps), "--tls", "--auth", "PLAIN", "--user",
            "demo@example.test", "--password", "wrong", "--messages", "3", "--max-errors", "3",
            "--reconnect-delay", "10ms", "--duration", "10s")
        self.assertEqual(code, 1, stderr)
        self.assertEqual(report["completed"], 0)
        self.assertGreater(report["errors"].get("535 auth", 0), 0, report["errors"])
        self.assertEqual(report["latency_ms"]["auth"]["count"], 0)

    # Proves --tls-ca turns verification on: the daemon's self-signed certificate is not
    # signed by any CA of the system bundle, so every handshake fails and is counted; with
    # the certificate itself as the trust anchor the handshake and the mail succeed.
    def test_tls_ca_verification_fails(self):
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        if not os.path.exists(bundle):
            self.skipTest("no system CA bundle")
        code, report, stderr = bench(
            "smtp", "--port", str(self.smtps), "--tls", "--tls-ca", bundle, "--messages", "2",
            "--max-errors", "2", "--reconnect-delay", "10ms", "--duration", "10s")
        self.assertEqual(code, 1, stderr)
        self.assertEqual(report["completed"], 0)
        self.assertGreater(report["errors"].get("tls handshake", 0), 0, report["errors"])
        self.assertEqual(report["latency_ms"]["tls"]["count"], 0)
        # The daemon's own certificate as the trust anchor: verified, the mail goes through.
        cert = os.path.join(self.daemon.folder, "tls", "cert.pem")
        code, report, stderr = bench(
            "smtp", "--port", str(self.smtps), "--tls", "--tls-ca", cert, "--messages", "2",
            "--auth", "PLAIN", "--user", "demo@example.test", "--password", "demo", "--from",
            "demo@example.test", "--duration", "10s")
        self.assertEqual(code, 0, stderr + json.dumps(report))
        self.assertEqual(report["completed"], 2)

    # Proves plain TCP against the TLS-only smtps port does not hang: the handshake never
    # comes, the per-reply timeout ends the run with an error.
    def test_no_tls_against_smtps_times_out(self):
        code, report, stderr = bench(
            "smtp", "--port", str(self.smtps), "--messages", "1", "--timeout", "1s",
            "--max-errors", "1", "--duration", "5s")
        self.assertEqual(code, 1, stderr)
        self.assertEqual(report["completed"], 0)
        self.assertGreater(report["error_count"], 0)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
