"""tests/integration/test_store_upkeep.py: the daemon keeps its store tidy (issue 2).

A real ringpostd (2 shards, small segments, quick upkeep) receives mail over SMTP for one
account on each shard, so bodies live on the accepting shard and messages on the owner:
garbage collection has to ask the other shard. Most of the mail is then deleted over POP3
(DELE + QUIT); the test polls `ringpost store stats` until GC and compaction reclaimed the
space, checks the remaining mail byte for byte (as stored, through `ringpost mailbox cat`,
which verifies every chunk's checksum), restarts the daemon and checks that the
store opened from a snapshot (not by replaying the whole log) with the same mail.
Every wait is bounded.
"""

import os
import poplib
import re
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import mailbox, ringpost, smtp_config, strip_received, wait_mailbox  # noqa: E402
from test_pop3 import PASSWORD, USERS  # noqa: E402

# USER/PASS in clear over loopback (POP3 wants TLS elsewhere); failed logins wait briefly.
PLAINTEXT_AUTH = ("\n[auth]\nplaintext_loopback = true\nfailure_delay_ms = 20\n"
                  "failure_delay_max_ms = 100\n")

MESSAGES = 60          # Per account.
BODY_BYTES = 24 * 1024
KEEP_EVERY = 10        # Keep messages 0, 10, 20, ...

SNAPSHOT_LOG_BYTES = 262144
STORE = """
[store]
segment_bytes = 1048576
snapshot_log_bytes = %d
upkeep_interval_ms = 50
gc_interval_ms = 100
compact_step_bytes = 131072
""" % SNAPSHOT_LOG_BYTES


def message(user, i):
    # Distinct, incompressible-looking text; lines well under 998 octets.
    line = ("%s %04d " % (user, i)) * 4
    lines = ["Subject: upkeep %d" % i, ""]
    while sum(len(x) + 2 for x in lines) < BODY_BYTES:
        lines.append("%08d %s" % (len(lines), line))
    return ("\r\n".join(lines) + "\r\n").encode()


def stats(d):
    """Totals over shards: segment bytes, live body bytes, messages; and the open lines."""
    for _ in range(50):
        try:
            text = ringpost(d, "store", "stats").decode()
            break
        except RuntimeError:
            time.sleep(0.1)  # A segment retired while the tool opened it: look again.
    else:
        text = ringpost(d, "store", "stats").decode()
    total = {"segment": 0, "live": 0, "messages": 0}
    for m in re.finditer(r"(\d+) segment bytes, (\d+) live body bytes", text):
        total["segment"] += int(m.group(1))
        total["live"] += int(m.group(2))
    for m in re.finditer(r"(\d+) messages", text):
        total["messages"] += int(m.group(1))
    total["text"] = text
    return total


class StoreUpkeepTest(unittest.TestCase):
    # Proves the daemon drives GC across shards, compaction and snapshots by itself: after
    # deleting 90 % of the mail the disk shrinks to a fraction, the kept mail is byte-exact,
    # and a restart opens from a snapshot and replays only a little of the log.
    def test_reclaims_and_restarts_from_snapshot(self):
        harness.require_io_uring()
        smtp_port, pop3_port = harness.free_ports(2)
        config = smtp_config(smtp_port, users=USERS, extra=STORE + PLAINTEXT_AUTH)
        config += '\n[[pop3.listener]]\naddress = "127.0.0.1:%d"\nkind = "pop3"\n' % pop3_port
        d = harness.Daemon(config_text=config, wait_ports=[smtp_port, pop3_port])
        d.start()
        try:
            self.run_steps(d, smtp_port, pop3_port)
        except BaseException:
            sys.stderr.write("---- ringpostd log ----\n%s\n" % d.log()[-6000:])
            raise
        finally:
            if d.process.poll() is None:
                d.stop()
            d.__exit__(None, None, None)

    def pop(self, port, user):
        deadline = time.monotonic() + 10
        while True:
            try:
                client = poplib.POP3("127.0.0.1", port, timeout=30)
                client.user(user)
                client.pass_(PASSWORD[user])
                return client
            except poplib.error_proto as e:
                if b"IN-USE" not in e.args[0] or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def kept(self, d, user):
        """The mailbox as stored (read and checksum-verified by `ringpost mailbox cat`), in UID
        order, without the Received: header."""
        return [strip_received(m) for _, m in sorted(mailbox(d, user).items())]

    def run_steps(self, d, smtp_port, pop3_port):
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            for i in range(MESSAGES):
                for user in USERS:
                    client.sendmail("sender@remote.test", [user], message(user, i))
        for user in USERS:
            self.assertEqual(len(wait_mailbox(d, user, MESSAGES, timeout=30)), MESSAGES)
        before = stats(d)
        self.assertGreater(before["segment"], MESSAGES * len(USERS) * BODY_BYTES)

        # Delete 90 % over POP3 (RFC 1939: DELE marks, QUIT expunges).
        for user in USERS:
            deadline = time.monotonic() + 10
            while True:  # The POP3 view may trail the mailbox by one commit.
                client = self.pop(pop3_port, user)
                if client.stat()[0] == MESSAGES or time.monotonic() > deadline:
                    break
                client.quit()
                time.sleep(0.05)
            self.assertEqual(client.stat()[0], MESSAGES)
            for i in range(MESSAGES):
                if i % KEEP_EVERY != 0:
                    client.dele(i + 1)
            client.quit()
        want = {user: [message(user, i) for i in range(0, MESSAGES, KEEP_EVERY)] for user in USERS}

        # Upkeep: GC (asking the other shard), compaction, two snapshots, segments retired.
        deadline = time.monotonic() + 30
        now = stats(d)
        while now["segment"] > before["segment"] // 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = stats(d)
        self.assertLessEqual(now["segment"], before["segment"] // 3,
                             "space not reclaimed:\nbefore %s\nnow %s" % (before["text"], now["text"]))
        self.assertEqual(now["messages"], len(USERS) * len(want[USERS[0]]))
        for user in USERS:
            self.assertEqual(self.kept(d, user), want[user])

        # Restart: the store opens from a snapshot, replaying only the log written after it.
        self.assertEqual(d.stop(), 0)
        self.assertIn("snapshot", d.log())  # Upkeep reported what it did.
        after = stats(d)
        self.assertEqual(len(re.findall(r"opened from snapshot", after["text"])), len(USERS),
                         after["text"])
        # Replay is bounded by the snapshot threshold, not by the log written (several MiB).
        replayed = [int(x) for x in re.findall(r"\((\d+) bytes\) replayed", after["text"])]
        self.assertEqual(len(replayed), len(USERS), after["text"])
        for count in replayed:
            self.assertLess(count, SNAPSHOT_LOG_BYTES, after["text"])
        d.start()
        for user in USERS:
            self.assertEqual(self.kept(d, user), want[user])


if __name__ == "__main__":
    unittest.main()
