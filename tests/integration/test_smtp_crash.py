"""tests/integration/test_smtp_crash.py: kill -9 ringpostd during an SMTP load, restart it,
and check that every message answered 250 is in its mailbox exactly once (issue 3).

Rounds share one data folder, so each restart also recovers the earlier rounds' data. The
kill moment is drawn from a seeded PRNG; the seed is printed, and RP_CRASH_SEED=N replays.
Loads are bounded: each client stops at the kill, or after 4,000 messages.
"""

import os
import random
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from smtp_util import Raw, mailbox, smtp_config, strip_received, wait_mailbox  # noqa: E402

ROUNDS = 4
CLIENTS = 8
USERS = ["demo@example.test", "u1@example.test", "u2@example.test"]


def load(port, name, acked, stop):
    """Sends messages until `stop` is set or the connection dies; records each 250."""
    try:
        c = Raw(port, timeout=5)
        c.reply()
        c.command("EHLO %s.test" % name)
        for n in range(4000):
            if stop.is_set():
                break
            rcpt = USERS[n % len(USERS)]
            tag = "%s-%d" % (name, n)
            if c.command("MAIL FROM:<load@remote.test>")[0] != 250:
                break
            if c.command("RCPT TO:<%s>" % rcpt)[0] != 250:
                break
            if c.command("DATA")[0] != 354:
                break
            c.send(b"Subject: %s\r\n\r\n%s\r\n.\r\n" % (tag.encode(), b"x" * 2000))
            code, _ = c.reply()
            if code == 250:
                acked.append((rcpt, tag))
    except (OSError, ConnectionError):
        pass


class CrashTest(unittest.TestCase):
    # Proves no acknowledged message is lost or duplicated across SIGKILLs at random moments.
    def test_kill9_during_load(self):
        seed = int(os.environ.get("RP_CRASH_SEED", random.randrange(1 << 30)))
        print("crash test seed %d (RP_CRASH_SEED=%d replays)" % (seed, seed), flush=True)
        rng = random.Random(seed)
        port, = harness.free_ports(1)
        d = harness.Daemon(config_text=smtp_config(port, users=USERS), wait_ports=[port])
        acked = []
        try:
            for round_index in range(ROUNDS):
                d.start()
                stop = threading.Event()
                threads = [threading.Thread(target=load, args=(port, "r%dc%d" % (round_index, i),
                                                               acked, stop))
                           for i in range(CLIENTS)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.3, 1.5))
                d.process.send_signal(signal.SIGKILL)
                d.process.wait(30)
                d.log_file.close()
                stop.set()
                for t in threads:
                    t.join(30)
            self.assertGreater(len(acked), 100, "the load hardly ran")
            d.start()
            for user in USERS:
                want = sorted(tag for rcpt, tag in acked if rcpt == user)
                got_messages = wait_mailbox(d, user, len(want), timeout=30)
                got = [strip_received(m).split(b"\r\n", 1)[0].decode()[len("Subject: "):]
                       for m in got_messages.values()]
                duplicates = sorted({t for t in got if got.count(t) > 1})
                self.assertEqual(duplicates, [], "delivered twice (seed %d)" % seed)
                missing = sorted(set(want) - set(got))
                self.assertEqual(missing, [], "acknowledged but lost (seed %d)" % seed)
                for m in got_messages.values():
                    self.assertTrue(m.endswith(b"x" * 2000 + b"\r\n"), "damaged body")
            print("crash test: %d rounds, %d messages acknowledged, all present once"
                  % (ROUNDS, len(acked)), flush=True)
            self.assertEqual(d.stop(), 0)
        finally:
            d.__exit__(None, None, None)


if __name__ == "__main__":
    harness.require_io_uring()
    unittest.main(verbosity=2)
