"""tests/integration/test_pop3.py: POP3 against the real ringpostd (issue 5).

Each test starts its own daemon (2 shards) on free loopback ports with an MX listener and a
POP3 listener, delivers mail with smtplib, and reads it back with Python's poplib, raw
sockets, curl and (when installed) fetchmail. Two accounts are used, one owned by each shard
(crc32c of the address, as protocols/smtp/routing.cc places them), so whichever shard
accepts a connection, one account's maildrop, lock and bodies live on the other shard: the
cross-shard paths of protocols/common/mail_access run in every test. Every wait is bounded.
"""

import os
import poplib
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import mailbox, smtp_config, strip_received, wait_for, wait_mailbox  # noqa: E402


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def users_per_shard(shards=2):
    """One account address owned by each shard."""
    found = {}
    for i in range(1000):
        address = "demo@example.test" if i == 0 else "user%d@example.test" % i
        found.setdefault(crc32c(address.encode()) % shards, address)
        if len(found) == shards:
            return [found[s] for s in range(shards)]
    raise RuntimeError("no account for every shard")


USERS = users_per_shard()
PASSWORD = {"demo@example.test": "demo"}
for _u in USERS:
    PASSWORD.setdefault(_u, "x")


def pop3_config(smtp_port, pop3_port, extra=""):
    text = smtp_config(smtp_port, users=USERS, extra=extra)
    text += '\n[[pop3.listener]]\naddress = "127.0.0.1:%d"\nkind = "pop3"\n' % pop3_port
    return text


class Pop3Test(unittest.TestCase):
    def daemon(self, extra=""):
        smtp_port, pop3_port = harness.free_ports(2)
        d = harness.Daemon(config_text=pop3_config(smtp_port, pop3_port, extra),
                           wait_ports=[smtp_port, pop3_port])
        d.smtp_port, d.pop3_port = smtp_port, pop3_port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        if d.process.poll() is None:
            code = d.stop()
        else:
            code = d.process.returncode
            d.log_file.close()
        if code != 0:
            sys.stderr.write("---- ringpostd log ----\n%s\n" % d.log())
        d.__exit__(None, None, None)
        self.assertEqual(code, 0, "ringpostd exit code")

    def send(self, d, user, body, count=1, total=None):
        """Delivers `count` copies; returns the mailbox once it holds `total` (or `count`)."""
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=30) as client:
            for _ in range(count):
                client.sendmail("sender@remote.test", [user], body,
                                mail_options=["BODY=8BITMIME"])
        messages = wait_mailbox(d, user, total or count)
        # `ringpost mailbox cat` reads the files, which may show a record a moment before
        # the daemon's fdatasync completes and makes it visible: wait for POP3 to see it.
        deadline = time.monotonic() + 10
        while True:
            client = self.pop_retry(d, user)
            seen = client.stat()[0]
            client.quit()
            if seen >= (total or count) or time.monotonic() > deadline:
                return messages
            time.sleep(0.05)

    def pop(self, d, user, password=None):
        client = poplib.POP3("127.0.0.1", d.pop3_port, timeout=30)
        client.user(user)
        client.pass_(password or PASSWORD[user])
        return client

    def pop_retry(self, d, user, resets=False):
        """Logs in, retrying while the previous session's lock is being released. With
        `resets`, also while connections are reset: after a SIGKILL the dead daemon's
        listening sockets stay in the SO_REUSEPORT group until the kernel tears down its
        io_uring (asynchronously), and connections hashed to them are reset."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.pop(d, user)
            except poplib.error_proto as e:
                if b"IN-USE" not in e.args[0] or time.monotonic() > deadline:
                    raise
            except (ConnectionError, EOFError):
                if not resets or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    # Proves RETR returns the stored message byte for byte (Received: + what SMTP got, with
    # leading dots and 8-bit bytes), read with poplib and checked on the raw wire too, for an
    # account on each shard.
    def test_retr_byte_exact(self):
        d = self.daemon()
        lines = [b"Subject: dots", b"", b".", b"..", b"...leading", b". space",
                 b"caf\xc3\xa9 \xff\xfe 8-bit", b"end."]
        sent = b"\r\n".join(lines) + b"\r\n"
        for user in USERS:
            stored = self.send(d, user, sent)[1]
            self.assertEqual(strip_received(stored), sent)
            client = self.pop(d, user)
            self.assertEqual(client.stat(), (1, len(stored)))
            resp, got, octets = client.retr(1)
            self.assertTrue(resp.startswith(b"+OK %d octets" % len(stored)), resp)
            self.assertEqual(b"\r\n".join(got) + b"\r\n", stored)
            client.quit()
            # The wire bytes: the dot-stuffed message, then CRLF.CRLF.
            s = socket.create_connection(("127.0.0.1", d.pop3_port), timeout=10)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"USER %s\r\nPASS %s\r\nRETR 1\r\nQUIT\r\n"
                      % (user.encode(), PASSWORD[user].encode()))
            self.assertTrue(f.readline().startswith(b"+OK"))
            self.assertTrue(f.readline().startswith(b"+OK maildrop has 1"))
            self.assertTrue(f.readline().startswith(b"+OK"))
            wire = b""
            while not wire.endswith(b"\r\n.\r\n"):
                chunk = f.readline()
                self.assertTrue(chunk, "EOF inside RETR")
                wire += chunk
            stuffed = b"".join(b"." + l if l.startswith(b".") else l
                               for l in stored.splitlines(keepends=True))
            self.assertEqual(wire, stuffed + b".\r\n")
            s.close()

    # Proves a 3 MB message (several store extents) is streamed byte-exact.
    def test_retr_large_message(self):
        d = self.daemon()
        line = b"".join(bytes([33 + (i % 90)]) for i in range(998)) + b"\r\n"
        sent = b"Subject: big\r\n\r\n" + line * 3000 + b".dot line\r\n"
        stored = self.send(d, USERS[1], sent)[1]
        client = self.pop(d, USERS[1])
        resp, got, octets = client.retr(1)
        self.assertEqual(b"\r\n".join(got) + b"\r\n", stored)
        client.quit()

    # Proves DELE takes effect at QUIT, durably before +OK: SIGKILL right after the reply,
    # restart, and the message is gone while the others keep their UIDLs.
    def test_dele_quit_durable_across_kill(self):
        d = self.daemon()
        for user in USERS:
            self.send(d, user, b"Subject: m\r\n\r\nbody\r\n", count=3)
            client = self.pop(d, user)
            uidl_before = client.uidl()[1]
            client.dele(2)
            resp = client.quit()
            self.assertIn(b"1 messages deleted", resp)
        d.process.send_signal(signal.SIGKILL)
        d.process.wait()
        d.log_file.close()
        d.start()
        for user in USERS:
            client = self.pop_retry(d, user, resets=True)
            self.assertEqual(client.stat()[0], 2)
            uidl_after = client.uidl()[1]
            self.assertEqual(uidl_after, [uidl_before[0], b"2 " + uidl_before[2].split()[1]])
            client.quit()
            self.assertEqual(len(mailbox(d, user)), 2)

    # Proves a dropped connection deletes nothing, and RSET undoes DELE.
    def test_drop_and_rset_delete_nothing(self):
        d = self.daemon()
        for user in USERS:
            self.send(d, user, b"Subject: m\r\n\r\nbody\r\n", count=2)
            client = self.pop(d, user)
            client.dele(1)
            client.dele(2)
            client.file.close()  # Dropped: no QUIT (poplib's file holds the socket too).
            client.sock.close()
            client = self.pop_retry(d, user)
            self.assertEqual(client.stat()[0], 2)
            client.dele(1)
            client.rset()
            client.quit()
            client = self.pop_retry(d, user)
            self.assertEqual(client.stat()[0], 2)
            client.quit()
            self.assertEqual(len(mailbox(d, user)), 2)

    # Proves UIDL is stable across sessions and a restart, and new mail gets a new UIDL.
    def test_uidl_stable(self):
        d = self.daemon()
        user = USERS[0]
        self.send(d, user, b"Subject: a\r\n\r\nx\r\n", count=2)
        first = self.pop(d, user)
        ids = first.uidl()[1]
        first.quit()
        # Known issue (reported): ShardMail message ids restart from the wall-clock second,
        # so a message accepted within the same second after a restart reuses an id and its
        # delivery is dropped as a duplicate. Restart in the next second.
        time.sleep(1.1)
        d.stop()
        d.start()
        self.send(d, user, b"Subject: b\r\n\r\ny\r\n", total=3)
        second = self.pop_retry(d, user)
        ids2 = second.uidl()[1]
        self.assertEqual(ids2[:2], ids)
        self.assertEqual(len(ids2), 3)
        self.assertNotIn(ids2[2].split()[1], [i.split()[1] for i in ids])
        self.assertEqual(second.uidl(2), b"+OK " + ids[1])
        second.quit()

    # Proves one session per maildrop: the second gets -ERR [IN-USE] until the first quits
    # (the lock lives on the owner shard and is released at close).
    def test_in_use(self):
        d = self.daemon()
        for user in USERS:
            first = self.pop(d, user)
            with self.assertRaises(poplib.error_proto) as caught:
                self.pop(d, user)
            self.assertIn(b"[IN-USE]", caught.exception.args[0])
            first.quit()
            self.pop_retry(d, user).quit()
        self.assertIn("logged in", d.log())

    # Proves TOP: headers, blank line and n body lines.
    def test_top(self):
        d = self.daemon()
        stored = self.send(d, USERS[0], b"Subject: t\r\nX-A: b\r\n\r\nl1\r\n.l2\r\nl3\r\n")[1]
        client = self.pop(d, USERS[0])
        resp, got, _ = client.top(1, 2)
        head = stored[:stored.index(b"\r\n\r\n") + 4]
        self.assertEqual(b"\r\n".join(got) + b"\r\n", head + b"l1\r\n.l2\r\n")
        resp, got, _ = client.top(1, 0)
        self.assertEqual(b"\r\n".join(got) + b"\r\n", head)
        client.quit()

    # Proves bad input gets -ERR and the session goes on: garbage, a 100 KB line, wrong
    # passwords, commands before login, AUTH PLAIN works on the same connection.
    def test_garbage_and_long_line(self):
        d = self.daemon()
        self.send(d, "demo@example.test", b"Subject: g\r\n\r\nx\r\n")
        s = socket.create_connection(("127.0.0.1", d.pop3_port), timeout=10)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        s.sendall(b"\x00\xff\xfe garbage\r\n" + b"A" * 100000 + b"\r\nSTAT\r\nUSER demo@example.test\r\n"
                  b"PASS wrong\r\nNOOP\r\n")
        replies = [f.readline() for _ in range(6)]
        self.assertTrue(replies[0].startswith(b"-ERR"), replies)
        self.assertEqual(replies[1], b"-ERR Line too long\r\n")
        self.assertEqual(replies[2], b"-ERR Not authenticated\r\n")
        self.assertTrue(replies[3].startswith(b"+OK"))
        self.assertTrue(replies[4].startswith(b"-ERR [AUTH]"))
        self.assertEqual(replies[5], b"+OK\r\n")
        # AUTH PLAIN: base64("\0demo@example.test\0demo").
        s.sendall(b"AUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8=\r\nSTAT\r\nQUIT\r\n")
        self.assertTrue(f.readline().startswith(b"+OK maildrop has 1"))
        self.assertTrue(f.readline().startswith(b"+OK 1 "))
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertEqual(f.read(), b"")  # Closed after QUIT.
        s.close()

    # Proves the idle timeout ([pop3] idle_timeout_ms): a silent client is disconnected
    # without a reply (RFC 1939 3 autologout) and its DELE marks are not applied.
    def test_idle_timeout(self):
        d = self.daemon(extra="\n[pop3]\nidle_timeout_ms = 300\n")
        self.send(d, "demo@example.test", b"Subject: t\r\n\r\nx\r\n")
        s = socket.create_connection(("127.0.0.1", d.pop3_port), timeout=10)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER demo@example.test\r\nPASS demo\r\nDELE 1\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertTrue(f.readline().startswith(b"+OK maildrop"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertEqual(f.read(), b"")  # Closed by the server, nothing more said.
        s.close()
        client = self.pop_retry(d, "demo@example.test")
        self.assertEqual(client.stat()[0], 1)
        client.quit()

    # Proves curl's pop3:// URLs: LIST and RETR of message 1, byte-exact.
    def test_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl missing")
        d = self.daemon()
        sent = b"Subject: curl\r\n\r\n.leading dot\r\nline\r\n"
        stored = self.send(d, "demo@example.test", sent)[1]
        url = "pop3://127.0.0.1:%d/" % d.pop3_port
        done = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-u", "demo@example.test:demo",
                               url], capture_output=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, b"1 %d\r\n" % len(stored))
        done = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-u", "demo@example.test:demo",
                               url + "1"], capture_output=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, stored)

    # Proves fetchmail retrieves everything, with --keep (messages stay, UIDL-tracked) and
    # without (messages are deleted on the server).
    def test_fetchmail(self):
        if shutil.which("fetchmail") is None:
            self.skipTest("fetchmail missing")
        d = self.daemon()
        user = USERS[1]
        bodies = [b"Subject: f%d\r\n\r\nbody %d\r\n.dot\r\n" % (i, i) for i in range(3)]
        for b in bodies:
            self.send(d, user, b, count=1)
        wait_mailbox(d, user, 3)
        home = tempfile.mkdtemp(prefix="ringpost-fetchmail-")
        self.addCleanup(shutil.rmtree, home, True)
        out_dir = os.path.join(home, "out")
        os.mkdir(out_dir)
        rc = os.path.join(home, "fetchmailrc")
        mda = "sh -c 'cat > %s/$(date +%%s%%N).eml'" % out_dir
        for keep in (True, False):
            with open(rc, "w") as f:
                f.write('poll 127.0.0.1 protocol pop3 port %d auth password user "%s" '
                        'password "%s" is "nobody" here %s mda "%s"\n'
                        % (d.pop3_port, user, PASSWORD[user], "keep" if keep else "nokeep",
                           mda))
            os.chmod(rc, 0o600)
            env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
            # --sslproto '': no opportunistic STLS (fetchmail tries it even when CAPA does
            # not list it, and fails when refused).
            done = subprocess.run(["fetchmail", "-f", rc, "--nosyslog", "-v", "-a",
                                   "--sslproto", ""],
                                  capture_output=True, timeout=60, env=env)
            log = (done.stdout + done.stderr).decode(errors="replace")
            self.assertEqual(done.returncode, 0, log)
            files = sorted(os.listdir(out_dir))
            self.assertEqual(len(files), 3 if keep else 6, log)
            # QUIT's +OK comes after the expunge is durable; fetchmail has seen it.
            self.assertEqual(len(mailbox(d, user)), 3 if keep else 0, log)
        got = []
        for name in sorted(os.listdir(out_dir)):
            with open(os.path.join(out_dir, name), "rb") as f:
                got.append(f.read())
        for b in bodies:
            self.assertTrue(any(b.replace(b"\r\n", b"\n") in g.replace(b"\r\n", b"\n")
                                for g in got), b)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
