#!/usr/bin/env python3
"""bench/imap_idle_memory.py: ringpostd memory per idle authenticated IMAP session.

Starts ringpostd (2 shards, sessions_per_shard 8192, one IMAP listener on loopback, --users
accounts with plaintext passwords from the config, so logins cost nothing), puts --messages
messages of 4 KiB into each INBOX, then opens N connections from this one process
(non-blocking sockets, selectors; at most --parallel handshakes at a time), spread over the
accounts, logs each in and, with --select, selects INBOX. It reads ringpostd's VmRSS from
/proc/PID/status with no session open (after the warm-up sessions that filled the INBOXes)
and with all N open and idle, and prints the growth per session. Kernel socket memory is not
in VmRSS and is not counted.

    python3 bench/imap_idle_memory.py --build build --count 10000 [--select]

Exit code 0 when every session logged in; 1 otherwise.
"""

import argparse
import errno
import imaplib
import os
import selectors
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

PASSWORD = b"pw"


def user(index):
    return b"user%d@example.test" % index


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


class Conn:
    """One IMAP connection stepping through greeting -> LOGIN -> (SELECT) -> idle."""

    def __init__(self, port, select, account):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        self.steps = [(None, b"* OK"), (b"a LOGIN %s %s\r\n" % (account, PASSWORD), b"a OK")]
        if select:
            self.steps.append((b"b SELECT INBOX\r\n", b"b OK"))
        self.buffer = b""
        self.sent = False
        self.failed = None

    def done(self):
        return not self.steps

    def on_ready(self):
        """Called when readable or writable. Returns True when the connection is idle now."""
        request, expect = self.steps[0]
        if request is not None and not self.sent:
            self.sock.send(request)  # Small: fits the empty socket buffer.
            self.sent = True
            return False
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not chunk:
            self.failed = "closed: %r" % self.buffer[-200:]
            return True
        self.buffer += chunk
        while b"\r\n" in self.buffer and self.steps:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            request, expect = self.steps[0]
            if line.startswith(expect):
                self.steps.pop(0)
                self.sent = False
                if self.steps and self.steps[0][0] is not None:
                    self.sock.send(self.steps[0][0])
                    self.sent = True
            elif line.startswith(expect.split()[0] + b" "):  # Tagged NO/BAD.
                self.failed = line.decode("ascii", "replace")
                return True
        return not self.steps


def open_sessions(port, count, select, parallel, deadline, users):
    selector = selectors.DefaultSelector()
    idle, pending, failed = [], 0, []
    started = 0
    while len(idle) + len(failed) < count:
        while started < count and pending < parallel:
            c = Conn(port, select, user(started % users))
            selector.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            started += 1
            pending += 1
        if time.monotonic() > deadline:
            raise RuntimeError("timed out: %d idle, %d pending" % (len(idle), pending))
        for key, events in selector.select(timeout=1.0):
            c = key.data
            if events & selectors.EVENT_WRITE and not (events & selectors.EVENT_READ) and c.sent:
                continue
            if c.on_ready():
                selector.unregister(c.sock)
                pending -= 1
                (failed if c.failed else idle).append(c)
            elif c.sent:
                selector.modify(c.sock, selectors.EVENT_READ, c)
    selector.close()
    return idle, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=None, help="build folder (default: build)")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--select", action="store_true", help="also SELECT INBOX")
    parser.add_argument("--messages", type=int, default=20, help="messages put in INBOX")
    parser.add_argument("--parallel", type=int, default=200, help="handshakes at a time")
    parser.add_argument("--users", type=int, default=100,
                        help="accounts the sessions are spread over")
    args = parser.parse_args()
    if args.build:
        os.environ["RP_BUILD_DIR"] = os.path.abspath(args.build)
    harness.require_io_uring()
    port, smtp_port = harness.free_ports(2)
    extra = ('\n[auth]\nplaintext_loopback = true\n'
             '\n[[imap.listener]]\naddress = "127.0.0.1:%d"\nkind = "imap"\n'
             '\n[[smtp.listener]]\naddress = "127.0.0.1:%d"\nkind = "mx"\n' % (port, smtp_port))
    for i in range(args.users):
        extra += '\n[[user]]\naddress = "%s"\npassword = "%s"\n' % (user(i).decode(),
                                                                     PASSWORD.decode())
    with harness.Daemon(extra=extra, wait_ports=[port, smtp_port], sessions=8192,
                        log_level="warn") as d:
        pid = d.process.pid
        # Warm-up: one session fills INBOX and goes away, so shared tables exist already.
        for u in range(args.users):
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            c.login(user(u).decode(), PASSWORD.decode())
            for i in range(args.messages):
                c.append("INBOX", None, None, b"Subject: m%d\r\n\r\n%s\r\n" % (i, b"x" * 4000))
            c.logout()
        time.sleep(0.5)
        base = rss_kib(pid)
        t0 = time.monotonic()
        idle, failed = open_sessions(port, args.count, args.select, args.parallel,
                                     time.monotonic() + 600, args.users)
        took = time.monotonic() - t0
        time.sleep(1.0)
        loaded = rss_kib(pid)
        per = (loaded - base) * 1024.0 / max(1, len(idle))
        print("sessions: %d idle%s, %d failed (%.1f s to open)"
              % (len(idle), " with INBOX selected" if args.select else "", len(failed), took))
        if failed:
            print("first failure: %s" % failed[0].failed)
        print("ringpostd VmRSS: %d KiB with none, %d KiB with %d: +%d KiB, %.0f bytes "
              "(%.2f KiB) per session" % (base, loaded, len(idle), loaded - base, per,
                                           per / 1024.0))
        for c in idle:
            c.sock.close()
        code = d.stop()
        if code != 0:
            print("ringpostd exit code %d" % code)
            return 1
    return 0 if not failed and len(idle) == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
