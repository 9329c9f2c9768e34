"""tests/integration/harness.py: start ringpostd for an integration test.

Shared by every integration test: writes a temporary config, picks free loopback ports,
starts the daemon in its own temporary folder, waits until it listens, stops it and
returns its exit code, and keeps its log (stderr) for the test to read.

    from harness import Daemon, free_ports, require_io_uring
    require_io_uring()
    port, = free_ports(1)
    with Daemon(extra='[[engine.test_echo_listener]]\\naddress = "127.0.0.1:%d"\\n' % port,
                wait_ports=[port]) as d:
        ...
        assert d.stop() == 0

Everything listens on 127.0.0.1. Timeouts are bounded; a test never waits forever.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def build_dir():
    return os.environ.get("RP_BUILD_DIR") or os.path.join(source_dir(), "build")


def source_dir():
    return os.environ.get("RP_SOURCE_DIR") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))


def binary(name):
    path = os.path.join(build_dir(), "tools", name)
    if not os.path.exists(path):
        print("missing %s (build it first)" % path, file=sys.stderr)
        sys.exit(1)
    return path


def require_io_uring():
    """Exits 77 (skip) when the kernel has no io_uring."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 4, params)  # io_uring_setup(entries, params)
    if fd < 0:
        print("io_uring unavailable (errno %d): skipping" % ctypes.get_errno(),
              file=sys.stderr)
        sys.exit(SKIP)
    os.close(fd)


def free_ports(count):
    """Ports free on 127.0.0.1 right now (held together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


BASE_CONFIG = """
[server]
hostname = "mail.example.test"
cores = {cores}
pin_cores = false
data_dir = "data"
log_level = "{log_level}"

[engine]
ring_entries = 512
recv_buffer_count = 1024
recv_buffer_bytes = 16384
sessions_per_shard = {sessions}
connections_per_ip = {per_ip}
shutdown_grace_ms = {grace_ms}

[[domain]]
name = "example.test"

[[user]]
address = "demo@example.test"
password = "demo"
"""


# With no [dns] resolvers the daemon reads /etc/resolv.conf (the production default), and
# tests must never query the machine's resolver: a config without a [dns] table gets one
# naming the discard port on loopback, where nothing answers (lookups time out and defer).
LOOPBACK_DNS = '\n[dns]\nresolvers = ["127.0.0.1:9"]\n'


def with_loopback_dns(text):
    if any(line.strip() == "[dns]" for line in text.splitlines()):
        return text
    return text + LOOPBACK_DNS


class Daemon:
    """One ringpostd in a temporary folder. Use as a context manager."""

    def __init__(self, extra="", wait_ports=(), cores=2, sessions=1024, per_ip=0,
                 grace_ms=5000, log_level="info", config_text=None):
        self.folder = tempfile.mkdtemp(prefix="ringpost-test-")
        self.config_path = os.path.join(self.folder, "ringpost.toml")
        if config_text is None:
            config_text = BASE_CONFIG.format(cores=cores, sessions=sessions, per_ip=per_ip,
                                             grace_ms=grace_ms, log_level=log_level) + extra
        self.write_config(config_text)
        self.wait_ports = list(wait_ports)
        self.process = None
        self.log_path = os.path.join(self.folder, "ringpostd.log")
        self.returncode = None

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(with_loopback_dns(text))

    def start(self, wait=True, timeout=15.0):
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen([binary("ringpostd"), "--config", self.config_path],
                                        cwd=self.folder, stdin=subprocess.DEVNULL,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        if wait:
            for port in self.wait_ports:
                self.wait_listening(port, timeout)
        return self

    def wait_listening(self, port, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("ringpostd exited %d before listening:\n%s"
                                   % (self.process.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ringpostd did not listen on %d within %.0fs:\n%s"
                           % (port, timeout, self.log()))

    def signal(self, number):
        self.process.send_signal(number)

    def wait_exit(self, timeout=30.0):
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
            raise RuntimeError("ringpostd did not exit within %.0fs:\n%s" % (timeout, self.log()))
        self.log_file.close()
        return self.returncode

    def stop(self, timeout=30.0):
        """SIGTERM, then the exit code (killed and an error after `timeout`)."""
        if self.process is None or self.process.poll() is not None:
            return self.wait_exit(timeout) if self.process else None
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False

    def __enter__(self):
        return self.start()

    def __exit__(self, kind, value, traceback):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if kind is not None:
            sys.stderr.write("---- ringpostd log ----\n%s\n" % self.log())
        shutil.rmtree(self.folder, ignore_errors=True)
        return False


def stop_checked(d, *folders):
    """Stops a class-wide daemon, removes `folders`, and fails if it did not exit 0."""
    code = d.stop()
    log = d.log()
    d.__exit__(None, None, None)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    if code != 0:
        raise AssertionError("ringpostd exit code %r\n%s" % (code, log))


def run_daemon_once(config_text, args=(), timeout=20.0, config_path=None):
    """Runs ringpostd with `args` + --config to completion: (exit code, output).
    `config_path` replaces the written config (e.g. a file that does not exist)."""
    folder = tempfile.mkdtemp(prefix="ringpost-test-")
    try:
        path = config_path or os.path.join(folder, "ringpost.toml")
        if config_path is None:
            with open(path, "w") as f:
                f.write(with_loopback_dns(config_text))
        done = subprocess.run([binary("ringpostd")] + list(args) + ["--config", path],
                              cwd=folder, capture_output=True, timeout=timeout)
        return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LineClient:
    """A blocking loopback client with a receive buffer and bounded waits."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, end, timeout=10.0):
        """Bytes up to and including `end`; b"" prefix on EOF (with what came)."""
        deadline = time.monotonic() + timeout
        while end not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("waited for %r, have %r" % (end, self.buffer[-200:]))
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("EOF while waiting for %r after %r" % (end, self.buffer[-200:]))
            self.buffer += chunk
        index = self.buffer.index(end) + len(end)
        out, self.buffer = self.buffer[:index], self.buffer[index:]
        return out

    def read_to_eof(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no EOF within %.1fs" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                out, self.buffer = self.buffer, b""
                return out
            self.buffer += chunk

    def close(self):
        self.sock.close()
