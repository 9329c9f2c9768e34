"""tests/integration/smtp_util.py: helpers for SMTP integration tests (raw sockets, mailboxes)."""

import os
import socket
import subprocess
import time

import harness


def smtp_config(port, users=("demo@example.test",), trusted=(), extra="", cores=2):
    """A config with one MX listener on `port`, the given users, and `extra` appended."""
    text = harness.BASE_CONFIG.format(cores=cores, sessions=2048, per_ip=0, grace_ms=5000,
                                      log_level="info")
    # BASE_CONFIG names demo@example.test already.
    for user in users:
        if user != "demo@example.test":
            text += '\n[[user]]\naddress = "%s"\npassword = "x"\n' % user
    text += '\n[smtp]\ntrusted_networks = [%s]\n' % ", ".join('"%s"' % t for t in trusted)
    text += extra
    text += '\n[[smtp.listener]]\naddress = "127.0.0.1:%d"\nkind = "mx"\n' % port
    return text


class Raw:
    """A plain SMTP connection for what smtplib will not send: pipelined groups, garbage,
    overlong lines. Every read has a deadline."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One whole (possibly multi-line) reply as (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed after %r" % lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def command(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=10.0):
        """True when the server closes the connection within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def ringpost(daemon, *args, timeout=60):
    """Runs the admin tool on the daemon's config; returns stdout bytes (raises on failure)."""
    tool = harness.binary("ringpost")
    done = subprocess.run([tool, "--config", daemon.config_path] + list(args),
                          cwd=daemon.folder, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("ringpost %s: exit %d: %s" % (" ".join(args), done.returncode,
                                                         done.stderr.decode(errors="replace")))
    return done.stdout


def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def mailbox(daemon, account, name="INBOX"):
    """Every message of a mailbox as {uid: bytes}, read through `ringpost mailbox cat`."""
    raw = ringpost(daemon, "mailbox", "cat", account, name)
    messages = {}
    at = 0
    while at < len(raw):
        end = raw.index(b"\n", at)
        head = raw[at:end].split()
        assert head[:2] == [b"===", b"UID"], raw[at:end]
        uid, size = int(head[2]), int(head[3])
        messages[uid] = raw[end + 1:end + 1 + size]
        at = end + 1 + size + 1
    return messages


def strip_received(message):
    """The message without the Received: header ringpost prepends (with its folded lines)."""
    assert message.startswith(b"Received: "), message[:80]
    at = message.index(b"\r\n") + 2
    while message[at:at + 1] in (b" ", b"\t"):
        at = message.index(b"\r\n", at) + 2
    return message[at:]


def wait_mailbox(daemon, account, count, name="INBOX", timeout=20.0):
    """The mailbox once it holds at least `count` messages (a 250 means durable in the
    spool; delivery into a mailbox owned by another shard follows within moments)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            messages = mailbox(daemon, account, name)
        except RuntimeError:
            # The read-only tool can race the daemon's store upkeep (a snapshot replacing
            # segments while it reads) and see an incomplete store: read again.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)
