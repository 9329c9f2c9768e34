"""tests/integration/test_smtp.py: SMTP reception against the real ringpostd (issue 3).

Each test starts its own daemon on free loopback ports and drives it with real clients:
Python's smtplib, raw sockets for what smtplib will not send, and swaks. Delivered mail is
read back with `ringpost mailbox cat`, byte for byte. Every loop is bounded in count and time.
"""

import os
import poplib
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import Raw, mailbox, smtp_config, strip_received, wait_mailbox  # noqa: E402

DEMO = "demo@example.test"


class SmtpTest(unittest.TestCase):
    def daemon(self, **kwargs):
        # kwargs go to smtp_config (users, trusted, extra, cores).
        port, = harness.free_ports(1)
        d = harness.Daemon(config_text=smtp_config(port, **kwargs), wait_ports=[port])
        d.port = port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        # Every daemon must still be alive and stop cleanly: a crash anywhere fails the test.
        if d.process.poll() is None:
            code = d.stop()
        else:
            code = d.process.returncode
            d.log_file.close()
        d.__exit__(None, None, None)
        self.assertEqual(code, 0, "ringpostd exit code")

    # Proves the README's demo flow: swaks delivers to the INBOX, and the stored message is
    # the Received: header plus exactly what swaks sent.
    def test_swaks_delivers(self):
        if shutil.which("swaks") is None:
            self.skipTest("swaks missing")
        d = self.daemon()
        done = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port, "--to", DEMO,
                               "--from", "alice@remote.test", "--header", "Subject: swaks-probe",
                               "--body", "hello from swaks"], capture_output=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stdout.decode(errors="replace"))
        self.assertIn(b"250 2.0.0 Ok: queued as", done.stdout)
        messages = wait_mailbox(d, DEMO, 1)
        self.assertEqual(len(messages), 1)
        body = strip_received(messages[1])
        self.assertIn(b"Subject: swaks-probe\r\n", body)
        self.assertIn(b"\r\n\r\nhello from swaks\r\n", body)
        self.assertIn("accepted from=<alice@remote.test> to=<%s>" % DEMO, d.log())

    # Proves the README's demo: config/demo.toml as shipped (only its ports moved to free
    # ones, and run from a temporary folder), then `swaks --server ... --to
    # demo@example.test` exactly as the README says, delivers into demo's INBOX.
    def test_swaks_demo_config(self):
        if shutil.which("swaks") is None:
            self.skipTest("swaks missing")
        with open(os.path.join(harness.source_dir(), "config", "demo.toml")) as f:
            text = f.read()
        demo_ports = sorted(set(int(p) for p in re.findall(r'"127\.0\.0\.1:(2\d{3})"', text)))
        self.assertIn(2525, demo_ports)
        for old, new in zip(demo_ports, harness.free_ports(len(demo_ports))):
            text = text.replace('"127.0.0.1:%d"' % old, '"127.0.0.1:%d"' % new)
            if old == 2525:
                port = new
        d = harness.Daemon(config_text=text, wait_ports=[port])
        d.port = port
        d.start()
        self.addCleanup(self.finish, d)
        done = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port,
                               "--to", DEMO], capture_output=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout.decode(errors="replace"))
        self.assertIn(b"250 2.0.0 Ok: queued as", done.stdout)
        messages = wait_mailbox(d, DEMO, 1)
        self.assertEqual(len(messages), 1)
        self.assertIn(b"This is a test mailing", messages[1])

    # Proves dot-stuffing is undone exactly and 8-bit bytes survive (BODY=8BITMIME): the
    # stored body equals the sent one byte for byte.
    def test_dot_stuffing_and_8bit_byte_exact(self):
        d = self.daemon()
        lines = [b"Subject: dots", b"", b".", b"..", b"...leading dots", b". a dot and space",
                 b"caf\xc3\xa9 \xff\xfe raw 8-bit", b"end."]
        sent = b"\r\n".join(lines) + b"\r\n"
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            client.ehlo("dots.test")
            self.assertIn("8bitmime", client.esmtp_features)
            client.sendmail("a@remote.test", [DEMO], sent, mail_options=["BODY=8BITMIME"])
        messages = wait_mailbox(d, DEMO, 1)
        self.assertEqual(strip_received(messages[1]), sent)

    # Proves zero-copy DATA: a 3 MB message of random lines, many of them dot-stuffed, sent in
    # writes of odd sizes so that lines and stuffed dots straddle receive buffers, is stored
    # byte for byte; most body bytes were written from the receive buffers themselves; and at
    # the stop every receive buffer of both shards is back in its ring.
    def test_zero_copy_data_many_buffers(self):
        d = self.daemon()
        rng = random.Random(3)
        lines = [b"Subject: zero copy", b""]
        size = 0
        while size < 3_000_000:
            line = bytes(rng.choice(b"abcdefgh .\xc3\xa9") for _ in range(rng.randrange(0, 200)))
            if rng.random() < 0.2:
                line = b"." + line
            lines.append(line)
            size += len(line) + 2
        body = b"\r\n".join(lines) + b"\r\n"
        stuffed = b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in lines) + b"\r\n"
        c = Raw(d.port, timeout=60)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO zc.test")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<z@remote.test> BODY=8BITMIME")[0], 250)
        self.assertEqual(c.command("RCPT TO:<%s>" % DEMO)[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        data = stuffed + b".\r\n"
        at = 0
        while at < len(data):
            step = rng.choice([1, 7, 1000, 4093, 16384, 65537])
            c.send(data[at:at + step])
            at += step
        code, lines_ = c.reply()
        self.assertEqual(code, 250, lines_)
        self.assertEqual(c.command("QUIT")[0], 221)
        c.close()
        messages = wait_mailbox(d, DEMO, 1)
        self.assertEqual(len(messages), 1)
        self.assertEqual(strip_received(messages[1]), body)
        self.assertEqual(d.stop(), 0)
        log = d.log()
        zero_copy = sum(int(line.split("zero-copy ")[1].split()[0])
                        for line in log.splitlines() if "body bytes zero-copy" in line)
        self.assertGreater(zero_copy, len(body) * 9 // 10, log[-3000:])
        self.assertEqual(log.count("receive buffers returned"), 2, log[-3000:])
        self.assertNotIn("receive buffers not returned", log)

    # Proves PIPELINING: a whole transaction in one write gets its replies in order, with a
    # refused recipient in the middle, and the message is delivered once.
    def test_pipelining(self):
        d = self.daemon()
        c = Raw(d.port)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.command("EHLO pipe.test")
        self.assertEqual(code, 250)
        self.assertIn("250-PIPELINING", lines)
        c.send(b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<nobody@example.test>\r\n"
               b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        self.assertEqual(c.reply()[0], 250)
        code, lines = c.reply()
        self.assertEqual(code, 550)
        self.assertIn("5.1.1", lines[0])
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 354)
        c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertIn("2.0.0 Ok: queued as", lines[0])
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 221)
        c.close()
        self.assertEqual(len(wait_mailbox(d, DEMO, 1)), 1)

    # Proves SIZE is advertised and enforced twice: at MAIL (declared) and during DATA
    # (actual), both with 552 5.3.4, and nothing is delivered.
    def test_size_refusal(self):
        d = self.daemon(extra="message_bytes_max = 20000\n")
        c = Raw(d.port)
        c.reply()
        code, lines = c.command("EHLO size.test")
        self.assertIn("250-SIZE 20000", lines)
        code, lines = c.command("MAIL FROM:<s@remote.test> SIZE=20001")
        self.assertEqual(code, 552)
        self.assertIn("5.3.4", lines[0])
        self.assertEqual(c.command("MAIL FROM:<s@remote.test>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<demo@example.test>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send((b"x" * 998 + b"\r\n") * 30 + b".\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 552)
        self.assertIn("5.3.4", lines[0])
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertEqual(mailbox(d, DEMO), {})

    # Proves routing: an unknown local user gets 550 5.1.1; another domain from an untrusted
    # client gets 554 5.7.1 (never an open relay); a trusted network may relay.
    def test_unknown_user_and_relay(self):
        d = self.daemon()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as client:
            client.ehlo("route.test")
            client.mail("a@remote.test")
            code, text = client.rcpt("nobody@example.test")
            self.assertEqual(code, 550)
            self.assertIn(b"5.1.1", text)
            code, text = client.rcpt("someone@elsewhere.test")
            self.assertEqual(code, 554)
            self.assertIn(b"5.7.1", text)
            code, text = client.rcpt("Demo@EXAMPLE.test")  # Case does not matter.
            self.assertEqual(code, 250)
        trusted = self.daemon(trusted=("127.0.0.0/8",))
        with smtplib.SMTP("127.0.0.1", trusted.port, timeout=30) as client:
            client.ehlo("route.test")
            client.mail("a@remote.test")
            self.assertEqual(client.rcpt("someone@elsewhere.test")[0], 250)

    # Proves 1,000 recipients in one transaction reach 1,000 mailboxes (spread over both
    # shards, so most deliveries cross shards), and the 1,001st is refused with 452 4.5.3.
    def test_1000_recipients(self):
        users = ["u%d@example.test" % i for i in range(1000)]
        d = self.daemon(users=users, extra="recipients_max = 1000\n")
        c = Raw(d.port)
        c.reply()
        c.command("EHLO many.test")
        self.assertEqual(c.command("MAIL FROM:<m@remote.test>")[0], 250)
        c.send(b"".join(b"RCPT TO:<%s>\r\n" % u.encode() for u in users))
        for _ in users:
            self.assertEqual(c.reply()[0], 250)
        code, lines = c.command("RCPT TO:<demo@example.test>")
        self.assertEqual(code, 452)
        self.assertIn("4.5.3", lines[0])
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: to everyone\r\n\r\nhi all\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.command("QUIT")
        for user in (users[0], users[499], users[999]):
            got = wait_mailbox(d, user, 1)
            self.assertEqual(len(got), 1, user)
            self.assertTrue(strip_received(got[1]).endswith(b"hi all\r\n"))
        counts = {len(wait_mailbox(d, user, 1)) for user in users[:40]}
        self.assertEqual(counts, {1})

    # Proves 200 concurrent clients each get their mail accepted and delivered exactly once.
    def test_200_concurrent_clients(self):
        d = self.daemon()
        errors = []

        def client(index):
            try:
                with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
                    s.ehlo("c%d.test" % index)
                    for n in range(3):
                        s.sendmail("c@remote.test", [DEMO],
                                   b"Subject: c%d-%d\r\n\r\nx\r\n" % (index, n))
            except Exception as e:  # noqa: BLE001
                errors.append("%d: %r" % (index, e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        messages = wait_mailbox(d, DEMO, 600)
        subjects = sorted(strip_received(m).split(b"\r\n", 1)[0] for m in messages.values())
        expected = sorted(b"Subject: c%d-%d" % (i, n) for i in range(200) for n in range(3))
        self.assertEqual(subjects, expected)

    # Proves garbage (NUL, binary, 8-bit, bare LF) gets protocol errors, never a crash, and
    # the daemon keeps serving other clients.
    def test_garbage(self):
        d = self.daemon()
        rng = random.Random(7)
        for _ in range(20):
            c = Raw(d.port)
            c.reply()
            c.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) + b"\r\n")
            c.send(b"\x00\x00HELO \x00\r\nMAIL FROM:<\xff>\r\n\n\n.\r\n")
            c.closed_by_peer(timeout=0.2)
            c.close()
        c = Raw(d.port)
        c.reply()
        code, lines = c.command("\x01\x02garbage")
        self.assertEqual(code, 500)
        self.assertEqual(c.command("NOOP")[0], 250)
        c.close()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.sendmail("g@remote.test", [DEMO], b"Subject: after garbage\r\n\r\nok\r\n")
        self.assertEqual(len(wait_mailbox(d, DEMO, 1)), 1)
        self.assertIsNone(d.process.poll())

    # Proves a 100 KB command line is answered 500 5.5.2 once and the session goes on.
    def test_100kb_line(self):
        d = self.daemon()
        c = Raw(d.port)
        c.reply()
        c.send(b"MAIL FROM:<" + b"a" * 100_000 + b"@remote.test>\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 500)
        self.assertIn("5.5.2", lines[0])
        self.assertEqual(c.command("EHLO ok.test")[0], 250)
        self.assertEqual(c.command("NOOP")[0], 250)
        c.close()

    # Proves 500 idle connections do not stop a new client from sending mail.
    def test_500_idle_connections(self):
        d = self.daemon()
        idle = []
        try:
            for _ in range(500):
                s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                idle.append(s)
            for s in idle[::50]:
                self.assertTrue(s.recv(512).startswith(b"220 "))
            with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
                s.sendmail("i@remote.test", [DEMO], b"Subject: past the idle\r\n\r\nok\r\n")
        finally:
            for s in idle:
                s.close()
        self.assertEqual(len(wait_mailbox(d, DEMO, 1)), 1)

    # Proves a client trickling one byte every 100 ms is timed out (421 4.4.2, closed) while
    # another client is served meanwhile. Timeouts are shortened in the config.
    def test_trickle_timeout(self):
        d = self.daemon(extra="[smtp.timeouts]\nidle_ms = 1500\ndata_block_ms = 1500\n")
        slow = Raw(d.port)
        slow.reply()
        start = time.monotonic()
        closed = False
        reply = b""
        slow.sock.settimeout(0.1)
        while time.monotonic() - start < 8:
            try:
                slow.sock.send(b"N")
            except OSError:
                closed = True
                break
            try:
                chunk = slow.sock.recv(512)
                if not chunk:
                    closed = True
                    break
                reply += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                # Our next byte met the closed socket (the 421 was read before it).
                closed = True
                break
            if time.monotonic() - start > 0.5 and not hasattr(self, "_sent"):
                self._sent = True
                with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
                    s.sendmail("t@remote.test", [DEMO], b"Subject: meanwhile\r\n\r\nok\r\n")
        elapsed = time.monotonic() - start
        self.assertTrue(closed, "trickling client was not closed")
        self.assertIn(b"421 4.4.2", reply)
        self.assertLess(elapsed, 6)
        self.assertEqual(len(wait_mailbox(d, DEMO, 1)), 1)

    # Proves SIGTERM stops the daemon with exit 0 and what was accepted survives a restart.
    def test_sigterm_and_restart(self):
        d = self.daemon()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.sendmail("r@remote.test", [DEMO], b"Subject: before restart\r\n\r\nok\r\n")
        self.assertEqual(d.stop(), 0)
        d.start()
        messages = wait_mailbox(d, DEMO, 1)
        self.assertEqual(len(messages), 1)
        self.assertIn(b"Subject: before restart", messages[1])


    # Proves a restart within the same second issues new message ids: the message sent right
    # after a restart is delivered, not dropped as a duplicate of the first run's message
    # (one shard, so both runs number their messages on the same shard).
    def test_quick_restart_keeps_new_mail(self):
        d = self.daemon(cores=1)
        for round_index in range(3):
            with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
                s.sendmail("q@remote.test", [DEMO], b"Subject: run %d\r\n\r\nok\r\n" % round_index)
            self.assertEqual(d.stop(), 0)
            d.start()
        messages = wait_mailbox(d, DEMO, 3)
        subjects = sorted(strip_received(m).split(b"\r\n", 1)[0] for m in messages.values())
        self.assertEqual(subjects, [b"Subject: run 0", b"Subject: run 1", b"Subject: run 2"])


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def new_user_per_shard(shards=2):
    """One not-yet-configured address owned by each shard (routing.cc: crc32c % shards)."""
    found = {}
    for i in range(1000):
        address = "late%d@example.test" % i
        found.setdefault(crc32c(address.encode()) % shards, address)
        if len(found) == shards:
            return [found[s] for s in range(shards)]
    raise RuntimeError("no address for every shard")


class AccountReloadTest(unittest.TestCase):
    finish = SmtpTest.finish

    # Proves an account added with `ringpost user add` while the daemon runs is refused
    # before SIGHUP and, after it, receives mail (on either shard, so both the owner-local
    # and the cross-shard paths run) and logs in over POP3, all without a restart.
    def test_user_add_then_sighup(self):
        smtp_port, pop3_port = harness.free_ports(2)
        text = smtp_config(smtp_port, extra="\n[auth]\nplaintext_loopback = true\n")
        text += '\n[[pop3.listener]]\naddress = "127.0.0.1:%d"\nkind = "pop3"\n' % pop3_port
        d = harness.Daemon(config_text=text, wait_ports=[smtp_port, pop3_port])
        d.start()
        self.addCleanup(self.finish, d)
        users = new_user_per_shard()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("a@remote.test")
            self.assertEqual(s.rcpt(users[0])[0], 550)
        for user in users:
            done = subprocess.run([harness.binary("ringpost"), "--config", d.config_path,
                                   "user", "add", user], input=b"pw-" + user.encode() + b"\n",
                                  capture_output=True, cwd=d.folder, timeout=60)
            self.assertEqual(done.returncode, 0, done.stderr)
        mark = len(d.log())
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (d.log()[mark:].count("directory reloaded") < 2
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.assertEqual(d.log()[mark:].count("directory reloaded"), 2, d.log()[mark:])
        # Several connections, so that both shards accept some of them.
        for round_index in range(4):
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as s:
                body = b"Subject: late %d\r\n\r\nhello\r\n" % round_index
                self.assertEqual(s.sendmail("a@remote.test", users, body), {})
        for user in users:
            messages = wait_mailbox(d, user, 4)
            self.assertEqual(len(messages), 4, user)
            client = poplib.POP3("127.0.0.1", pop3_port, timeout=30)
            client.user(user)
            client.pass_("pw-" + user)
            count, _ = client.stat()
            self.assertEqual(count, 4)
            self.assertIn(b"hello", b"\r\n".join(client.retr(1)[1]))
            client.quit()
        self.assertNotIn("failed", d.log()[mark:])


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
