"""Engine integration tests: the real ringpostd serving the test-only line-echo protocol
([[engine.test_echo_listener]]) on loopback.

Proves: 200 concurrent clients are served correctly; 500 idle connections stay open and
cost nothing to others, and are reclaimed by the idle timeout; garbage bytes and a 100 KB
line are handled without harm; a client trickling one byte every 100 ms is timed out while
another client keeps its replies; the per-address limit refuses; SIGHUP logs what changed;
SIGTERM exits 0; a port in use, a missing config, a bad key and a missing certificate each
fail the start with one clear line. Every loop is bounded in count and time; no timing
assertion is about speed.
"""

import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, LineClient, free_ports, require_io_uring, run_daemon_once  # noqa

# The short idle timeout is for the tests that wait for it; the others run with a long one,
# so that a loaded machine (sanitizers, parallel builds) cannot time their clients out.
IDLE_MS = 2000
LONG_IDLE_MS = 60000


def echo_config(port, extra="", idle_ms=LONG_IDLE_MS):
    return ("[smtp.timeouts]\nidle_ms = %d\n[[engine.test_echo_listener]]\n"
            "address = \"127.0.0.1:%d\"\n" % (idle_ms, port)) + extra


def greet(port):
    client = LineClient(port)
    assert client.read_until(b"\r\n") == b"+ECHO ready\r\n"
    return client


def test_concurrent_clients(port):
    """200 clients at once, each 20 pipelined and interleaved lines, all echoed in order."""
    errors = []

    def run(index):
        try:
            client = greet(port)
            for batch in range(4):
                lines = [b"client %d line %d" % (index, batch * 5 + i) for i in range(5)]
                client.send(b"".join(line + b"\r\n" for line in lines))
                for line in lines:
                    got = client.read_until(b"\r\n")
                    assert got == b"+" + line + b"\r\n", got
            client.send(b"QUIT\r\n")
            assert client.read_until(b"\r\n") == b"+BYE\r\n"
            client.read_to_eof()
            client.close()
        except Exception as error:  # noqa: BLE001 - collected and reported below.
            errors.append("client %d: %r" % (index, error))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "clients still running after 60 s"
    assert not errors, errors[:5]


def test_idle_connections(port):
    """500 idle connections stay open without hurting others, then time out."""
    idle = [greet(port) for _ in range(500)]
    active = greet(port)
    for i in range(10):
        active.send(b"ping %d\n" % i)
        assert active.read_until(b"\r\n") == b"+ping %d\r\n" % i
    # The server reclaims every idle one: a timeout reply, then EOF.
    for client in idle:
        assert client.read_to_eof(timeout=IDLE_MS / 1000 + 20) == b"-ERR timeout\r\n"
        client.close()
    active.close()


def test_garbage_and_long_line(port):
    """Random bytes (NULs, bare CRs, invalid UTF-8) and a 100 KB line leave the session and
    the daemon serving."""
    rng = random.Random(1)
    client = greet(port)
    garbage = bytes(rng.randrange(256) for _ in range(65536)).replace(b"\n", b"")
    line = garbage[:500]
    client.send(line + b"\n")
    expected = line[:-1] if line.endswith(b"\r") else line
    assert client.read_until(b"\r\n", timeout=10) == b"+" + expected + b"\r\n"
    client.send(b"\nafter garbage\n")
    client.read_until(b"+after garbage\r\n")
    client.send(garbage + b"\nafter big garbage\n")
    got = client.read_until(b"+after big garbage\r\n")
    assert got.startswith(b"-ERR line too long\r\n"), got[:100]
    client.send(b"z" * 100_000 + b"\r\nafter long line\r\n")
    assert client.read_until(b"\r\n") == b"-ERR line too long\r\n"
    assert client.read_until(b"\r\n") == b"+after long line\r\n"
    client.close()
    fresh = greet(port)
    fresh.send(b"still here\n")
    assert fresh.read_until(b"\r\n") == b"+still here\r\n"
    fresh.close()


def test_trickle_timed_out(port):
    """One byte every 100 ms without a line end: timed out after the idle timeout, while a
    client alongside keeps getting its replies."""
    slow = greet(port)
    fast = greet(port)
    slow.sock.setblocking(False)
    timed_out = False
    for i in range(int(IDLE_MS / 100) * 4):
        try:
            slow.sock.send(b"x")
        except OSError:
            timed_out = True
            break
        fast.send(b"tick %d\n" % i)
        assert fast.read_until(b"\r\n") == b"+tick %d\r\n" % i
        time.sleep(0.1)
        try:
            chunk = slow.sock.recv(4096)
            if chunk == b"" or b"-ERR timeout" in chunk:
                timed_out = True
                break
        except BlockingIOError:
            pass
    assert timed_out, "the trickling client was never timed out"
    slow.close()
    fast.close()


def test_per_ip_limit():
    port, = free_ports(1)
    with Daemon(extra=echo_config(port), wait_ports=[port], per_ip=3) as daemon:
        # The harness's readiness probe may still be counted for a moment: retry a refused
        # one a bounded number of times.
        clients = []
        for _ in range(3):
            for attempt in range(100):
                client = LineClient(port)
                if client.read_until(b"\r\n") == b"+ECHO ready\r\n":
                    clients.append(client)
                    break
                client.close()
                time.sleep(0.05)
        assert len(clients) == 3
        extra = LineClient(port)
        assert extra.read_until(b"\r\n") == b"-ECHO too many connections from your address\r\n"
        assert daemon.stop() == 0


def test_reload_and_sigterm():
    port, = free_ports(1)
    with Daemon(extra=echo_config(port), wait_ports=[port], per_ip=100) as daemon:
        client = greet(port)
        with open(daemon.config_path) as f:
            text = f.read()
        daemon.write_config(text.replace("connections_per_ip = 100", "connections_per_ip = 7")
                            .replace("sessions_per_shard = 1024", "sessions_per_shard = 512"))
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_log("config reload: engine.connections_per_ip: 100 -> 7"), daemon.log()
        assert daemon.wait_log("engine.sessions_per_shard: 1024 -> 512 (needs a restart")
        client.send(b"alive\n")
        assert client.read_until(b"\r\n") == b"+alive\r\n"
        assert daemon.stop() == 0, daemon.log()
        assert client.read_to_eof(timeout=10) == b""
        assert "SIGTERM: stopping" in daemon.log()


def test_start_errors():
    port, = free_ports(1)
    # Port in use: one clear line, non-zero exit.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        daemon = Daemon(extra=echo_config(port))
        code, output = run_daemon_once(open(daemon.config_path).read())
        lines = output.strip().splitlines()
        assert code != 0
        assert len(lines) == 1, output
        assert "127.0.0.1:%d" % port in lines[0] and "in use" in lines[0], output
    finally:
        holder.close()
    # A config that does not exist.
    code, output = run_daemon_once("", config_path="/nonexistent/ringpost.toml")
    assert code != 0 and output.strip() == (
        "ringpostd: /nonexistent/ringpost.toml: cannot read: No such file or directory"), output
    # An unknown key: --check-config prints the line and key.
    code, output = run_daemon_once("[engine]\nring_entries = 64\nbogus = 1\n",
                                   args=["--check-config"])
    assert code == 1 and output.strip().endswith("ringpost.toml:3: engine.bogus: unknown key"), \
        output
    code, output = run_daemon_once("[engine]\nring_entries = 64\n", args=["--check-config"])
    assert code == 0 and output.strip().endswith(": OK"), output
    # A TLS listener whose certificate is missing.
    code, output = run_daemon_once(
        "[tls]\ncert_file = \"missing.pem\"\nkey_file = \"missing.key\"\n"
        "[[smtp.listener]]\naddress = \"127.0.0.1:%d\"\nkind = \"smtps\"\n" % port)
    lines = output.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "cannot read TLS file" in lines[0], output


def main():
    require_io_uring()
    failures = 0
    groups = ((LONG_IDLE_MS, (test_concurrent_clients, test_garbage_and_long_line)),
              (IDLE_MS, (test_idle_connections, test_trickle_timed_out)))
    for idle_ms, tests in groups:
        port, = free_ports(1)
        with Daemon(extra=echo_config(port, idle_ms=idle_ms), wait_ports=[port],
                    per_ip=2000) as daemon:
            for test in tests:
                started = time.monotonic()
                try:
                    test(port)
                    print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - started))
                except Exception as error:  # noqa: BLE001
                    failures += 1
                    print("FAIL %s: %r\n%s" % (test.__name__, error, daemon.log()[-3000:]))
            code = daemon.stop()
            if code != 0:
                failures += 1
                print("FAIL SIGTERM exit code %r\n%s" % (code, daemon.log()))
            else:
                print("ok   sigterm_exit_0")
    for test in (test_per_ip_limit, test_reload_and_sigterm, test_start_errors):
        started = time.monotonic()
        try:
            test()
            print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - started))
        except Exception as error:  # noqa: BLE001
            failures += 1
            print("FAIL %s: %r" % (test.__name__, error))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
