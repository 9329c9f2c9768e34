"""tests/integration/test_imap.py: IMAP against the real ringpostd.

Each test starts its own daemon (2 shards) on free loopback ports with an MX listener and an
IMAP listener, delivers mail with smtplib, and reads and changes it with Python's imaplib,
raw sockets and curl. Two accounts are used, one owned by each shard, so whichever shard
accepts a connection, one account's mailboxes and bodies live on the other shard: the
cross-shard paths of protocols/common/mail_access run in the tests that loop over USERS.
Every wait is bounded.
"""

import imaplib
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import mailbox, smtp_config, wait_for  # noqa: E402
from test_pop3 import PASSWORD, USERS  # noqa: E402


def imap_config(smtp_port, imap_port, imaps_port=None, folder=None, auth=""):
    # Plain IMAP LOGIN on loopback without TLS, as a test client does (the default needs TLS).
    text = smtp_config(smtp_port, users=USERS,
                       extra="\n[auth]\nplaintext_loopback = true\n" + auth)
    text += '\n[[imap.listener]]\naddress = "127.0.0.1:%d"\nkind = "imap"\n' % imap_port
    if imaps_port is not None:
        text += '\n[[imap.listener]]\naddress = "127.0.0.1:%d"\nkind = "imaps"\n' % imaps_port
        text += ('\n[tls]\ncert_file = "%s/cert.pem"\nkey_file = "%s/key.pem"\n'
                 'self_signed = true\n' % (folder, folder))
    return text


def message(subject, body=b"Hello.\r\n"):
    return (b"From: Sender <sender@remote.test>\r\nTo: someone@example.test\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <" + subject + b"@remote.test>\r\n\r\n" +
            body)


class ImapTest(unittest.TestCase):
    def daemon(self, tls=False, auth=""):
        smtp_port, imap_port, imaps_port = harness.free_ports(3)
        d = harness.Daemon(wait_ports=[smtp_port, imap_port] + ([imaps_port] if tls else []))
        d.write_config(imap_config(smtp_port, imap_port, imaps_port if tls else None, d.folder,
                                   auth))
        d.smtp_port, d.imap_port, d.imaps_port = smtp_port, imap_port, imaps_port
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

    def imap(self, d, user):
        client = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        self.addCleanup(self.logout, client)
        typ, _ = client.login(user, PASSWORD[user])
        self.assertEqual(typ, "OK")
        return client

    @staticmethod
    def logout(client):
        try:
            client.logout()
        except Exception:  # noqa: BLE001 -- already closed by the test
            pass

    def deliver(self, d, user, bodies):
        """Delivers `bodies`; returns the mailbox ({uid: bytes}, read with `ringpost mailbox
        cat`) once IMAP sees all of its messages."""
        def imap_count():
            c = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
            c.login(user, PASSWORD[user])
            typ, data = c.select("INBOX", readonly=True)
            c.logout()
            return int(data[0]) if typ == "OK" else 0

        def files():
            try:
                return mailbox(d, user)
            except RuntimeError:  # The account's store is not there before its first mail.
                return {}

        total = imap_count() + len(bodies)
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=30) as client:
            for body in bodies:
                client.sendmail("sender@remote.test", [user], body)
        self.assertTrue(wait_for(lambda: imap_count() >= total, timeout=20))
        messages = wait_for(lambda: len(files()) >= total and files(), timeout=20)
        self.assertEqual(len(messages), total)
        return messages

    def wait_untagged(self, client, name, want=None, timeout=5.0):
        """NOOPs until an untagged `name` response arrived (with the value `want`, when
        given); returns the data of every `name` response collected."""
        deadline = time.monotonic() + timeout
        collected = []
        while True:
            client.noop()
            typ, data = client.response(name)
            collected += [item for item in data if item is not None]
            if collected and (want is None or want in collected):
                return collected
            if time.monotonic() > deadline:
                self.fail("no untagged %s %r within %.0f s: %r" % (name, want, timeout,
                                                                   collected))
            time.sleep(0.05)

    # Proves LOGIN, LIST, SELECT (EXISTS, UIDVALIDITY), FETCH FLAGS RFC822.SIZE and that
    # BODY.PEEK[] returns the stored message byte for byte (with its Received: header), for
    # an account on each shard.
    def test_select_fetch_byte_exact(self):
        d = self.daemon()
        big = b"".join(b"line %06d of a longer message body\r\n" % i for i in range(20000))
        bodies = [message(b"one"), message(b"two", b"caf\xc3\xa9 8-bit\r\n.\r\n..dots\r\n"),
                  message(b"three", big)]
        for user in USERS:
            stored = self.deliver(d, user, bodies)
            c = self.imap(d, user)
            typ, data = c.list()
            self.assertEqual(typ, "OK")
            self.assertTrue(any(b'"INBOX"' in line or line.endswith(b" INBOX") for line in data),
                            data)
            typ, data = c.select("INBOX")
            self.assertEqual(typ, "OK")
            self.assertEqual(int(data[0]), 3)
            typ, data = c.response("UIDVALIDITY")
            self.assertTrue(int(data[0]) > 0)
            typ, data = c.fetch("1:*", "(FLAGS RFC822.SIZE)")
            self.assertEqual(typ, "OK")
            sizes = [int(re.search(rb"RFC822\.SIZE (\d+)", line).group(1)) for line in data]
            self.assertEqual(sizes, [len(stored[uid]) for uid in sorted(stored)])
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            got = [part[1] for part in data if isinstance(part, tuple)]
            self.assertEqual(got, [stored[uid] for uid in sorted(stored)])
            for uid in sorted(stored):
                self.assertTrue(stored[uid].startswith(b"Received: "))
            self.assertTrue(got[2].endswith(big))
            # PEEK did not set \Seen.
            typ, data = c.fetch("1", "(FLAGS)")
            self.assertNotIn(b"\\Seen", data[0])

    # Proves a message of several store extents (SMTP writes 1 MiB pieces) streams byte for
    # byte, whole and as partial ranges that start and end inside different extents.
    def test_large_message_partial(self):
        d = self.daemon()
        user = USERS[1]
        big = b"".join(b"%07d abcdefghijklmnopqrstuvwxyz0123456789\r\n" % i
                       for i in range(3 * 1024 * 1024 // 48))
        stored = self.deliver(d, user, [message(b"big", big)])
        want = stored[min(stored)]
        c = self.imap(d, user)
        c.select("INBOX")
        typ, data = c.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(data[0][1], want)
        for start, count in ((0, 10), (1048500, 200), (1000000, 2200000), (len(want) - 5, 100)):
            typ, data = c.fetch("1", "(BODY.PEEK[]<%d.%d>)" % (start, count))
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], want[start:start + count], (start, count))
        typ, data = c.fetch("1", "(BODY.PEEK[TEXT]<0.100>)")
        self.assertEqual(data[0][1], big[:100])

    # Proves FETCH and SEARCH over more messages than one host batch (256) and more output
    # than the send queue holds: every message comes back, in order, byte for byte.
    def test_many_messages(self):
        d = self.daemon()
        user = USERS[0]
        bodies = [message(b"m%03d" % i, (b"body %03d\r\n" % i) * 200) for i in range(300)]
        stored = self.deliver(d, user, bodies)
        c = self.imap(d, user)
        c.select("INBOX")
        typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        got = [part[1] for part in data if isinstance(part, tuple)]
        self.assertEqual(got, [stored[uid] for uid in sorted(stored)])
        typ, data = c.fetch("1:*", "(ENVELOPE)")
        self.assertEqual(len(data), 300)
        self.assertIn(b'"m299"', data[299])
        typ, data = c.search(None, "SUBJECT", "m150")
        self.assertEqual(data, [b"151"])

    # Proves ENVELOPE, BODYSTRUCTURE and HEADER.FIELDS (which load and parse the body).
    def test_envelope_bodystructure(self):
        d = self.daemon()
        user = USERS[1]
        self.deliver(d, user, [message(b"structured")])
        c = self.imap(d, user)
        c.select("INBOX")
        typ, data = c.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK")
        flat = b"".join(p if isinstance(p, bytes) else p[0] + p[1] for p in data)
        self.assertIn(b'"structured"', flat)
        self.assertIn(b'"TEXT" "PLAIN"', flat.upper())
        self.assertIn(b"Subject: structured\r\n", flat)

    # Proves STORE +FLAGS \Seen is durable and visible to a second session, and that a
    # non-PEEK BODY[] sets \Seen.
    def test_store_seen_second_session(self):
        d = self.daemon()
        for user in USERS:
            self.deliver(d, user, [message(b"a"), message(b"b")])
            a = self.imap(d, user)
            a.select("INBOX")
            typ, data = a.store("1", "+FLAGS", "(\\Seen \\Flagged)")
            self.assertEqual(typ, "OK")
            self.assertIn(b"\\Seen", data[0])
            a.fetch("2", "(BODY[])")
            b = self.imap(d, user)
            b.select("INBOX")
            typ, data = b.fetch("1:2", "(FLAGS)")
            self.assertIn(b"\\Seen", data[0])
            self.assertIn(b"\\Flagged", data[0])
            self.assertIn(b"\\Seen", data[1])
            typ, data = b.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
            self.assertIn(b"MESSAGES 2", data[0])
            self.assertIn(b"UNSEEN 0", data[0])

    # Proves EXPUNGE removes only \Deleted messages, durably (a new session sees the rest).
    def test_expunge(self):
        d = self.daemon()
        user = USERS[0]
        self.deliver(d, user, [message(b"keep"), message(b"drop"), message(b"keep2")])
        c = self.imap(d, user)
        c.select("INBOX")
        c.store("2", "+FLAGS", "(\\Deleted)")
        typ, data = c.expunge()
        self.assertEqual(typ, "OK")
        self.assertEqual(data, [b"2"])
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [p[1].strip() for p in data if isinstance(p, tuple)]
        self.assertEqual(subjects, [b"Subject: keep", b"Subject: keep2"])
        self.assertEqual(len(mailbox(d, user)), 2)
        other = self.imap(d, user)
        typ, data = other.select("INBOX")
        self.assertEqual(int(data[0]), 2)

    # Proves APPEND stores the literal byte for byte, with its flags, and FETCH reads it back.
    def test_append_fetch(self):
        d = self.daemon()
        for user in USERS:
            c = self.imap(d, user)
            body = message(b"appended", b"x" * 70000 + b"\r\nend\r\n")
            typ, data = c.append("INBOX", "(\\Seen)", None, body)
            self.assertEqual(typ, "OK")
            self.assertIn(b"APPENDUID", data[0])
            c.select("INBOX")
            typ, data = c.fetch("1", "(FLAGS BODY.PEEK[])")
            self.assertEqual(data[0][1], body)
            self.assertIn(b"\\Seen", data[0][0])
            self.assertEqual(list(mailbox(d, user).values()), [body])
            typ, data = c.append("Nowhere", None, None, body)
            self.assertEqual(typ, "NO")

    # Proves CREATE, RENAME and DELETE of mailboxes, seen by LIST, and APPEND into one.
    def test_create_rename_delete(self):
        d = self.daemon()
        user = USERS[1]
        c = self.imap(d, user)

        def names():
            typ, data = c.list()
            self.assertEqual(typ, "OK")
            return {line.rsplit(b" ", 1)[-1].strip(b'"') for line in data}

        self.assertEqual(c.create("Work")[0], "OK")
        self.assertIn(b"Work", names())
        self.assertEqual(c.append("Work", None, None, message(b"w"))[0], "OK")
        self.assertEqual(c.rename("Work", "Projects")[0], "OK")
        self.assertEqual(names() & {b"Work", b"Projects"}, {b"Projects"})
        typ, data = c.select("Projects")
        self.assertEqual(int(data[0]), 1)
        c.close()
        self.assertEqual(c.delete("Projects")[0], "OK")
        self.assertNotIn(b"Projects", names())
        self.assertEqual(c.select("Projects")[0], "NO")
        # A mailbox created again under a name this session watched before is watched too.
        self.assertEqual(c.create("Projects")[0], "OK")
        typ, data = c.select("Projects")
        self.assertEqual(int(data[0]), 0)
        other = self.imap(d, user)
        self.assertEqual(other.append("Projects", None, None, message(b"p"))[0], "OK")
        self.wait_untagged(c, "EXISTS", b"1")

    # Proves two sessions on one mailbox see each other's flag changes and expunges, and SMTP
    # deliveries, on NOOP.
    def test_concurrent_sessions(self):
        d = self.daemon()
        for user in USERS:
            self.deliver(d, user, [message(b"1"), message(b"2")])
            a = self.imap(d, user)
            b = self.imap(d, user)
            a.select("INBOX")
            b.select("INBOX")
            a.store("1", "+FLAGS", "(\\Answered)")
            data = self.wait_untagged(b, "FETCH")
            self.assertIn(b"\\Answered", data[0])
            self.deliver(d, user, [message(b"3")])
            self.wait_untagged(b, "EXISTS", b"3")
            self.wait_untagged(a, "EXISTS", b"3")
            b.store("2", "+FLAGS", "(\\Deleted)")
            self.assertEqual(b.expunge()[1], [b"2"])
            self.assertEqual(self.wait_untagged(a, "EXPUNGE"), [b"2"])
            a.response("FETCH")  # Drops untagged FETCHes the NOOPs collected.
            typ, data = a.fetch("1:*", "(UID)")
            uids = {int(re.search(rb"UID (\d+)", line).group(1)) for line in data}
            self.assertEqual(len(uids), 2)

    def raw(self, d):
        s = socket.create_connection(("127.0.0.1", d.imap_port), timeout=10)
        self.addCleanup(s.close)
        buf = bytearray()

        def read_until(pattern, timeout=10.0):
            deadline = time.monotonic() + timeout
            while True:
                m = re.search(pattern, buf)
                if m:
                    out = bytes(buf[:m.end()])
                    del buf[:m.end()]
                    return out
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("no %r in %r" % (pattern, bytes(buf[-300:])))
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    self.fail("closed; waiting for %r in %r" % (pattern, bytes(buf[-300:])))
                buf.extend(chunk)

        read_until(rb"\* OK[^\r]*\r\n")
        return s, read_until

    # Proves IDLE is woken by an SMTP delivery within a few seconds and ends with DONE.
    def test_idle_woken_by_delivery(self):
        d = self.daemon()
        for user in USERS:
            self.deliver(d, user, [message(b"first")])
            s, read_until = self.raw(d)
            s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), PASSWORD[user].encode()))
            read_until(rb"a OK[^\r]*\r\n")
            s.sendall(b"b SELECT INBOX\r\n")
            read_until(rb"b OK[^\r]*\r\n")
            s.sendall(b"c IDLE\r\n")
            read_until(rb"\+[^\r]*\r\n")
            with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=30) as client:
                client.sendmail("sender@remote.test", [user], message(b"wake"))
            read_until(rb"\* 2 EXISTS\r\n", timeout=5)
            s.sendall(b"DONE\r\n")
            read_until(rb"c OK[^\r]*\r\n")
            s.sendall(b"d LOGOUT\r\n")
            read_until(rb"d OK[^\r]*\r\n")

    # Proves keywords are stored: STORE, APPEND and COPY keep them, FETCH FLAGS and the other
    # session's untagged FETCH show them, PERMANENTFLAGS has \*, FLAGS lists the defined ones,
    # SEARCH KEYWORD/UNKEYWORD select by them, and all of it survives a restart.
    def test_keywords(self):
        d = self.daemon()
        for user in USERS:
            self.deliver(d, user, [message(b"k1"), message(b"k2")])
        for user in USERS:
            c1, c2 = self.imap(d, user), self.imap(d, user)
            self.assertEqual(c1.select("INBOX")[0], "OK")
            self.assertIn(b"\\*", c1.response("PERMANENTFLAGS")[1][0])
            c2.select("INBOX")
            typ, data = c1.store("1", "+FLAGS", "($Important Project1)")
            self.assertEqual(typ, "OK")
            self.assertIn(b"$Important", data[0])
            self.assertIn(b"Project1", data[0])
            seen = self.wait_untagged(c2, "FETCH")
            self.assertTrue(any(b"$Important" in line and b"Project1" in line for line in seen),
                            seen)
            self.assertEqual(c1.search(None, "KEYWORD", "$Important")[1], [b"1"])
            self.assertEqual(c1.search(None, "UNKEYWORD", "$Important")[1], [b"2"])
            typ, _ = c1.append("INBOX", "(\\Seen Later)", None, message(b"k3"))
            self.assertEqual(typ, "OK")
            self.wait_untagged(c2, "EXISTS", b"3")
            typ, data = c2.fetch("3", "(FLAGS)")
            self.assertIn(b"Later", data[0])
            self.assertIn(b"\\Seen", data[0])
            self.assertEqual(c1.create("Keep")[0], "OK")
            self.assertEqual(c1.copy("1", "Keep")[0], "OK")
            typ, data = c1.store("1", "-FLAGS", "(Project1)")
            # Earlier untagged FETCHes (the echo of c1's first STORE) may come first.
            self.assertNotIn(b"Project1", data[-1])
            self.assertEqual(c2.search(None, "KEYWORD", "Project1")[1], [b""])
        self.assertEqual(d.stop(), 0)
        d.start()
        for user in USERS:
            c = self.imap(d, user)
            c.select("INBOX")
            flags = c.response("FLAGS")[1][0]
            for name in (b"$Important", b"Project1", b"Later"):
                self.assertIn(name, flags)
            typ, data = c.fetch("1:*", "(FLAGS)")
            self.assertIn(b"$Important", data[0])
            self.assertNotIn(b"Project1", data[0])
            self.assertNotIn(b"$Important", data[1])
            self.assertIn(b"Later", data[2])
            self.assertEqual(c.search(None, "KEYWORD", "Later")[1], [b"3"])
            c.select("Keep")
            typ, data = c.fetch("1", "(FLAGS)")
            self.assertIn(b"$Important", data[0])
            self.assertIn(b"Project1", data[0])

    # Proves STATUS and LIST-STATUS count UNSEEN messages (and agree), and that a flag change
    # by another session is seen by the next STATUS.
    def test_list_status_unseen(self):
        d = self.daemon()
        user = USERS[1]
        self.deliver(d, user, [message(b"u1"), message(b"u2"), message(b"u3")])
        c = self.imap(d, user)
        c.select("INBOX")
        c.store("2", "+FLAGS", "(\\Seen)")
        other = self.imap(d, user)
        typ, data = other.status("INBOX", "(MESSAGES UNSEEN)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"UNSEEN 2", data[0])
        self.assertIn(b"MESSAGES 3", data[0])
        typ, data = other._simple_command("LIST", '""', "*", "RETURN",
                                          "(STATUS (MESSAGES UNSEEN))")
        self.assertEqual(typ, "OK")
        _, lines = other._untagged_response(typ, data, "STATUS")
        inbox = [line for line in lines if b"INBOX" in line]
        self.assertEqual(len(inbox), 1, lines)
        self.assertIn(b"UNSEEN 2", inbox[0])
        self.assertIn(b"MESSAGES 3", inbox[0])

    # Proves SUBSCRIBE/UNSUBSCRIBE are stored: a new account starts with INBOX and its
    # special-use folders subscribed, LSUB and LIST (SUBSCRIBED) show exactly the subscribed
    # mailboxes, another session sees them, and they survive a restart.
    def test_subscriptions(self):
        d = self.daemon()
        user = USERS[0]

        def lsub(client):
            typ, data = client.lsub()
            self.assertEqual(typ, "OK")
            return sorted(line.rsplit(b" ", 1)[-1].strip(b'"') for line in data if line)

        c = self.imap(d, user)
        self.assertEqual(c.create("Work")[0], "OK")
        self.assertEqual(lsub(c), [b"Drafts", b"INBOX", b"Junk", b"Sent", b"Trash"])
        for name in ("Drafts", "Junk", "Trash"):
            self.assertEqual(c.unsubscribe(name)[0], "OK")
        self.assertEqual(c.subscribe("Work")[0], "OK")
        self.assertEqual(c.subscribe("INBOX")[0], "OK")
        self.assertEqual(c.subscribe("Sent")[0], "OK")
        self.assertEqual(c.unsubscribe("Sent")[0], "OK")
        self.assertEqual(lsub(self.imap(d, user)), [b"INBOX", b"Work"])
        typ, data = c._simple_command("LIST", "(SUBSCRIBED)", '""', "*")
        _, lines = c._untagged_response(typ, data, "LIST")
        self.assertEqual(sorted(line.rsplit(b" ", 1)[-1].strip(b'"') for line in lines),
                         [b"INBOX", b"Work"])
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(lsub(self.imap(d, user)), [b"INBOX", b"Work"])

    # Proves garbage and a 100 KB line get BAD without dropping the session.
    def test_garbage_and_long_line(self):
        d = self.daemon()
        s, read_until = self.raw(d)
        s.sendall(b"\x00\xff garbage\r\n")
        read_until(rb"BAD[^\r]*\r\n")
        s.sendall(b"x NOSUCHCOMMAND\r\n")
        read_until(rb"x BAD[^\r]*\r\n")
        s.sendall(b"y FETCH 1 (FLAGS)\r\n")
        read_until(rb"y (BAD|NO)[^\r]*\r\n")
        s.sendall(b"z NOOP " + b"A" * 100000 + b"\r\n")
        read_until(rb"BAD[^\r]*\r\n")
        user = USERS[0]
        s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), PASSWORD[user].encode()))
        read_until(rb"a OK[^\r]*\r\n")
        s.sendall(b"b SELECT INBOX\r\nc FETCH 1:* (FLAGS)\r\nd NOOP\r\n")
        read_until(rb"d OK[^\r]*\r\n")
        s.sendall(b"e LOGIN bad\r\n")
        read_until(rb"e (BAD|NO)[^\r]*\r\n")
        s.sendall(b"f LOGOUT\r\n")
        read_until(rb"\* BYE[^\r]*\r\n")
        read_until(rb"f OK[^\r]*\r\n")

    # Proves a wrong password is refused and the session goes on.
    def test_bad_password(self):
        d = self.daemon()
        c = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        self.addCleanup(self.logout, c)
        with self.assertRaises(imaplib.IMAP4.error):
            c.login(USERS[0], "wrong")
        self.assertEqual(c.login(USERS[0], PASSWORD[USERS[0]])[0], "OK")

    # Proves IMAP logins share the per-address failure limit with SMTP and POP3: after
    # failures_max wrong passwords from 127.0.0.7 even the right one is refused there, while
    # 127.0.0.1 still logs in.
    def test_wrong_password_throttled(self):
        d = self.daemon(auth="failures_max = 3\nfailure_window_s = 600\nfailure_delay_ms = 20\n")

        def connect(source):
            s = socket.create_connection(("127.0.0.1", d.imap_port), timeout=15,
                                         source_address=(source, 0))
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"* OK"))
            return s, f

        s, f = connect("127.0.0.7")
        for i in range(3):
            s.sendall(b"a%d LOGIN %s wrong%d\r\n" % (i, USERS[0].encode(), i))
            self.assertEqual(f.readline(),
                             b"a%d NO [AUTHENTICATIONFAILED] Authentication failed\r\n" % i)
        s.sendall(b"b LOGIN %s %s\r\n" % (USERS[0].encode(), PASSWORD[USERS[0]].encode()))
        self.assertEqual(f.readline(), b"b NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
        s.close()
        c = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        self.addCleanup(self.logout, c)
        self.assertEqual(c.login(USERS[0], PASSWORD[USERS[0]])[0], "OK")

    # Proves implicit TLS on imaps and STARTTLS on imap (self-signed certificate): LOGIN and
    # a byte-exact FETCH over each.
    def test_imaps_and_starttls(self):
        d = self.daemon(tls=True)
        user = USERS[0]
        stored = self.deliver(d, user, [message(b"secret")])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        c = imaplib.IMAP4_SSL("127.0.0.1", d.imaps_port, ssl_context=context, timeout=30)
        self.addCleanup(self.logout, c)
        self.assertEqual(c.login(user, PASSWORD[user])[0], "OK")
        c.select("INBOX")
        self.assertEqual(c.fetch("1", "(BODY.PEEK[])")[1][0][1], stored[min(stored)])
        s = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=30)
        self.addCleanup(self.logout, s)
        self.assertIn("STARTTLS", s.capabilities)
        self.assertEqual(s.starttls(context)[0], "OK")
        self.assertEqual(s.login(user, PASSWORD[user])[0], "OK")
        s.select("INBOX")
        self.assertEqual(s.fetch("1", "(BODY.PEEK[])")[1][0][1], stored[min(stored)])

    # Proves curl's imap:// URL fetch of message 1, byte-exact.
    def test_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl missing")
        d = self.daemon()
        user = USERS[0]
        stored = self.deliver(d, user, [message(b"curl")])
        url = "imap://127.0.0.1:%d/INBOX;UID=%d" % (d.imap_port, min(stored))
        done = subprocess.run(["curl", "-s", "--max-time", "20", "-u",
                               "%s:%s" % (user, PASSWORD[user]), url],
                              capture_output=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, stored[min(stored)])


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
