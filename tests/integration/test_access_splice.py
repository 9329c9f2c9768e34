"""tests/integration/test_access_splice.py: zero-copy FETCH BODY[] and RETR (issue 5).

On a plaintext connection ringpostd sends a message's stored bytes from the store's segment
file to the socket with splice (protocols/common/mail_access.h, BodySplicer): IMAP literals
always, POP3 RETR when the store noted at delivery that the body needs no dot-stuffing and
ends with CRLF. These tests read the bytes back with real clients (poplib, imaplib, raw
sockets) and compare them with what the store holds (`ringpost mailbox cat`), for messages
with and without dot lines, small and 1 MiB, from several concurrent sessions; then they read
the daemon's shutdown line "mail access: N bodies spliced (B bytes), M bodies copied" to prove
which path the bytes took. A daemon (2 shards) per test, one account owned by each shard,
loopback only, every wait bounded.
"""

import imaplib
import os
import poplib
import re
import smtplib
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import mailbox, ringpost, smtp_config, strip_received, wait_mailbox  # noqa: E402
from test_pop3 import PASSWORD, USERS  # noqa: E402

AUTH = ("\n[auth]\nplaintext_loopback = true\nfailure_delay_ms = 20\n"
        "failure_delay_max_ms = 100\n")

# Small segments and quick upkeep, so that garbage collection and compaction run while a
# spliced send is in flight.
STORE = """
[store]
segment_bytes = 1048576
snapshot_log_bytes = 262144
upkeep_interval_ms = 50
gc_interval_ms = 100
compact_step_bytes = 131072
"""


def big_message(tag, lines, dot_line=False):
    body = [b"Subject: " + tag, b""]
    for i in range(lines):
        body.append(b"%08d " % i + bytes([33 + (i + k) % 90 for k in range(989)]))
    if dot_line:
        body.append(b".a dot line near the end")
    body.append(b"end")
    return b"\r\n".join(body) + b"\r\n"


def spliced_totals(log):
    """(bodies spliced, bytes spliced, bodies copied) over every shard's shutdown line."""
    totals = [0, 0, 0]
    for m in re.finditer(r"mail access: (\d+) bodies spliced \((\d+) bytes\), (\d+) bodies copied",
                         log):
        for i in range(3):
            totals[i] += int(m.group(i + 1))
    return totals


class SpliceTest(unittest.TestCase):
    def daemon(self, extra="", splice_bytes_min=0):
        harness.require_io_uring()
        # 0: every FETCH literal and dot-free RETR is spliced, small ones too.
        extra += ("\n[pop3]\nsplice_bytes_min = %d\n[imap]\nsplice_bytes_min = %d\n"
                  % (splice_bytes_min, splice_bytes_min))
        smtp_port, pop3_port, imap_port = harness.free_ports(3)
        config = smtp_config(smtp_port, users=USERS, extra=extra + AUTH)
        config += '\n[[pop3.listener]]\naddress = "127.0.0.1:%d"\nkind = "pop3"\n' % pop3_port
        config += '\n[[imap.listener]]\naddress = "127.0.0.1:%d"\nkind = "imap"\n' % imap_port
        d = harness.Daemon(config_text=config, wait_ports=[smtp_port, pop3_port, imap_port])
        d.smtp_port, d.pop3_port, d.imap_port = smtp_port, pop3_port, imap_port
        d.start()
        self.addCleanup(self.finish, d)
        return d

    def finish(self, d):
        if d.process.poll() is None:
            d.stop()
        d.__exit__(None, None, None)

    def stop(self, d):
        """Stops the daemon (exit 0 expected) and returns its log."""
        code = d.stop()
        log = d.log()
        self.assertEqual(code, 0, log[-4000:])
        return log

    def stats(self, d):
        """Per shard: segment bytes, live body bytes and the snapshot lsn (`store stats`)."""
        for _ in range(50):
            try:
                text = ringpost(d, "store", "stats").decode()
                break
            except RuntimeError:
                time.sleep(0.1)  # The read-only tool raced the daemon's upkeep: look again.
        shards = {}
        for m in re.finditer(r"shard (\d+): \d+ segments, (\d+) segment bytes, (\d+) live", text):
            shards[int(m.group(1))] = {"segment": int(m.group(2)), "live": int(m.group(3))}
        for m in re.finditer(r"shard (\d+): durable lsn \S+, snapshot lsn (\S+);", text):
            shards[int(m.group(1))]["snapshot"] = m.group(2)
        return shards

    def wait_stats(self, d, predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats(d)
            if predicate(st):
                return st
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.1)

    def deliver(self, d, user, bodies):
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=30) as client:
            for body in bodies:
                client.sendmail("sender@remote.test", [user], body)
        stored = wait_mailbox(d, user, len(bodies))
        # The store's files may show a record a moment before the daemon made it visible:
        # wait until IMAP sees every message.
        deadline = time.monotonic() + 10
        while True:
            imap = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
            imap.login(user, PASSWORD[user])
            count = int(imap.select("INBOX", readonly=True)[1][0])
            imap.logout()
            if count >= len(bodies) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return [m for _, m in sorted(stored.items())]

    def read_pop3(self, d, user, want):
        client = poplib.POP3("127.0.0.1", d.pop3_port, timeout=30)
        client.user(user)
        client.pass_(PASSWORD[user])
        for i, stored in enumerate(want):
            resp, lines, _ = client.retr(i + 1)
            self.assertTrue(resp.startswith(b"+OK %d octets" % len(stored)), resp)
            self.assertEqual(b"\r\n".join(lines) + b"\r\n", stored)
        client.quit()

    def read_imap(self, d, user, want):
        imap = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        imap.login(user, PASSWORD[user])
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        got = [part[1] for part in data if isinstance(part, tuple)]
        self.assertEqual(got, want)
        # A partial range is spliced too: <offset.count> of the last message.
        typ, data = imap.fetch(str(len(want)), "(BODY.PEEK[]<1000.70000>)")
        self.assertEqual(data[0][1], want[-1][1000:71000])
        imap.logout()

    # Proves byte-exact RETR and FETCH BODY[] over plaintext, for small and 1 MiB messages
    # with and without dot lines (and an APPENDed one without a final CRLF), from four
    # concurrent POP3/IMAP readers on both accounts; and that the splice path carried the
    # dot-free bodies (bytes spliced >= what the dot-free RETRs and every FETCH needed)
    # while dot-stuffed RETRs were copied.
    def test_byte_exact_and_spliced(self):
        d = self.daemon()
        sent = [b"Subject: small\r\n\r\nhello\r\n",
                b"Subject: dots\r\n\r\n.\r\n..leading\r\nmid.dle\r\n",
                big_message(b"big", 1000),
                big_message(b"big dots", 1000, dot_line=True)]
        stored = {}
        for user in USERS:
            stored[user] = self.deliver(d, user, sent)
            self.assertEqual([strip_received(m) for m in stored[user]], sent)
        # IMAP APPEND of a body that does not end with CRLF: POP3 must copy it (and add one).
        imap = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        imap.login(USERS[0], PASSWORD[USERS[0]])
        self.assertEqual(imap.append("INBOX", None, None, b"Subject: no crlf\r\n\r\nlast")[0], "OK")
        imap.logout()
        stored[USERS[0]].append(b"Subject: no crlf\r\n\r\nlast")

        errors = []

        def reader(kind, user):
            try:
                for _ in range(2):
                    if kind == "pop3":
                        want = stored[user][:-1] if user == USERS[0] else stored[user]
                        self.read_pop3(d, user, want)
                    else:
                        self.read_imap(d, user, stored[user])
            except BaseException as e:  # noqa: B902 (reported below)
                errors.append("%s %s: %r" % (kind, user, e))

        # POP3 allows one session per maildrop: one POP3 reader per account, IMAP alongside.
        threads = [threading.Thread(target=reader, args=(kind, user))
                   for kind in ("pop3", "imap") for user in USERS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "a reader hung")
        self.assertEqual(errors, [])
        # RETR of the no-CRLF message: the copy path ends it with CRLF, then the dot.
        client = poplib.POP3("127.0.0.1", d.pop3_port, timeout=30)
        client.user(USERS[0])
        client.pass_(PASSWORD[USERS[0]])
        self.assertEqual(client.retr(5)[1], [b"Subject: no crlf", b"", b"last"])
        client.quit()

        log = self.stop(d)
        spliced, spliced_bytes, copied = spliced_totals(log)
        # Dot-free bodies in RETR: small and big (2 rounds x 2 accounts); IMAP: every body in
        # FETCH 1:* plus the partial range (2 rounds x 2 accounts).
        retr_bytes = sum(len(stored[u][0]) + len(stored[u][2]) for u in USERS) * 2
        fetch_bytes = sum(sum(len(m) for m in stored[u]) + len(stored[u][-1][1000:71000])
                          for u in USERS) * 2
        self.assertGreaterEqual(spliced_bytes, retr_bytes + fetch_bytes, log[-3000:])
        # RETR: 2 dot-free bodies x 2 accounts x 2 rounds; FETCH 1:*: (5 + 4) bodies x 2
        # rounds, plus the partial range of the big message (the other account's last one is
        # shorter than the range's offset: an empty literal).
        self.assertGreaterEqual(spliced, 8 + 2 * (5 + 4) + 2)
        self.assertGreaterEqual(copied, 8 + 1)  # RETR of dot lines; the no-CRLF body.

    # Proves the copy path (splice off) streams many big literals in one FETCH byte-exact
    # while the client reads as fast as it can: the send queue drains again while the next
    # extent is being read, which once asked the reader for a second read in flight (an
    # assertion ended the daemon; ringpost-bench imap found it with 1 MiB messages).
    def test_copy_path_big_literals(self):
        d = self.daemon(splice_bytes_min=1 << 40)
        user = USERS[1]
        stored = self.deliver(d, user, [big_message(b"copy %d" % i, 1000) for i in range(12)])
        for _ in range(2):
            self.read_imap(d, user, stored)
        log = self.stop(d)
        spliced, _, copied = spliced_totals(log)
        self.assertEqual(spliced, 0)
        self.assertGreaterEqual(copied, 2 * (12 + 1))

    # Proves a spliced FETCH of a 4 MiB message stays byte-exact while another session
    # expunges that message and the store's upkeep garbage-collects its body and writes the
    # snapshots after which it would retire the body's segments: the sending session holds
    # them pinned (they are still there) until the last byte is out, and then they go. The
    # reader stops reading after the literal's first bytes (small receive buffer), so the send
    # is in flight through all of it.
    def test_splice_survives_expunge_and_compaction(self):
        d = self.daemon(extra=STORE, splice_bytes_min=1048576)  # The default.
        user = USERS[0]
        big = big_message(b"pinned", 4200)
        filler = [big_message(b"filler %d" % i, 150) for i in range(8)]
        stored = self.deliver(d, user, [big])[0]

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.settimeout(30)
        s.connect(("127.0.0.1", d.imap_port))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (user.encode(), PASSWORD[user].encode()))
        while not f.readline().startswith(b"b OK"):
            pass
        s.sendall(b"c FETCH 1 BODY[]\r\n")
        head = f.readline()
        self.assertTrue(head.endswith(b"{%d}\r\n" % len(stored)), head)
        first = f.read(4096)  # The send has started; now the reader stalls.

        # The shard whose store holds the body (it accepted the SMTP connection).
        holder = max(self.stats(d).items(), key=lambda item: item[1]["live"])[0]
        other = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        other.login(user, PASSWORD[user])
        other.select("INBOX")
        other.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(other.expunge()[0], "OK")
        other.logout()
        # More mail for the other account rolls segments, so there is something to compact.
        self.deliver(d, USERS[1], filler)
        # Garbage collection drops the expunged body (its bytes stop counting as live); the
        # snapshots it asks for follow within moments, and then upkeep (every 50 ms) would
        # retire the body's segments unless the send pins them: for 1.5 s of samples they
        # must still be there (and afterwards they go, below).
        self.wait_stats(d, lambda st: st[holder]["live"] < len(stored), "the body was never collected")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            stalled = self.stats(d)[holder]["segment"]
            self.assertGreaterEqual(stalled, len(stored))

        rest = b""
        want = len(stored) - len(first)
        while len(rest) < want:
            chunk = f.read(min(65536, want - len(rest)))
            self.assertTrue(chunk, "EOF inside the literal")
            rest += chunk
        self.assertEqual(first + rest, stored)
        self.assertEqual(f.readline(), b")\r\n")
        tail = f.readline()
        while not tail.startswith(b"c "):
            tail = f.readline()
        self.assertTrue(tail.startswith(b"c OK"), tail)
        s.sendall(b"d LOGOUT\r\n")
        s.close()
        # Unpinned, the dead body's segments go.
        self.wait_stats(d, lambda st: st[holder]["segment"] <= stalled - 3 * 1048576,
                        "segments never retired after the send")

        log = self.stop(d)
        _, spliced_bytes, _ = spliced_totals(log)
        self.assertGreaterEqual(spliced_bytes, len(stored), log[-3000:])
        dropped = sum(int(x) for x in re.findall(r"(\d+) bodies dropped", log))
        self.assertGreaterEqual(dropped, 1, log[-3000:])


if __name__ == "__main__":
    unittest.main()
